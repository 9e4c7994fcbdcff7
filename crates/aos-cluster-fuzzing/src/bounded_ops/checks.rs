//! The checks: every action the instance emits, and its state after every
//! step.

use super::*;

impl World {
    /// Drains every action, checking each.
    pub(super) fn drain(&mut self) {
        let mut opened = None;
        while let Some(action) = self.inst.poll_action() {
            self.log.push((self.now, action.clone()));
            if super::super::session_opened_follows(&mut opened, &action) {
                continue;
            }
            match action {
                Action::PublishHeartbeat(_) => {}
                Action::QueryRegistry { query_id, .. } => {
                    assert!(std::mem::take(&mut self.registry_expected), "an unexpected registry query");
                    self.registry_query = Some((query_id, self.now + self.config().registry_timeout));
                }
                Action::QueryPeer { query_id, peer, endpoint, query } => {
                    self.peer_queries += 1;
                    assert_eq!((query.query_id, endpoint), (query_id, endpoint_of(peer)));
                    let live = self.config().fan_out.live;
                    let phase = self.phase.as_mut().expect("peer queries only in a round's peer phase");
                    assert!(phase.active.contains(&peer), "{peer} queried but not an active snapshot member");
                    assert!(phase.queried.insert(peer), "{peer} queried twice in one round");
                    phase.outstanding.insert(query_id, peer);
                    if phase.bounded {
                        assert!(!phase.excluded.contains(&peer), "{peer} queried though found unreachable");
                        // The best `live`, as many refreshed, the stale, one per failure.
                        let allowed = 2 * live + phase.stale_or_contradictory + phase.failed.len();
                        assert!(
                            phase.queried.len() <= allowed,
                            "{} queries in a bounded round, at most 2 x {live} + {} stale + {} failed",
                            phase.queried.len(),
                            phase.stale_or_contradictory,
                            phase.failed.len()
                        );
                    }
                }
                Action::Reply { conn, message: Message::HandshakeReply(reply) } => {
                    let w = self
                        .waiting
                        .remove(&reply.request_id)
                        .expect("a reply for a waiting handshake, once");
                    assert_eq!(conn, w.conn, "the reply goes to the handshake's connection");
                    assert!(self.now <= w.arrived + self.bound, "handshake answered past the bound");
                    match reply.outcome {
                        HandshakeOutcome::Refused(RefuseReason::Busy) => assert!(w.busy, "refused Busy"),
                        HandshakeOutcome::Ranked(list) => {
                            assert!(!w.busy, "over the limit but ranked");
                            self.ranked += 1;
                            self.check_list(&list.entries);
                        }
                        other => panic!("unexpected handshake outcome {other:?}"),
                    }
                }
                Action::Reply { conn, message: Message::SessionReply(reply) } => {
                    let expect = self.session_expect.take().expect("a session reply only for a request");
                    assert_eq!((conn, reply.request_id), expect, "session reply to the request");
                    if let SessionOutcome::Accepted { session_id } = reply.outcome {
                        opened = Some((conn, session_id));
                    }
                }
                other => panic!("unexpected action {other:?}"),
            }
        }
        assert_eq!(opened, None, "SessionOpened must follow the accepting reply");
        if self.round && !self.inst.round_in_flight() {
            assert_eq!(self.inst.pending_handshakes(), 0, "a finished round answers every waiting handshake");
            self.round = false;
            self.phase = None;
            self.registry_query = None;
            self.registry_expected = false;
        }
    }

    fn check_list(&self, entries: &[aos_cluster::wire::RankedEntry]) {
        assert!(entries.len() <= self.config().max_list_len, "list longer than max_list_len");
        let phase = self.phase.as_ref().expect("ranked lists only at the end of a peer phase");
        let own = self.inst.id();
        let mut seen = BTreeSet::new();
        for e in entries {
            let id = e.id;
            assert!(seen.insert(id), "{id} listed twice");
            assert_eq!(e.endpoint, endpoint_of(id));
            if id == own {
                assert_eq!(self.config().role, Role::Serving, "a load balancer listed itself");
                continue;
            }
            assert!(phase.active.contains(&id), "{id} listed but not an active snapshot member");
            assert!(!phase.failed.contains(&id), "{id} listed though found unreachable this round");
            assert!(!phase.queried.contains(&id) || phase.answered.contains(&id), "{id} silent but listed");
            assert!(phase.bounded || phase.answered.contains(&id), "{id} listed unasked in a full round");
            assert!(!phase.excluded.contains(&id), "{id} listed though found unreachable before");
        }
    }

    pub(super) fn check(&self) {
        if let Some(deadline) = self.inst.poll_timeout() {
            assert!(deadline > self.at(), "a due timer was left unfired");
        }
        for (request_id, w) in &self.waiting {
            assert!(!w.busy, "handshake {request_id} over the limit not refused at once");
            assert!(self.now <= w.arrived + self.bound, "handshake {request_id} waited past the bound");
        }
        let stats = self.inst.stats();
        assert_eq!(stats.round.peer_queries, self.peer_queries, "peer_queries = QueryPeer actions");
        assert!(
            stats.fan_out.replacement_queries <= stats.round.peer_unreachable,
            "more replacements than failures"
        );
        assert_eq!(stats.round.ranked_replies, self.ranked, "ranked_replies = ranked replies seen");
        let footprint = self.inst.memory_footprint();
        assert!(footprint <= self.memory_bound, "memory {footprint} above the bound {}", self.memory_bound);
    }
}
