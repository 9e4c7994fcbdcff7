//! Transcripts of trouble and limits: registry failures, refusals, peers and heartbeats, direct mode, memory bounds.

use super::*;

#[test]
fn registry_trouble_ranks_from_the_last_snapshot_marked_stale() {
    let mut h = cluster_of_three(Role::Serving, 10);
    // No snapshot yet and the registry fails: self alone, stale.
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: handshake(1, 0) });
    let q = h.expect_registry_query();
    h.event(Event::RegistryFailed { query_id: q, reason: "db down".into() });
    let list = h.expect_ranked(1, 1);
    assert!(list.stale);
    assert_eq!(ids(&list), vec![1]);
    // A good snapshot, then the registry goes silent after snapshot_ttl.
    let (q2, q3) = handshake_to_peer_queries(&mut h, 2);
    h.event(Event::WorkloadReport { report: report(q2, 2, 0, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    assert!(!h.expect_ranked(100, 2).stale);
    h.advance(h.inst.config().snapshot_ttl);
    h.event(Event::HandshakeRequest { conn: ConnectionId(3), request: handshake(3, 0) });
    let _silent = h.expect_registry_query();
    h.advance(h.inst.config().registry_timeout);
    let q2 = h.expect_peer_query(2);
    let q3 = h.expect_peer_query(3);
    h.event(Event::WorkloadReport { report: report(q2, 2, 0, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    let list = h.expect_ranked(3, 3);
    assert!(list.stale);
    assert_eq!(list.entries.len(), 3);
    assert_eq!(h.inst.stats().round.registry_failures, 2);
    assert_eq!(h.inst.stats().round.stale_replies, 2);
    // The late registry answer is ignored.
    h.event(Event::RegistrySnapshot { query_id: _silent, members: snapshot() });
    h.expect_idle();
}

#[test]
fn refusals_wrong_cluster_and_busy() {
    let mut c = config(1, Role::Serving, 10);
    c.limits.max_pending_handshakes = 2;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    let mut other = handshake(1, 0);
    other.cluster = Some("test".into());
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: other });
    let refused = |h: &mut Harness, conn: u64, reason: RefuseReason| match h.next() {
        Action::Reply { conn: c, message: Message::HandshakeReply(r) } => {
            assert_eq!(c, ConnectionId(conn));
            assert_eq!(r.outcome, HandshakeOutcome::Refused(reason));
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    refused(&mut h, 1, RefuseReason::WrongCluster);
    h.event(Event::HandshakeRequest { conn: ConnectionId(2), request: handshake(2, 0) });
    let q = h.expect_registry_query();
    // No cluster named: any cluster will do.
    let mut anonymous = handshake(3, 0);
    anonymous.cluster = None;
    h.event(Event::HandshakeRequest { conn: ConnectionId(3), request: anonymous });
    h.event(Event::HandshakeRequest { conn: ConnectionId(4), request: handshake(4, 0) });
    refused(&mut h, 4, RefuseReason::Busy);
    h.expect_idle();
    h.event(Event::RegistrySnapshot { query_id: q, members: vec![] });
    assert_eq!(ids(&h.expect_ranked(2, 2)), vec![1]);
    assert_eq!(ids(&h.expect_ranked(3, 3)), vec![1]);
    assert_eq!(h.inst.stats().round.refused_busy, 1);
}

#[test]
fn peers_get_live_figures_and_heartbeats_keep_time() {
    let mut h = cluster_of_three(Role::Serving, 10);
    h.accepted(1, 1);
    h.event(Event::WorkloadQuery { conn: ConnectionId(77), query: WorkloadQuery { query_id: QueryId(5) } });
    match h.next() {
        Action::Reply { conn, message: Message::WorkloadReport(r) } => {
            assert_eq!(conn, ConnectionId(77));
            assert_eq!(
                r,
                WorkloadReport {
                    query_id: QueryId(5),
                    id: InstanceId(1),
                    role: Role::Serving,
                    accepting: true,
                    workload: Workload::new(1, 10)
                }
            );
        }
        other => panic!("expected a workload report, got {other:?}"),
    }
    let interval = h.inst.config().heartbeat_interval;
    assert_eq!(h.inst.poll_timeout(), Some(h.now + interval));
    h.advance(interval - MS);
    h.expect_idle();
    h.advance(MS);
    assert_eq!(h.expect_heartbeat(), (true, Workload::new(1, 10)));
    h.expect_idle();
    // Extra timeout calls do nothing.
    h.advance(Duration::ZERO);
    h.expect_idle();
}

#[test]
fn direct_mode_answers_at_once_with_self() {
    let mut h = cluster_of_three(Role::Serving, 10);
    let mut direct = handshake(1, 0);
    direct.load_balance = false;
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: direct });
    assert_eq!(ids(&h.expect_ranked(1, 1)), vec![1]);
    h.expect_idle();
    assert_eq!(h.inst.stats().round.rounds, 0);
}

#[test]
fn memory_bounds_refuse_instead_of_growing() {
    let mut c = config(1, Role::Serving, 10);
    c.limits.max_members = 1;
    c.limits.max_reservations = 1;
    c.limits.max_tracked_sessions = 2;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    // Only the first member by id is kept from the snapshot.
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: handshake(1, 0) });
    h.event(Event::HandshakeRequest { conn: ConnectionId(2), request: handshake(2, 0) });
    let q = h.expect_registry_query();
    h.event(Event::RegistrySnapshot { query_id: q, members: snapshot() });
    let q2 = h.expect_peer_query(2);
    h.expect_idle();
    assert_eq!(h.inst.cached_members(), 1);
    assert_eq!(h.inst.stats().round.members_dropped, 1);
    h.event(Event::WorkloadReport { report: report(q2, 2, 5, 10) });
    assert_eq!(ids(&h.expect_ranked(1, 1)), vec![1, 2]);
    // The second reply sees the first one's reservation but cannot add its own.
    let second = h.expect_ranked(2, 2);
    assert_eq!(second.entries[0].workload, Workload::new(1, 10));
    assert_eq!(h.inst.reservations(), 1);
    assert_eq!(h.inst.stats().herd.reservations_dropped, 1);
    // Tracked sessions are capped below max_sessions: Busy.
    h.accepted(3, 1);
    h.accepted(4, 2);
    assert_eq!(h.rejected(5, 3), RejectReason::Busy);
    assert_eq!(h.inst.connected(), 2);
}
