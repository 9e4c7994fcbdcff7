//! Property tests for the instance machine against reference models.
//!
//! The random-op properties run the [`World`] of the `instance_ops` fuzz body:
//! a simulated registry, peers and clients (many requests per connection,
//! connection closes, explicit session ends) around one instance, with a
//! reference model that predicts every reply exactly (each ranked list entry
//! for entry, the predicted-full tail included; each session verdict and
//! rejection reason; `SessionOpened` after each acceptance), which peers each
//! round queries, every report, heartbeat and counter, and checks that
//! `connected` equals the connections holding a session, that lists obey the
//! ranking rules on their own, and that every handshake gets exactly one
//! reply within `registry_timeout + peer_timeout`.

mod common;

use std::time::Duration;

use aos_cluster::instance::{Action, ConnectionId, Event, Instance};
use aos_cluster::wire::{HandshakeOutcome, Message, QueryId, RejectReason, SessionId};
use aos_cluster::workload::{rank, Candidate, InstanceId, Role, Workload};
use aos_cluster_fuzzing::instance_ops::{ClusterChoice, Op, Setup, Timers, World};
use common::instance::{base, config, handshake, member, report, Harness};
use proptest::prelude::*;

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![6 => Just(Role::Serving), 2 => Just(Role::LoadBalancerOnly), 1 => Just(Role::Standalone)]
}

fn timers() -> impl Strategy<Value = Timers> {
    // Mostly small values, so rounds, expiries and snapshot reuse all happen
    // within a few hundred ops; any u16 is a valid (mapped) timer.
    let ms = || prop_oneof![3 => 0u16..3_000, 1 => any::<u16>()];
    (ms(), ms(), ms(), ms(), ms(), ms()).prop_map(
        |(
            peer_timeout_ms,
            registry_timeout_ms,
            snapshot_ttl_ms,
            reservation_ttl_ms,
            member_ttl_ms,
            heartbeat_interval_ms,
        )| {
            Timers {
                peer_timeout_ms,
                registry_timeout_ms,
                snapshot_ttl_ms,
                reservation_ttl_ms,
                member_ttl_ms,
                heartbeat_interval_ms,
            }
        },
    )
}

fn setup() -> impl Strategy<Value = Setup> {
    (role(), any::<bool>(), 1u8..6, 0u8..7, any::<u8>(), prop_oneof![1u8..6, Just(255u8)]).prop_flat_map(
        |(role, herd_control, max_sessions, peers, self_position, max_pending)| {
            (
                1u8..8,
                prop_oneof![1u8..6, Just(255u8)],
                prop_oneof![0u8..4, Just(255u8)],
                1u8..8,
                timers(),
                any::<u64>(),
            )
                .prop_map(
                    move |(max_members, max_tracked, max_reservations, max_list_len, timers, seed)| Setup {
                        role,
                        herd_control,
                        max_sessions,
                        peers,
                        self_position,
                        max_pending,
                        max_members,
                        max_tracked,
                        max_reservations,
                        max_list_len,
                        timers,
                        seed,
                    },
                )
        },
    )
}

fn cluster_choice() -> impl Strategy<Value = ClusterChoice> {
    prop_oneof![2 => Just(ClusterChoice::Ours), 2 => Just(ClusterChoice::Unnamed), 1 => Just(ClusterChoice::Other)]
}

/// A connection: a new one, or one of the first few open ones (so one
/// connection carries many requests).
fn conn() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![1 => Just(None), 2 => (0u8..4).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (conn(), any::<u64>(), prop::bool::weighted(0.9), cluster_choice())
            .prop_map(|(conn, salt, load_balance, cluster)| Op::Handshake { conn, salt, load_balance, cluster }),
        4 => (conn(), proptest::bool::weighted(0.2)).prop_map(|(conn, denied)| Op::Session { conn, denied }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, twice)| Op::EndSession { pick, twice }),
        1 => any::<u64>().prop_map(|id| Op::EndUnknown(SessionId(id))),
        2 => any::<u8>().prop_map(Op::CloseConnection),
        1 => any::<u64>().prop_map(|q| Op::PeerQuery(QueryId(q))),
        4 => (prop_oneof![Just(0u8), any::<u8>()], any::<bool>())
            .prop_map(|(hide, duplicate)| Op::RegistryAnswer { hide, duplicate }),
        1 => Just(Op::RegistryFail),
        1 => any::<u64>().prop_map(|q| Op::RegistryStray(QueryId(q))),
        6 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(pick, contradictory)| Op::Report { pick, contradictory }),
        1 => any::<u8>().prop_map(Op::Unreachable),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(query_id, id)| Op::StrayReport { query_id: QueryId(query_id), id }),
        1 => any::<bool>().prop_map(Op::SetAccepting),
        1 => (0u8..6).prop_map(Op::SetMaxSessions),
        1 => prop::bool::weighted(0.3).prop_map(Op::SetSaturated),
        2 => (any::<u8>(), role(), prop::bool::weighted(0.8), 0u8..12, 0u8..12, prop::bool::weighted(0.1))
            .prop_map(|(peer, role, accepting, connected, max, inactive)| Op::SetPeer {
                peer, role, accepting, connected, max, inactive
            }),
        4 => prop_oneof![3 => 1u16..10, 4 => 0u16..50, 4 => 0u16..2000, 2 => Just(500u16), 1 => 20_000u16..40_000].prop_map(Op::Advance),
        1 => (0u16..100, any::<bool>()).prop_map(|(ms, query)| Op::Backwards { ms, query }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every invariant of the reference model holds after every step, no
    /// sequence panics, and once time runs on every handshake was answered.
    #[test]
    fn random_ops_keep_every_invariant(setup in setup(), ops in prop::collection::vec(op(), 0..150)) {
        let mut world = World::new(&setup, base(), false);
        for op in &ops {
            world.step(op);
        }
        world.settle();
        prop_assert_eq!(world.waiting(), 0);
    }

    /// Same inputs and seed, same actions at the same times.
    #[test]
    fn same_inputs_and_seed_same_actions(setup in setup(), ops in prop::collection::vec(op(), 0..80)) {
        let start = base();
        let run = || {
            let mut world = World::new(&setup, start, true);
            for op in &ops {
                world.step(op);
            }
            world.settle();
            world.log().to_vec()
        };
        prop_assert_eq!(run(), run());
    }
}

/// Instance 1 with peers 2..=peers+1; returns the instance, the first handshake's
/// registry query answered, and the peer query ids.
fn cluster(
    peers: u32,
    herd_control: bool,
    figures: &[(u32, u32)],
) -> (Instance, std::time::Instant, Vec<QueryId>) {
    let now = base();
    let mut c = config(1, Role::Serving, 10);
    c.herd_control = herd_control;
    let mut inst = Instance::new(c, now, 3).expect("valid");
    while inst.poll_action().is_some() {}
    let members: Vec<_> = (2..peers + 2)
        .map(|id| {
            let (connected, max) = figures[(id - 2) as usize];
            member(id, Role::Serving, connected, max)
        })
        .collect();
    inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(0), request: handshake(0, 0) }, now)
        .expect("usable");
    let Some(Action::QueryRegistry { query_id, .. }) = inst.poll_action() else { panic!("registry query") };
    inst.handle_event(Event::RegistrySnapshot { query_id, members }, now).expect("usable");
    let mut queries = Vec::new();
    while let Some(action) = inst.poll_action() {
        let Action::QueryPeer { query_id, .. } = action else { panic!("peer queries only, got {action:?}") };
        queries.push(query_id);
    }
    (inst, now, queries)
}

fn figures(peers: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((1u32..20).prop_flat_map(|max| (0..=max, Just(max))), peers)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// K concurrent handshakes cost one registry query and one query per
    /// peer; with every peer silent each gets exactly one reply, at
    /// `peer_timeout` after the queries went out (one timeout step).
    #[test]
    fn a_burst_shares_one_round_even_when_every_peer_is_silent(k in 1usize..300, figures in figures(1..8)) {
        let peers = figures.len() as u32;
        let (mut inst, now, queries) = cluster(peers, true, &figures);
        prop_assert_eq!(queries.len(), peers as usize);
        for r in 1..k as u64 {
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: handshake(r, r) }, now)
                .expect("usable");
            prop_assert_eq!(inst.poll_action(), None, "a joining handshake costs no query");
        }
        let mut replied = vec![0u32; k];
        let collect = |inst: &mut Instance, replied: &mut Vec<u32>| {
            while let Some(action) = inst.poll_action() {
                let Action::Reply { conn, message: Message::HandshakeReply(reply) } = action else {
                    panic!("only handshake replies, got {action:?}");
                };
                assert_eq!(conn.0, reply.request_id);
                assert!(matches!(reply.outcome, HandshakeOutcome::Ranked(_)));
                replied[conn.0 as usize] += 1;
            }
        };
        {
            let deadline = inst.poll_timeout().expect("peer timer");
            prop_assert_eq!(deadline, now + inst.config().peer_timeout);
            inst.handle_timeout(deadline - Duration::from_nanos(1));
            collect(&mut inst, &mut replied);
            prop_assert!(replied.iter().all(|&n| n == 0), "no reply before the timeout");
            inst.handle_timeout(deadline);
        }
        collect(&mut inst, &mut replied);
        prop_assert!(replied.iter().all(|&n| n == 1), "exactly one reply each");
        prop_assert_eq!(inst.stats().registry_queries, 1);
        prop_assert_eq!(inst.stats().peer_queries, u64::from(peers));
    }

    /// Herd control on, one round: the replies equal a sequential reference
    /// model that ranks the predicted figures, orders the head's tie group
    /// least recently headed first (never first, equal records in `rank()`'s
    /// order), lists the members predicted full (free by their reports) last,
    /// ranked by and showing their reported figures, and adds one session to
    /// each reply's first entry (a tail member when all are predicted full);
    /// with it off, every reply is `rank()` of the reported figures.
    #[test]
    fn burst_replies_match_the_reference_model(
        salts in prop::collection::vec(any::<u64>(), 1..40),
        figures in figures(0..8),
        own_max in 1u32..20,
        herd_control in any::<bool>(),
    ) {
        let peers = figures.len() as u32;
        let now = base();
        let mut c = config(1, Role::Serving, own_max);
        c.herd_control = herd_control;
        let mut inst = Instance::new(c, now, 3).expect("valid");
        while inst.poll_action().is_some() {}
        let members: Vec<_> = (0..peers).map(|i| member(i + 2, Role::Serving, 0, 1)).collect();
        for (r, &salt) in salts.iter().enumerate() {
            let r = r as u64;
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: handshake(r, salt) }, now)
                .expect("usable");
        }
        let mut queries = Vec::new();
        let mut replies = Vec::new();
        while let Some(action) = inst.poll_action() {
            match action {
                Action::QueryRegistry { query_id, .. } => {
                    inst.handle_event(Event::RegistrySnapshot { query_id, members: members.clone() }, now)
                        .expect("usable");
                }
                Action::QueryPeer { query_id, peer, .. } => queries.push((query_id, peer)),
                reply @ Action::Reply { .. } => replies.push(reply),
                other => panic!("unexpected {other:?}"),
            }
        }
        for &(query_id, peer) in &queries {
            let (connected, max) = figures[(peer.0 - 2) as usize];
            inst.handle_event(Event::WorkloadReport { report: report(query_id, peer.0, connected, max) }, now)
                .expect("usable");
        }
        replies.extend(std::iter::from_fn(|| inst.poll_action()));
        let mut replies = replies.into_iter();
        // The model: self first by id (1), then peers 2.. in id order.
        let mut ids = vec![InstanceId(1)];
        let mut model = vec![Candidate { role: Role::Serving, accepting: true, workload: Workload::new(0, own_max) }];
        for (i, &(connected, max)) in figures.iter().enumerate() {
            ids.push(InstanceId(i as u32 + 2));
            model.push(Candidate { role: Role::Serving, accepting: true, workload: Workload::new(connected, max) });
        }
        let reported = model.clone();
        // The reply number at which each model member last headed a list.
        let mut headed_at: Vec<Option<usize>> = vec![None; model.len()];
        for (r, &salt) in salts.iter().enumerate() {
            let Some(Action::Reply { conn, message: Message::HandshakeReply(reply) }) = replies.next() else {
                panic!("one reply per handshake, in arrival order");
            };
            prop_assert_eq!(conn, ConnectionId(r as u64));
            let HandshakeOutcome::Ranked(list) = reply.outcome else { panic!("ranked") };
            let mut order = rank(&model, salt);
            if herd_control && !order.is_empty() {
                // The head's tie group, least recently headed first (never
                // first), equal records in rank()'s order.
                let tied = order.iter().take_while(|&&i| model[i].workload == model[order[0]].workload).count();
                let mut group: Vec<usize> = order[..tied].to_vec();
                group.sort_by_key(|&i| headed_at[i].map_or(0, |r| r + 1));
                order[..tied].copy_from_slice(&group);
            }
            if herd_control {
                // Members free by their reports but predicted full follow,
                // ranked by their reported figures (SPEC 2.4: never dropped).
                let tail: Vec<Candidate> = reported
                    .iter()
                    .zip(&model)
                    .map(|(r, p)| Candidate { accepting: r.accepting && p.workload.is_full(), ..*r })
                    .collect();
                order.extend(rank(&tail, salt));
            }
            let shown = |i: usize| if model[i].workload.is_full() { reported[i].workload } else { model[i].workload };
            let want: Vec<(InstanceId, Workload)> = order.iter().map(|&i| (ids[i], shown(i))).collect();
            let got: Vec<(InstanceId, Workload)> = list.entries.iter().map(|e| (e.id, e.workload)).collect();
            prop_assert_eq!(got, want);
            let free = reported.iter().filter(|c| c.is_eligible()).count();
            prop_assert_eq!(list.entries.len(), free, "never dropped, never empty while one is free");
            if herd_control {
                if let Some(&first) = order.first() {
                    headed_at[first] = Some(r);
                    model[first].workload.connected += 1;
                }
            }
        }
        prop_assert!(replies.next().is_none());
    }
}

/// Ops about sessions and connections only, on a few connections.
fn session_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (conn(), proptest::bool::weighted(0.2)).prop_map(|(conn, denied)| Op::Session { conn, denied }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(pick, twice)| Op::EndSession { pick, twice }),
        3 => any::<u8>().prop_map(Op::CloseConnection),
        1 => any::<u64>().prop_map(|id| Op::EndUnknown(SessionId(id))),
        1 => (conn(), any::<u64>())
            .prop_map(|(conn, salt)| Op::Handshake { conn, salt, load_balance: false, cluster: ClusterChoice::Ours }),
        1 => any::<bool>().prop_map(Op::SetAccepting),
        1 => (1u8..6).prop_map(Op::SetMaxSessions),
        1 => (0u16..100).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// SPEC 3.5: over random requests (many per connection), explicit ends
    /// and connection closes, `connected()` always equals the number of
    /// connections holding a session in the model (every verdict is checked
    /// by the world's model too); closing every connection leaves 0.
    #[test]
    fn connected_counts_the_connections_holding_a_session(
        setup in setup(),
        ops in prop::collection::vec(session_op(), 0..300),
    ) {
        let setup = Setup { role: Role::Serving, ..setup };
        let mut world = World::new(&setup, base(), false);
        for op in &ops {
            world.step(op);
            prop_assert_eq!(world.instance().connected() as usize, world.connections_in_session());
        }
        let open = world.open_connections();
        for _ in 0..open {
            world.step(&Op::CloseConnection(0));
        }
        prop_assert_eq!(world.open_connections(), 0);
        prop_assert_eq!(world.instance().connected(), 0);
        let stats = world.instance().stats();
        prop_assert_eq!(stats.sessions_ended, stats.sessions_accepted);
    }

    /// N session requests on one connection give exactly one session, every
    /// other request on it is `AlreadyInSession` (whatever else is free), and
    /// closing it leaves 0 sessions; a new connection is admitted again.
    #[test]
    fn n_requests_on_one_connection_give_one_session(n in 1u64..200, max in 1u32..8, others in 0u64..4) {
        let mut h = Harness::new(config(1, Role::Serving, max));
        h.expect_heartbeat();
        let first = h.accepted(7, 0);
        for r in 1..n {
            prop_assert_eq!(h.rejected(7, r), RejectReason::AlreadyInSession);
            h.expect_idle();
            prop_assert_eq!(h.inst.connected(), 1);
            if r <= others {
                // Another connection's request is judged on its own (its
                // session is closed again at once, so only max 1 is full).
                let verdict = h.session(100 + r, r);
                if max >= 2 {
                    let aos_cluster::wire::SessionOutcome::Accepted { .. } = verdict else {
                        panic!("a free instance admits another connection, got {verdict:?}");
                    };
                    h.event(Event::ConnectionClosed { conn: ConnectionId(100 + r) });
                } else {
                    prop_assert_eq!(verdict, aos_cluster::wire::SessionOutcome::Rejected(RejectReason::Full));
                }
                h.expect_idle();
                prop_assert_eq!(h.inst.connected(), 1);
            }
        }
        prop_assert_eq!(h.inst.stats().rejected_already_in_session, n - 1);
        h.event(Event::ConnectionClosed { conn: ConnectionId(7) });
        h.expect_idle();
        prop_assert_eq!(h.inst.connected(), 0);
        // The closed connection's session id is gone: ending it is ignored.
        h.event(Event::SessionEnded { session_id: first });
        prop_assert_eq!(h.inst.stats().ignored_session_ends, 1);
        let again = h.accepted(8, n);
        prop_assert!(again != first, "a fresh session id");
        prop_assert_eq!(h.inst.connected(), 1);
    }
}

/// Landings cancel reservations one for one, whoever made them: a valid
/// report's rise since the member's last report, and an admission here,
/// each count a landing whose client still holds its reservation (its
/// handshake connection is open until its walk ends); the close then
/// releases that reservation without predicting anything more. A
/// reservation no landing cancelled stays predicted, however old, until its
/// client closes or it expires.
#[test]
fn landings_cancel_reservations_until_their_clients_close() {
    let mut h = Harness::new(config(1, Role::Serving, 10));
    h.expect_heartbeat();
    /// Handshake `r` on its own connection; #2 reports `connected`; the list.
    fn ask(h: &mut Harness, r: u64, snapshot: bool, connected: u32) -> Vec<(u32, u32)> {
        h.queue.retain(|a| !matches!(a, Action::PublishHeartbeat(_)));
        h.event(Event::HandshakeRequest { conn: ConnectionId(r), request: handshake(r, 0) });
        if snapshot {
            let query_id = h.expect_registry_query();
            h.event(Event::RegistrySnapshot { query_id, members: vec![member(2, Role::Serving, 0, 10)] });
        }
        let query_id = h.expect_peer_query(2);
        h.event(Event::WorkloadReport { report: report(query_id, 2, connected, 10) });
        let list = h.expect_ranked(r, r);
        h.expect_idle();
        list.entries.iter().map(|e| (e.id.0, e.workload.connected)).collect()
    }
    // t = 0: self (0/10) heads and is reserved; its session lands at 800 ms
    // on a connection of its own, and cancels the reservation, which its
    // client's close then releases.
    assert_eq!(ask(&mut h, 1, true, 5), vec![(1, 0), (2, 5)]);
    h.advance(Duration::from_millis(800));
    h.accepted(9, 100);
    assert_eq!(h.inst.reservations(), 1, "cancelled, held until its client closes");
    h.event(Event::ConnectionClosed { conn: ConnectionId(1) });
    assert_eq!(h.inst.reservations(), 0);
    // t = 1 s: #2 (0/10) heads and is reserved.
    h.advance(Duration::from_millis(200));
    assert_eq!(ask(&mut h, 2, true, 0), vec![(2, 0), (1, 1)]);
    // t = 1.05 s: #2 reports 0: nothing landed, the reservation stays
    // predicted. Self (1/10, headed longer ago) goes first and is reserved.
    h.advance(Duration::from_millis(50));
    assert_eq!(ask(&mut h, 3, false, 0), vec![(1, 1), (2, 1)]);
    // t = 1.1 s: #2 reports 1: a landing, which cancels its reservation
    // (else #2 would show 2).
    h.advance(Duration::from_millis(50));
    assert_eq!(ask(&mut h, 4, false, 1), vec![(2, 1), (1, 2)]);
    // Its client closes its handshake connection: the cancelled
    // reservation goes. Left: self's of 1.05 s and #2's of 1.1 s, whose
    // clients never land nor close: predicted until they expire
    // (`reservation_ttl`, 5 s).
    h.event(Event::ConnectionClosed { conn: ConnectionId(2) });
    assert_eq!(h.inst.reservations(), 2);
    h.advance(Duration::from_millis(5_100));
    assert_eq!(ask(&mut h, 5, true, 1), vec![(1, 1), (2, 1)]);
    assert_eq!(h.inst.stats().reservations_expired_unused, 2);
}

/// A herd-heavy cluster: herd control on, a few peers, room for many
/// sessions and reservations, long reservation and snapshot lifetimes.
fn herd_setup() -> impl Strategy<Value = Setup> {
    (1u8..4, 5u8..40, 1u8..8, any::<u64>(), 0u16..3_000, 1_000u16..5_000, 0u16..1_000).prop_map(
        |(peers, max_sessions, max_list_len, seed, peer_timeout_ms, snapshot_ttl_ms, reservation_extra)| {
            Setup {
                role: Role::Serving,
                herd_control: true,
                max_sessions,
                peers,
                self_position: 0,
                max_pending: 255,
                max_members: 255,
                max_tracked: 255,
                max_reservations: 255,
                max_list_len,
                timers: Timers {
                    peer_timeout_ms,
                    registry_timeout_ms: 1_000,
                    snapshot_ttl_ms,
                    reservation_ttl_ms: 2_000 + reservation_extra,
                    member_ttl_ms: 30_000,
                    heartbeat_interval_ms: 5_000,
                },
                seed,
            }
        },
    )
}

/// Handshakes, reports that answer them, sessions that land and small
/// steps of time: reservations are made, replaced, consumed, covered
/// (inside and outside the learned landing time) and expire.
fn herd_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop_oneof![2 => Just(None), 1 => (0u8..4).prop_map(Some)], any::<u64>())
            .prop_map(|(conn, salt)| Op::Handshake { conn, salt, load_balance: true, cluster: ClusterChoice::Ours }),
        2 => Just(Op::RegistryAnswer { hide: 0, duplicate: false }),
        5 => any::<u8>().prop_map(|pick| Op::Report { pick, contradictory: false }),
        3 => Just(Op::Session { conn: None, denied: false }),
        1 => any::<u8>().prop_map(|pick| Op::EndSession { pick, twice: false }),
        1 => (any::<u8>(), 0u8..8, 5u8..12)
            .prop_map(|(peer, connected, max)| Op::SetPeer {
                peer, role: Role::Serving, accepting: true, connected, max, inactive: false
            }),
        4 => prop_oneof![3 => 1u16..40, 1 => 40u16..600, 1 => Just(2_500u16)].prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The reference model of herd control (every list, reservation and
    /// counter) holds on herd-heavy sequences too.
    #[test]
    fn herd_heavy_ops_match_the_reference_model(
        setup in herd_setup(),
        ops in prop::collection::vec(herd_op(), 0..200),
    ) {
        let mut world = World::new(&setup, base(), false);
        for op in &ops {
            world.step(op);
        }
        world.settle();
        prop_assert_eq!(world.waiting(), 0);
    }
}
