//! The world around the instance: construction, accessors, events and time.

use super::*;

impl World {
    /// A world from a setup, starting at `base`; `record` keeps every action
    /// for determinism checks.
    pub fn new(setup: &Setup, base: Instant, record: bool) -> World {
        let peer_count = usize::from(setup.peers % 7);
        let self_index = u32::from(setup.self_position) % (peer_count as u32 + 1);
        let self_id = InstanceId(self_index * 10 + 5);
        let peers = (0..peer_count as u32)
            .map(|i| SimPeer {
                id: InstanceId(if i < self_index { i * 10 } else { (i + 1) * 10 }),
                role: Role::Serving,
                accepting: true,
                workload: Workload::new(i, 10),
                inactive: false,
            })
            .collect();
        let mut config =
            InstanceConfig::new(self_id, endpoint_of(self_id), u32::from(setup.max_sessions.max(1)));
        config.role = setup.role;
        config.cluster = (setup.role != Role::Standalone).then(|| CLUSTER.to_owned());
        config.herd_control = setup.herd_control;
        config.max_list_len = usize::from(setup.max_list_len.max(1));
        config.limits.max_pending_handshakes = usize::from(setup.max_pending.max(1));
        config.limits.max_members = usize::from(setup.max_members.max(1));
        config.limits.max_tracked_sessions = usize::from(setup.max_tracked.max(1));
        // Herd control needs room for one reservation (validation); 1 still
        // exercises the limit.
        config.limits.max_reservations =
            usize::from(setup.max_reservations).max(usize::from(config.herd_control));
        setup.timers.apply(&mut config);
        let bound = config.registry_timeout + config.peer_timeout;
        let admin = Admin { accepting: true, saturated: false, max_sessions: config.max_sessions };
        let inst = Instance::new(config, base, setup.seed).expect("the setup builds a valid config");
        let mut world = World {
            inst,
            base,
            now: base,
            peers,
            admin,
            registry_query: None,
            snapshot: None,
            round: RoundView::default(),
            waiting: BTreeMap::new(),
            pending: VecDeque::new(),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            ended: BTreeSet::new(),
            session_expect: None,
            herd: HerdModel::new(self_id),
            expect: InstanceStats::default(),
            next_conn: 0,
            next_request: 0,
            bound,
            log: record.then(Vec::new),
            replies: 0,
            already_in_session: 0,
        };
        let heartbeats = world.drain();
        assert_eq!(
            heartbeats,
            usize::from(setup.role != Role::Standalone),
            "a first heartbeat unless standalone"
        );
        world.check_quiet();
        world
    }

    /// The machine under test.
    pub fn instance(&self) -> &Instance {
        &self.inst
    }

    /// Every action so far with its time since the start (when recording).
    pub fn log(&self) -> &[(Duration, Action)] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// Handshakes still waiting for a reply.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Open client connections, by the model.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Open client connections holding a session, by the model.
    pub fn connections_in_session(&self) -> usize {
        self.conns.values().filter(|s| s.is_some()).count()
    }

    pub(super) fn config(&self) -> &InstanceConfig {
        self.inst.config()
    }

    pub(super) fn advertised(&self) -> bool {
        self.admin.accepting && !self.admin.saturated
    }

    pub(super) fn connected(&self) -> u32 {
        u32::try_from(self.sessions.len()).unwrap_or(u32::MAX)
    }

    pub(super) fn peer_index(&self, id: InstanceId) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// A new connection (`None`, or none open) or the k-th open one.
    pub(super) fn pick_conn(&mut self, pick: Option<u8>) -> ConnectionId {
        if let Some(k) = pick.filter(|_| !self.conns.is_empty()) {
            let n = usize::from(k) % self.conns.len();
            return *self.conns.keys().nth(n).unwrap_or_else(|| unreachable!("n < len"));
        }
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(conn, None);
        conn
    }

    /// Feeds one event now and drains; returns the heartbeats published.
    pub(super) fn event(&mut self, event: Event) -> usize {
        self.event_at(event, self.now)
    }

    pub(super) fn event_at(&mut self, event: Event, at: Instant) -> usize {
        if let Err(e) = self.inst.handle_event(event.clone(), at) {
            panic!("unexpected usage error {e:?} for {event:?}");
        }
        self.drain()
    }

    /// Moves time forward by `by`, stopping at every deadline on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.inst.poll_timeout() {
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

    pub(super) fn timeout(&mut self) {
        if let Some((_, deadline)) = self.registry_query {
            if deadline <= self.now {
                self.registry_query = None;
                self.registry_trouble();
            }
        }
        self.inst.handle_timeout(self.now);
        self.drain();
    }

    /// Lets every timer run out until the instance is idle (bounded).
    pub fn settle(&mut self) {
        for _ in 0..16 {
            if self.waiting.is_empty() && !self.inst.round_in_flight() {
                break;
            }
            self.advance(self.bound);
        }
        self.check_quiet();
    }
}
