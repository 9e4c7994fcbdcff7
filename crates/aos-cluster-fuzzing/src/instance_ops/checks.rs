//! The checks: every action the instance emits against the model, and its
//! state after every step.

use super::*;

impl World {
    pub(super) fn check_quiet(&self) {
        if let Some(deadline) = self.inst.poll_timeout() {
            assert!(deadline > self.now, "a due timer was left unfired");
        }
        let in_session = self.connections_in_session();
        assert_eq!(self.inst.connected() as usize, in_session, "connected = connections holding a session");
        assert_eq!(in_session, self.sessions.len());
        assert_eq!(self.inst.accepting(), self.admin.accepting);
        assert_eq!(self.inst.saturated(), self.admin.saturated);
        assert_eq!(self.inst.advertised_accepting(), self.advertised());
        assert_eq!(self.inst.max_sessions(), self.admin.max_sessions);
        assert_eq!(self.inst.workload(), self.own_workload());
        for (request_id, w) in &self.waiting {
            assert_eq!(w.expect, Expect::Ranked, "handshake {request_id} not answered at once");
            assert!(self.now <= w.arrived + self.bound, "handshake {request_id} waited past the bound");
        }
        assert_eq!(self.inst.pending_handshakes(), self.pending.len(), "the pending handshakes");
        assert_eq!(self.inst.round_in_flight(), self.round.active, "a round in flight");
        assert_eq!(self.inst.cached_members(), self.snapshot.as_ref().map_or(0, |(_, m)| m.len()));
        assert_eq!(self.inst.reservations(), self.herd.held(), "reservations held");
        assert!(self.inst.reservations() <= self.config().limits.max_reservations);
        let mut expect = self.expect.clone();
        expect.herd.reservations_made = self.herd.made;
        expect.herd.reservations_replaced = self.herd.replaced;
        expect.herd.reservations_expired_unused = self.herd.expired_unused;
        expect.herd.reservations_dropped = self.herd.dropped;
        expect.herd.reservations_released = self.herd.released;
        assert_eq!(self.inst.stats(), expect, "every counter");
    }

    /// Drains and checks every action; returns the heartbeats published.
    pub(super) fn drain(&mut self) -> usize {
        let mut heartbeats = 0;
        let mut opened: Option<(ConnectionId, SessionId)> = None;
        while let Some(action) = self.inst.poll_action() {
            if let Some(log) = self.log.as_mut() {
                log.push((self.now - self.base, action.clone()));
            }
            if super::super::session_opened_follows(&mut opened, &action) {
                continue;
            }
            match action {
                Action::SessionOpened { .. } => panic!("SessionOpened without an acceptance: {action:?}"),
                Action::PublishHeartbeat(hb) => {
                    assert_ne!(self.config().role, Role::Standalone, "a standalone instance has no registry");
                    assert_eq!(hb.id, self.inst.id());
                    assert_eq!(hb.endpoint, endpoint_of(hb.id));
                    assert_eq!(hb.cluster.as_deref(), Some(CLUSTER));
                    assert_eq!(hb.role, self.config().role);
                    assert_eq!(hb.accepting, self.advertised());
                    assert_eq!(hb.workload, self.own_workload());
                    heartbeats += 1;
                    self.expect.heartbeats += 1;
                }
                Action::QueryRegistry { query_id, cluster } => {
                    assert_eq!(cluster, CLUSTER);
                    self.round.registry_queries += 1;
                    assert!(
                        self.round.registry_queries <= self.round.registry_expected,
                        "unexpected registry query"
                    );
                    self.registry_query = Some((query_id, self.now + self.config().registry_timeout));
                }
                Action::QueryPeer { query_id, peer, endpoint, query } => {
                    assert_eq!(query.query_id, query_id);
                    assert_eq!(endpoint, endpoint_of(peer));
                    assert!(self.round.queried.insert(peer), "peer {peer} queried twice in a round");
                    self.round.outstanding.insert(query_id, peer);
                }
                Action::Reply { conn, message: Message::HandshakeReply(reply) } => {
                    let waiting = self
                        .waiting
                        .remove(&reply.request_id)
                        .expect("a reply for a waiting handshake, once");
                    assert_eq!(conn, waiting.conn, "the reply goes to the handshake's connection");
                    self.replies += 1;
                    match waiting.expect {
                        Expect::WrongCluster => {
                            assert_eq!(reply.outcome, HandshakeOutcome::Refused(RefuseReason::WrongCluster));
                        }
                        Expect::Busy => {
                            assert_eq!(reply.outcome, HandshakeOutcome::Refused(RefuseReason::Busy))
                        }
                        Expect::Direct(list) => assert_eq!(reply.outcome, HandshakeOutcome::Ranked(list)),
                        Expect::Ranked => {
                            assert_eq!(
                                self.pending.pop_front(),
                                Some(reply.request_id),
                                "answered in arrival order"
                            );
                            self.finish_round();
                            let HandshakeOutcome::Ranked(list) = reply.outcome else {
                                panic!("a queued handshake gets a ranked list, got {:?}", reply.outcome)
                            };
                            self.check_ranked(conn, waiting.salt, &list);
                        }
                    }
                }
                Action::Reply { conn, message: Message::SessionReply(reply) } => {
                    let expect =
                        self.session_expect.take().expect("a session reply only for a session request");
                    assert_eq!(conn, expect.conn);
                    assert_eq!(reply.request_id, expect.request_id);
                    match (expect.reject, reply.outcome) {
                        (None, SessionOutcome::Accepted { session_id }) => {
                            assert!(!self.ended.contains(&session_id), "session id reused");
                            assert!(self.sessions.insert(session_id, conn).is_none(), "session id reused");
                            self.conns.insert(conn, Some(session_id));
                            opened = Some((conn, session_id));
                        }
                        (Some(want), SessionOutcome::Rejected(got)) => {
                            assert_eq!(got, want, "rejection reason")
                        }
                        (want, got) => panic!("session verdict: want reject {want:?}, got {got:?}"),
                    }
                }
                Action::Reply { message, .. } => panic!("unexpected reply {message:?}"),
                other => panic!("an action this model does not know: {other:?}"),
            }
        }
        assert_eq!(opened, None, "SessionOpened must follow the accepting reply");
        if let Some(expected) = &self.round.expected_peers {
            assert_eq!(&self.round.queried, expected, "the round queries every active kept member");
        }
        assert_eq!(
            self.round.registry_queries, self.round.registry_expected,
            "registry query at round start"
        );
        if self.round.active && !self.inst.round_in_flight() {
            self.finish_round();
            assert!(self.pending.is_empty(), "a finished round answers every waiting handshake");
            self.round = RoundView::default();
            self.registry_query = None;
        }
        heartbeats
    }

    /// The round's end, once: peers still silent are counted, and with herd
    /// control the candidates' expired reservations go.
    pub(super) fn finish_round(&mut self) {
        if self.round.finished {
            return;
        }
        self.round.finished = true;
        self.expect.round.peer_silent += self.round.outstanding.len() as u64;
        if self.config().herd_control {
            let ids: Vec<InstanceId> = self.candidates().iter().map(|&(id, _)| id).collect();
            let (ttl, max_members) = (self.config().reservation_ttl, self.config().limits.max_members);
            self.herd.finish_round(&ids, self.now, ttl, max_members);
        }
    }

    pub(super) fn own_candidate(&self) -> Candidate {
        Candidate {
            role: self.config().role,
            accepting: self.advertised(),
            workload: Workload::new(self.connected(), self.admin.max_sessions),
        }
    }

    pub(super) fn direct_list(&self) -> RankedList {
        let own = self.own_candidate();
        let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
        let entries = if serves {
            vec![RankedEntry {
                id: self.inst.id(),
                endpoint: endpoint_of(self.inst.id()),
                workload: own.workload,
            }]
        } else {
            Vec::new()
        };
        RankedList { stale: false, entries }
    }

    /// This round's candidates: answered peers and self, by id.
    pub(super) fn candidates(&self) -> Vec<(InstanceId, Candidate)> {
        let mut all: Vec<(InstanceId, Candidate)> =
            self.round.answers.iter().map(|(&id, &c)| (id, c)).collect();
        all.push((self.inst.id(), self.own_candidate()));
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub(super) fn check_ranked(&mut self, conn: ConnectionId, salt: u64, list: &RankedList) {
        let candidates = self.candidates();
        let herd_control = self.config().herd_control;
        let (now, ttl) = (self.now, self.config().reservation_ttl);
        let predicted = predicted(&self.herd, &candidates, herd_control, now, ttl);
        let members: Vec<(InstanceId, Candidate, Workload)> =
            candidates.iter().zip(&predicted).map(|(&(id, c), p)| (id, c, p.workload)).collect();
        check_list_rules(&members, list, self.config().max_list_len);
        self.expect.round.ranked_replies += 1;
        self.expect.round.stale_replies += u64::from(self.round.stale);
        let input = ReplyInput {
            candidates: &candidates,
            herd_control: self.config().herd_control,
            salt,
            conn,
            now: self.now,
            reservation_ttl: self.config().reservation_ttl,
            max_reservations: self.config().limits.max_reservations,
            max_list_len: self.config().max_list_len,
            stale: self.round.stale,
        };
        let expected = expected_reply(&mut self.herd, &input);
        assert_eq!(list, &expected, "the reply differs from the reference model");
    }
}

/// The rules any ranked list obeys, stated on their own (SPEC 2.4, 2.5,
/// 2.7); `members` holds self and the peers that answered this round, each
/// with its reported candidate and predicted workload (reported plus live
/// reservations). No duplicates; only members that can serve by their
/// reports; first the members not predicted full, listed with and sorted by
/// their predicted figures; then the members predicted full, listed with and
/// sorted by their reported figures; every reported-free member listed (never
/// dropped) unless `max_list_len` cut the list.
fn check_list_rules(members: &[(InstanceId, Candidate, Workload)], list: &RankedList, max_len: usize) {
    assert!(list.entries.len() <= max_len, "list longer than max_list_len");
    let mut seen = BTreeSet::new();
    let mut previous: Option<(bool, Workload)> = None;
    for entry in &list.entries {
        assert!(seen.insert(entry.id), "{} listed twice", entry.id);
        assert_eq!(entry.endpoint, endpoint_of(entry.id));
        let &(_, reported, predicted) = members
            .iter()
            .find(|(id, _, _)| *id == entry.id)
            .unwrap_or_else(|| panic!("{} listed but neither self nor answered this round", entry.id));
        assert!(reported.is_eligible(), "{} listed but cannot serve by its report", entry.id);
        let tail = predicted.is_full();
        let (shown, rank) = if tail {
            (reported.workload, reported.workload)
        } else {
            (shown(predicted, reported.workload), predicted)
        };
        assert_eq!(entry.workload, shown, "{} listed with the wrong figures", entry.id);
        if let Some((previous_tail, previous)) = previous {
            assert!(
                previous_tail <= tail,
                "{} predicted free listed after the predicted-full tail",
                entry.id
            );
            if previous_tail == tail {
                assert_ne!(
                    previous.cmp_rank(rank),
                    std::cmp::Ordering::Greater,
                    "list not sorted in its part"
                );
            }
        }
        previous = Some((tail, rank));
    }
    let free = members.iter().filter(|(_, c, _)| c.is_eligible()).count();
    assert_eq!(list.entries.len(), free.min(max_len), "a reported-free member was dropped");
}
