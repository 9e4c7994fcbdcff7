//! Sessions and connections under random requests, ends and closes.

use super::*;

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
        prop_assert_eq!(stats.admission.sessions_ended, stats.admission.sessions_accepted);
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
        prop_assert_eq!(h.inst.stats().admission.rejected_already_in_session, n - 1);
        h.event(Event::ConnectionClosed { conn: ConnectionId(7) });
        h.expect_idle();
        prop_assert_eq!(h.inst.connected(), 0);
        // The closed connection's session id is gone: ending it is ignored.
        h.event(Event::SessionEnded { session_id: first });
        prop_assert_eq!(h.inst.stats().admission.ignored_session_ends, 1);
        let again = h.accepted(8, n);
        prop_assert!(again != first, "a fresh session id");
        prop_assert_eq!(h.inst.connected(), 1);
    }
}
