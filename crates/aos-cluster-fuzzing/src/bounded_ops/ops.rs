//! Each op: what it does to the simulated cluster and what the world
//! expects of the round it touches; the world's time.

use super::*;

impl World {
    /// Applies one op and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Handshake(salt) => self.handshake(salt),
            Op::RegistryAnswer { duplicate } => self.registry_answer(duplicate),
            Op::RegistryFail => {
                if let Some((query_id, _)) = self.registry_query.take() {
                    self.enter_peer_phase();
                    self.event(Event::RegistryFailed { query_id, reason: "down".to_owned() });
                }
            }
            Op::Row { peer, change } => {
                let now = ms(self.now);
                let i = usize::from(peer) % self.peers.len();
                let row = &mut self.peers[i].1;
                match change {
                    RowChange::Beat(draw) => {
                        (row.serving, row.accepting, row.workload) = draw.figures();
                        row.beat_ms = now;
                    }
                    RowChange::Older(s) => row.beat_ms -= 1000 * i64::from(s % 16),
                    RowChange::Toggle => row.present = !row.present,
                }
            }
            Op::Report { pick, figures } => {
                if let Some((query_id, id)) = self.pick_outstanding(pick) {
                    let (_, accepting, workload) = figures.figures();
                    let phase = self.phase.as_mut().unwrap_or_else(|| unreachable!("outstanding"));
                    if workload.connected > workload.max_sessions {
                        phase.failed.insert(id);
                    } else {
                        phase.answered.insert(id);
                    }
                    let report = WorkloadReport { query_id, id, role: Role::Serving, accepting, workload };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::Unreachable(pick) => {
                if let Some((query_id, peer)) = self.pick_outstanding(pick) {
                    if let Some(phase) = self.phase.as_mut() {
                        phase.failed.insert(peer);
                    }
                    self.failures.insert(peer, ms(self.now));
                    self.event(Event::PeerUnreachable { query_id, peer, reason: "reset".to_owned() });
                }
            }
            Op::Close(pick) => {
                if let Some(&conn) = self.conns.iter().nth(usize::from(pick) % self.conns.len().max(1)) {
                    self.conns.remove(&conn);
                    self.waiting.retain(|_, w| w.conn != conn);
                    self.event(Event::ConnectionClosed { conn });
                }
            }
            Op::Session(pick) => {
                let open = pick.and_then(|k| self.conns.iter().nth(usize::from(k) % self.conns.len().max(1)));
                let conn = match open {
                    Some(&conn) => conn,
                    None => self.new_conn(),
                };
                self.next_id += 1;
                self.session_expect = Some((conn, self.next_id));
                let request = SessionRequest { request_id: self.next_id, credential: None };
                self.event(Event::SessionRequest { conn, request });
                assert!(self.session_expect.is_none(), "a session request gets its reply at once");
            }
            Op::Advance(step) => self.advance(Duration::from_millis(u64::from(step) % 3_001)),
        }
        self.check();
    }

    fn new_conn(&mut self) -> ConnectionId {
        self.next_id += 1;
        let conn = ConnectionId(self.next_id);
        self.conns.insert(conn);
        conn
    }

    fn pick_outstanding(&mut self, pick: u8) -> Option<(QueryId, InstanceId)> {
        let outstanding = &mut self.phase.as_mut()?.outstanding;
        let n = usize::from(pick) % outstanding.len().max(1);
        let (&query_id, &id) = outstanding.iter().nth(n)?;
        outstanding.remove(&query_id);
        Some((query_id, id))
    }

    fn handshake(&mut self, salt: u64) {
        let conn = self.new_conn();
        self.next_id += 1;
        let request_id = self.next_id;
        let busy = self.inst.pending_handshakes() >= self.config().limits.max_pending_handshakes;
        if !busy && !self.round {
            self.round = true;
            let fresh = self.snap.as_ref().is_some_and(|s| self.now - s.at < self.config().snapshot_ttl);
            if fresh {
                self.enter_peer_phase();
            } else {
                self.registry_expected = true;
            }
        }
        self.waiting.insert(request_id, Waiting { conn, arrived: self.now, busy });
        let request =
            HandshakeRequest { request_id, salt, load_balance: true, cluster: Some(CLUSTER.to_owned()) };
        self.event(Event::HandshakeRequest { conn, request });
        if busy {
            assert!(!self.waiting.contains_key(&request_id), "a handshake over the limit is refused at once");
        }
    }

    fn registry_answer(&mut self, duplicate: Option<u8>) {
        let Some((query_id, _)) = self.registry_query.take() else { return };
        let now = ms(self.now);
        let age = |beat_ms: i64| Duration::from_millis(u64::try_from(now - beat_ms).unwrap_or(0));
        let record = |id: InstanceId, row: &Row| MemberRecord {
            id,
            endpoint: endpoint_of(id),
            role: if row.serving { Role::Serving } else { Role::LoadBalancerOnly },
            accepting: row.accepting,
            workload: row.workload,
            heartbeat_age: age(row.beat_ms),
        };
        let mut members: Vec<MemberRecord> =
            self.peers.iter().filter(|(_, r)| r.present).map(|(id, r)| record(*id, r)).collect();
        if let Some(k) = duplicate.filter(|_| !members.is_empty()) {
            let mut copy = members[usize::from(k) % members.len()].clone();
            copy.heartbeat_age += Duration::from_secs(3);
            copy.workload = Workload::new(0, 9);
            members.push(copy);
        }
        // The registry's row for the instance itself never counts as a peer.
        let own = self.inst.id();
        members.push(MemberRecord {
            id: own,
            endpoint: endpoint_of(own),
            role: Role::Serving,
            accepting: true,
            workload: Workload::new(0, 100),
            heartbeat_age: Duration::ZERO,
        });
        let ttl = self.config().member_ttl;
        let rows = self
            .peers
            .iter()
            .filter(|(_, r)| r.present && r.serving && age(r.beat_ms) < ttl)
            .map(|&(id, r)| {
                let figures = Candidate { role: Role::Serving, accepting: r.accepting, workload: r.workload };
                (id, SnapRow { beat_ms: r.beat_ms, age: age(r.beat_ms), figures })
            })
            .collect();
        self.snap = Some(Snap { at: self.now, rows });
        self.enter_peer_phase();
        self.event(Event::RegistrySnapshot { query_id, members });
    }

    /// The round moves to its peer queries now: what the world expects of
    /// them (mirrors which members count as active, stale and excluded).
    fn enter_peer_phase(&mut self) {
        let mut phase = Phase::default();
        let fan_out = self.config().fan_out;
        let ttl = self.config().member_ttl;
        if let Some(snap) = &self.snap {
            let since = self.now - snap.at;
            phase.active = snap.rows.iter().filter(|(_, r)| r.age + since < ttl).map(|(&id, _)| id).collect();
            phase.bounded = !fan_out.is_full_for(phase.active.len());
            if phase.bounded {
                for id in &phase.active {
                    let row = &snap.rows[id];
                    if let Some(&failed_at) = self.failures.get(id) {
                        if row.beat_ms <= failed_at {
                            phase.excluded.insert(*id);
                            continue;
                        }
                        self.failures.remove(id);
                    }
                    let w = row.figures.workload;
                    let stale = row.age + since > fan_out.max_figure_age;
                    phase.stale_or_contradictory += usize::from(stale || w.connected > w.max_sessions);
                }
            }
        }
        self.phase = Some(phase);
    }

    fn event(&mut self, event: Event) {
        if let Err(e) = self.inst.handle_event(event.clone(), self.at()) {
            panic!("a valid event was refused: {e:?} for {event:?}");
        }
        self.drain();
    }

    /// Moves time forward by `by`, stopping at every deadline on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.inst.poll_timeout() {
            let deadline = deadline.saturating_duration_since(self.base);
            if deadline > target {
                break;
            }
            assert!(deadline >= self.now, "a deadline in the past");
            self.now = deadline;
            self.timeout();
        }
        self.now = target;
        self.timeout();
    }

    fn timeout(&mut self) {
        if self.registry_query.is_some_and(|(_, deadline)| deadline <= self.now) {
            self.registry_query = None;
            self.enter_peer_phase();
        }
        self.inst.handle_timeout(self.at());
        self.drain();
    }

    /// Lets the timers run out until every handshake is answered.
    pub fn settle(&mut self) {
        for _ in 0..4 {
            if self.waiting.is_empty() && !self.inst.round_in_flight() {
                break;
            }
            self.advance(self.bound);
        }
        self.check();
        assert!(self.waiting.is_empty(), "every handshake is answered once the world settles");
    }
}
