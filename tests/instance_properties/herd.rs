//! Herd control against the reference model: landings, releases, herd-heavy random ops.

use super::*;

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
    assert_eq!(h.inst.stats().herd.reservations_expired_unused, 2);
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
