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

mod burst;
#[path = "../common/mod.rs"]
mod common;
mod herd;
mod sessions;

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
