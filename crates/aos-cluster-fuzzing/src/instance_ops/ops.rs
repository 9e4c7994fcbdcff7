//! Each op: what it does to the simulated cluster and what the model
//! expects of the instance.

use super::*;

impl World {
    /// Applies one op and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Handshake { conn, salt, load_balance, cluster } => {
                self.handshake(conn, salt, load_balance, cluster)
            }
            Op::Session { conn, denied } => self.session(conn, denied),
            Op::EndSession { pick, twice } => {
                if let Some((&id, &conn)) =
                    self.sessions.iter().nth(usize::from(pick) % self.sessions.len().max(1))
                {
                    self.sessions.remove(&id);
                    self.conns.insert(conn, None);
                    self.ended.insert(id);
                    self.expect.admission.sessions_ended += 1;
                    self.event(Event::SessionEnded { session_id: id });
                    if twice {
                        self.expect.admission.ignored_session_ends += 1;
                        self.event(Event::SessionEnded { session_id: id });
                    }
                } else if let Some(&id) = self.ended.iter().next_back() {
                    self.expect.admission.ignored_session_ends += 1;
                    self.event(Event::SessionEnded { session_id: id });
                }
            }
            Op::EndUnknown(id) => {
                if !self.sessions.contains_key(&id) {
                    self.expect.admission.ignored_session_ends += 1;
                    self.event(Event::SessionEnded { session_id: id });
                }
            }
            Op::CloseConnection(pick) => {
                if let Some(&conn) = self.conns.keys().nth(usize::from(pick) % self.conns.len().max(1)) {
                    if let Some(Some(id)) = self.conns.remove(&conn) {
                        self.sessions.remove(&id);
                        self.ended.insert(id);
                        self.expect.admission.sessions_ended += 1;
                    }
                    let waiting = &mut self.waiting;
                    let before = self.pending.len();
                    self.pending.retain(|r| waiting.get(r).is_none_or(|w| w.conn != conn));
                    self.expect.round.abandoned_handshakes += (before - self.pending.len()) as u64;
                    waiting.retain(|_, w| w.conn != conn);
                    self.herd.closed(conn, self.now);
                    self.event(Event::ConnectionClosed { conn });
                }
            }
            Op::PeerQuery(query_id) => self.peer_query(query_id, self.now),
            Op::RegistryAnswer { hide, duplicate } => self.registry_answer(hide, duplicate),
            Op::RegistryFail => {
                if let Some((query_id, _)) = self.registry_query.take() {
                    self.registry_trouble();
                    self.event(Event::RegistryFailed { query_id, reason: "down".to_owned() });
                }
            }
            Op::RegistryStray(query_id) => {
                if self.registry_query.map(|(q, _)| q) != Some(query_id) {
                    self.expect.round.ignored_replies += 1;
                    self.event(Event::RegistrySnapshot { query_id, members: Vec::new() });
                }
            }
            Op::Report { pick, contradictory } => {
                let n = usize::from(pick) % self.round.outstanding.len().max(1);
                if let Some((&query_id, &id)) = self.round.outstanding.iter().nth(n) {
                    self.round.outstanding.remove(&query_id);
                    let peer = &self.peers[self.peer_index(id).expect("queried peers exist")];
                    let mut workload = peer.workload;
                    let (role, accepting) = (peer.role, peer.accepting);
                    if contradictory {
                        workload =
                            Workload::new(workload.max_sessions.saturating_add(1), workload.max_sessions);
                        self.expect.round.contradictory_reports += 1;
                        self.expect.round.peer_unreachable += 1;
                    } else {
                        self.expect.round.peer_reports += 1;
                        self.round.answers.insert(id, Candidate { role, accepting, workload });
                        let asked_at = self.round.asked_at.expect("queries went out");
                        let max_members = self.config().limits.max_members;
                        self.herd.cover(id, workload.connected, asked_at, max_members);
                    }
                    let report = WorkloadReport { query_id, id, role, accepting, workload };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::Unreachable(pick) => {
                let n = usize::from(pick) % self.round.outstanding.len().max(1);
                if let Some((&query_id, &peer)) = self.round.outstanding.iter().nth(n) {
                    self.round.outstanding.remove(&query_id);
                    self.expect.round.peer_unreachable += 1;
                    self.event(Event::PeerUnreachable { query_id, peer, reason: "reset".to_owned() });
                }
            }
            Op::StrayReport { query_id, id } => {
                if !self.round.outstanding.contains_key(&query_id) {
                    self.expect.round.ignored_replies += 1;
                    let report = WorkloadReport {
                        query_id,
                        id: InstanceId(u32::from(id)),
                        role: Role::Serving,
                        accepting: true,
                        workload: Workload::new(0, 1),
                    };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::SetAccepting(accepting) => {
                let changed = accepting != self.admin.accepting;
                self.admin.accepting = accepting;
                self.inst.set_accepting(accepting, self.now);
                let heartbeats = self.drain();
                self.expect_heartbeat(changed, heartbeats);
            }
            Op::SetMaxSessions(max) => {
                let changed = max != 0 && u32::from(max) != self.admin.max_sessions;
                if max != 0 {
                    self.admin.max_sessions = u32::from(max);
                }
                let result = self.inst.set_max_sessions(u32::from(max), self.now);
                assert_eq!(result.is_err(), max == 0, "only a zero max is refused");
                let heartbeats = self.drain();
                self.expect_heartbeat(changed, heartbeats);
            }
            Op::SetSaturated(saturated) => {
                let changed = saturated != self.admin.saturated;
                self.admin.saturated = saturated;
                self.inst.set_saturated(saturated, self.now);
                let heartbeats = self.drain();
                self.expect_heartbeat(changed, heartbeats);
            }
            Op::SetPeer { peer, role, accepting, connected, max, inactive } => {
                if !self.peers.is_empty() {
                    let i = usize::from(peer) % self.peers.len();
                    let max = u32::from(max);
                    let p = &mut self.peers[i];
                    p.role = role;
                    p.accepting = accepting;
                    p.workload = Workload::new(u32::from(connected).min(max), max);
                    p.inactive = inactive;
                }
            }
            Op::Advance(ms) => self.advance(Duration::from_millis(u64::from(ms))),
            Op::Backwards { ms, query } => {
                let at = self
                    .now
                    .checked_sub(Duration::from_millis(u64::from(ms)))
                    .unwrap_or(self.base)
                    .max(self.base);
                let clamped = u64::from(at < self.now);
                self.expect.clamped += clamped;
                self.inst.handle_timeout(at);
                assert_eq!(self.drain(), 0, "a clamped timeout fires nothing");
                if query {
                    self.expect.clamped += clamped;
                    self.peer_query(QueryId(u64::from(ms)), at);
                }
            }
        }
        self.check_quiet();
    }

    pub(super) fn expect_heartbeat(&self, changed: bool, heartbeats: usize) {
        let expected = usize::from(changed && self.config().role != Role::Standalone);
        assert_eq!(heartbeats, expected, "an admin change publishes one heartbeat, nothing else none");
    }

    pub(super) fn handshake(
        &mut self,
        conn: Option<u8>,
        salt: u64,
        load_balance: bool,
        cluster: ClusterChoice,
    ) {
        let conn = self.pick_conn(conn);
        self.next_request += 1;
        let request_id = self.next_request;
        let cluster = match cluster {
            ClusterChoice::Unnamed => None,
            ClusterChoice::Ours => Some(CLUSTER.to_owned()),
            ClusterChoice::Other => Some("elsewhere".to_owned()),
        };
        self.expect.round.handshakes += 1;
        let wrong_cluster = cluster.as_ref().is_some_and(|c| self.config().cluster.as_ref() != Some(c));
        let expect = if wrong_cluster {
            self.expect.round.refused_wrong_cluster += 1;
            Expect::WrongCluster
        } else if !load_balance || self.config().role == Role::Standalone {
            self.expect.round.direct_replies += 1;
            Expect::Direct(self.direct_list())
        } else if self.pending.len() >= self.config().limits.max_pending_handshakes {
            self.expect.round.refused_busy += 1;
            Expect::Busy
        } else {
            self.pending.push_back(request_id);
            if !self.round.active {
                self.start_round();
            }
            Expect::Ranked
        };
        self.waiting.insert(request_id, Waiting { conn, arrived: self.now, salt, expect });
        let request = HandshakeRequest { request_id, salt, load_balance, cluster };
        self.event(Event::HandshakeRequest { conn, request });
    }

    pub(super) fn start_round(&mut self) {
        self.expect.round.rounds += 1;
        self.round = RoundView { active: true, ..RoundView::default() };
        let fresh = self.snapshot.as_ref().is_some_and(|(at, _)| self.now - *at < self.config().snapshot_ttl);
        if fresh {
            self.enter_peer_phase(false);
        } else {
            self.round.registry_expected = 1;
            self.expect.round.registry_queries += 1;
        }
    }

    /// The round moves to its peer queries now: every kept member still
    /// active must be asked, and nobody else.
    pub(super) fn enter_peer_phase(&mut self, stale: bool) {
        self.round.stale = stale;
        self.round.asked_at = Some(self.now);
        let ttl = self.config().member_ttl;
        let expected: BTreeSet<InstanceId> = match &self.snapshot {
            Some((at, members)) => {
                members.iter().filter(|&(_, &age)| age + (self.now - *at) < ttl).map(|(&id, _)| id).collect()
            }
            None => BTreeSet::new(),
        };
        self.expect.round.peer_queries += expected.len() as u64;
        self.round.expected_peers = Some(expected);
    }

    pub(super) fn registry_trouble(&mut self) {
        self.expect.round.registry_failures += 1;
        self.enter_peer_phase(true);
    }

    pub(super) fn registry_answer(&mut self, hide: u8, duplicate: bool) {
        let Some((query_id, _)) = self.registry_query.take() else { return };
        let mut members: Vec<MemberRecord> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, _)| hide & (1 << i) == 0)
            .map(|(_, p)| MemberRecord {
                id: p.id,
                endpoint: endpoint_of(p.id),
                role: p.role,
                accepting: p.accepting,
                workload: p.workload,
                heartbeat_age: if p.inactive { INACTIVE_AGE } else { ACTIVE_AGE },
            })
            .collect();
        if duplicate {
            let copy = members.clone();
            members.extend(copy);
        }
        // The registry's row for the instance itself must not override its
        // live figures.
        members.push(MemberRecord {
            id: self.inst.id(),
            endpoint: endpoint_of(self.inst.id()),
            role: Role::Serving,
            accepting: true,
            workload: Workload::new(0, 1000),
            heartbeat_age: Duration::ZERO,
        });
        let ttl = self.config().member_ttl;
        let mut kept: BTreeMap<InstanceId, Duration> = BTreeMap::new();
        for m in &members {
            if m.role == Role::Serving && m.id != self.inst.id() && m.heartbeat_age < ttl {
                let age = kept.entry(m.id).or_insert(m.heartbeat_age);
                *age = (*age).min(m.heartbeat_age);
            }
        }
        let cap = self.config().limits.max_members;
        self.expect.round.members_dropped += kept.len().saturating_sub(cap) as u64;
        let kept = kept.into_iter().take(cap).collect();
        self.snapshot = Some((self.now, kept));
        self.enter_peer_phase(false);
        self.event(Event::RegistrySnapshot { query_id, members });
    }

    pub(super) fn peer_query(&mut self, query_id: QueryId, at: Instant) {
        let conn = ConnectionId(u64::MAX - u64::from(self.round.queried.len() as u32));
        self.expect.workload_queries_answered += 1;
        self.inst
            .handle_event(Event::WorkloadQuery { conn, query: WorkloadQuery { query_id } }, at)
            .expect("a workload query is always usable");
        let expected = Message::WorkloadReport(WorkloadReport {
            query_id,
            id: self.inst.id(),
            role: self.config().role,
            accepting: self.advertised(),
            workload: self.own_workload(),
        });
        let reply = self.inst.poll_action();
        assert_eq!(reply, Some(Action::Reply { conn, message: expected }), "peer answered at once");
        if let (Some(log), Some(reply)) = (self.log.as_mut(), reply) {
            log.push((self.now - self.base, reply));
        }
        assert_eq!(self.drain(), 0, "a workload query publishes nothing else");
    }

    /// What reports and heartbeats say: `connected` capped at the max.
    pub(super) fn own_workload(&self) -> Workload {
        Workload::new(self.connected().min(self.admin.max_sessions), self.admin.max_sessions)
    }

    pub(super) fn session(&mut self, conn: Option<u8>, denied: bool) {
        let conn = self.pick_conn(conn);
        self.next_request += 1;
        let request_id = self.next_request;
        // SPEC 3.2, 3.5, in the machine's order of precedence.
        let reject = if self.conns.get(&conn).copied().flatten().is_some() {
            self.expect.admission.rejected_already_in_session += 1;
            self.already_in_session += 1;
            Some(RejectReason::AlreadyInSession)
        } else if denied {
            // Refused before it counts: nothing but the counter changes.
            self.expect.admission.rejected_by_policy += 1;
            Some(RejectReason::Unauthorized)
        } else if self.config().role == Role::LoadBalancerOnly {
            Some(RejectReason::NotServing)
        } else if !self.admin.accepting {
            Some(RejectReason::Draining)
        } else if self.connected() >= self.admin.max_sessions {
            Some(RejectReason::Full)
        } else if self.sessions.len() >= self.config().limits.max_tracked_sessions {
            Some(RejectReason::Busy)
        } else {
            None
        };
        match reject {
            Some(_) => self.expect.admission.sessions_rejected += 1,
            None => {
                self.expect.admission.sessions_accepted += 1;
                let ttl = self.config().reservation_ttl;
                self.herd.admitted(self.inst.id(), conn, self.now, ttl);
            }
        }
        self.session_expect = Some(SessionExpect { conn, request_id, reject });
        let request = SessionRequest { request_id, credential: None };
        self.event(match denied {
            true => Event::SessionDenied { conn, request, reason: RejectReason::Unauthorized },
            false => Event::SessionRequest { conn, request },
        });
        assert!(self.session_expect.is_none(), "a session request gets its reply at once");
    }
}
