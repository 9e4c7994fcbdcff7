//! Property tests for the instance machine against reference models.
//!
//! The random-op properties run the [`World`] of the `instance_ops` fuzz body:
//! a simulated registry, peers and clients around one instance, checking after
//! every step that replies are sorted by (predicted) workload and hold only
//! eligible members that answered this round, that with herd control off a
//! reply is exactly `rank()` of the reported figures, that `connected` never
//! passes `max_sessions` by an admission, that a round costs at most one
//! registry query and one query per peer, and that every handshake gets
//! exactly one reply within `registry_timeout + peer_timeout`.
#![cfg(feature = "fuzzing")]

mod common;

use std::time::Duration;

use aos_cluster::fuzzing::instance_ops::{ClusterChoice, Op, Setup, World};
use aos_cluster::instance::{Action, ConnectionId, Event, Instance};
use aos_cluster::wire::{HandshakeOutcome, Message, QueryId, SessionId};
use aos_cluster::workload::{rank, Candidate, InstanceId, Role, Workload};
use common::instance::{base, config, handshake, member, report};
use proptest::prelude::*;

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![6 => Just(Role::Serving), 2 => Just(Role::LoadBalancerOnly), 1 => Just(Role::Standalone)]
}

fn setup() -> impl Strategy<Value = Setup> {
    (role(), any::<bool>(), 1u8..6, 0u8..7, any::<u8>(), prop_oneof![1u8..6, Just(255u8)]).prop_flat_map(
        |(role, herd_control, max_sessions, peers, self_position, max_pending)| {
            (1u8..8, prop_oneof![1u8..6, Just(255u8)], 1u8..8, any::<u64>()).prop_map(
                move |(max_members, max_tracked, max_list_len, seed)| Setup {
                    role,
                    herd_control,
                    max_sessions,
                    peers,
                    self_position,
                    max_pending,
                    max_members,
                    max_tracked,
                    max_list_len,
                    seed,
                },
            )
        },
    )
}

fn cluster_choice() -> impl Strategy<Value = ClusterChoice> {
    prop_oneof![2 => Just(ClusterChoice::Ours), 2 => Just(ClusterChoice::Unnamed), 1 => Just(ClusterChoice::Other)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u64>(), prop::bool::weighted(0.9), cluster_choice())
            .prop_map(|(salt, load_balance, cluster)| Op::Handshake { salt, load_balance, cluster }),
        4 => Just(Op::Session),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, twice)| Op::EndSession { pick, twice }),
        1 => any::<u64>().prop_map(|id| Op::EndUnknown(SessionId(id))),
        1 => any::<u8>().prop_map(Op::CloseConnection),
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
        2 => (any::<u8>(), role(), prop::bool::weighted(0.8), 0u8..12, 0u8..12, prop::bool::weighted(0.1))
            .prop_map(|(peer, role, accepting, connected, max, inactive)| Op::SetPeer {
                peer, role, accepting, connected, max, inactive
            }),
        3 => prop_oneof![4 => 0u16..50, 4 => 0u16..2000, 2 => Just(500u16), 1 => 20_000u16..40_000].prop_map(Op::Advance),
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
    /// model that ranks the predicted figures, puts first the member tied with
    /// the head that headed a reply least recently (never first, in `rank()`'s
    /// order), and adds one session to each reply's first entry; with it off,
    /// every reply is `rank()` of the reported figures.
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
        let mut model = vec![Candidate { role: Role::Serving, accepting: true, fresh: true, workload: Workload::new(0, own_max) }];
        for (i, &(connected, max)) in figures.iter().enumerate() {
            ids.push(InstanceId(i as u32 + 2));
            model.push(Candidate { role: Role::Serving, accepting: true, fresh: true, workload: Workload::new(connected, max) });
        }
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
                let tied: Vec<usize> =
                    order.iter().copied().filter(|&i| model[i].workload == model[order[0]].workload).collect();
                let never = tied.iter().copied().find(|&i| headed_at[i].is_none());
                let head = never.or_else(|| tied.iter().copied().min_by_key(|&i| headed_at[i]));
                if let Some(head) = head {
                    order.retain(|&i| i != head);
                    order.insert(0, head);
                    headed_at[head] = Some(r);
                }
            }
            let want: Vec<(InstanceId, Workload)> = order.iter().map(|&i| (ids[i], model[i].workload)).collect();
            let got: Vec<(InstanceId, Workload)> = list.entries.iter().map(|e| (e.id, e.workload)).collect();
            prop_assert_eq!(got, want);
            if herd_control {
                if let Some(&first) = order.first() {
                    model[first].workload.connected += 1;
                }
            }
        }
        prop_assert!(replies.next().is_none());
    }
}
