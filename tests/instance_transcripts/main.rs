//! Transcript tests for the instance machine: each test plays one scenario
//! event by event and expects every action the instance emits.

#[path = "../common/mod.rs"]
mod common;
mod herd;
mod trouble;

use std::time::Duration;

use aos_cluster::instance::Action;
use aos_cluster::instance::{ConnectionId, Event};
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RefuseReason, RejectReason, SessionId,
    WorkloadQuery, WorkloadReport,
};
use aos_cluster::workload::{InstanceId, Role, Workload};
use aos_cluster::UsageError;
use common::instance::*;

const MS: Duration = Duration::from_millis(1);

/// Instance 1 of a three-member cluster, with its first heartbeat checked.
fn cluster_of_three(role: Role, max: u32) -> Harness {
    let mut h = Harness::new(config(1, role, max));
    assert_eq!(h.expect_heartbeat(), (true, Workload::new(0, max)));
    h.expect_idle();
    h
}

fn snapshot() -> Vec<aos_cluster::registry::MemberRecord> {
    vec![member(1, Role::Serving, 0, 10), member(2, Role::Serving, 7, 10), member(3, Role::Serving, 2, 10)]
}

/// Handshake on conn 100; the registry answers; returns the two peer query ids.
fn handshake_to_peer_queries(h: &mut Harness, request_id: u64) -> (QueryId, QueryId) {
    h.event(Event::HandshakeRequest { conn: ConnectionId(100), request: handshake(request_id, 0) });
    let q = h.expect_registry_query();
    h.expect_idle();
    h.event(Event::RegistrySnapshot { query_id: q, members: snapshot() });
    let q2 = h.expect_peer_query(2);
    let q3 = h.expect_peer_query(3);
    h.expect_idle();
    (q2, q3)
}

#[test]
fn three_instance_cluster_answers_a_handshake() {
    let mut h = cluster_of_three(Role::Serving, 10);
    for i in 0..5 {
        h.accepted(i, i);
    }
    let (q2, q3) = handshake_to_peer_queries(&mut h, 42);
    h.event(Event::WorkloadReport { report: report(q3, 3, 1, 10) });
    h.expect_idle();
    h.event(Event::WorkloadReport { report: report(q2, 2, 3, 10) });
    let list = h.expect_ranked(100, 42);
    h.expect_idle();
    assert!(!list.stale);
    // Live figures, not the registry's: 3 at 1/10, 2 at 3/10, self at 5/10.
    assert_eq!(ids(&list), vec![3, 2, 1]);
    let loads: Vec<Workload> = list.entries.iter().map(|e| e.workload).collect();
    assert_eq!(loads, vec![Workload::new(1, 10), Workload::new(3, 10), Workload::new(5, 10)]);
    assert_eq!(list.entries[0].endpoint, endpoint(3));
    assert_eq!(list.entries[2].endpoint, endpoint(1));
    assert_eq!(h.inst.stats().round.registry_queries, 1);
    assert_eq!(h.inst.stats().round.peer_queries, 2);
    assert!(!h.inst.round_in_flight());
}

#[test]
fn a_silent_peer_is_left_out_after_peer_timeout() {
    let mut h = cluster_of_three(Role::Serving, 10);
    let (q2, _q3) = handshake_to_peer_queries(&mut h, 1);
    h.event(Event::WorkloadReport { report: report(q2, 2, 3, 10) });
    h.expect_idle();
    let deadline = h.inst.poll_timeout().expect("peer timer");
    assert_eq!(deadline, h.now + h.inst.config().peer_timeout);
    h.advance(h.inst.config().peer_timeout - MS);
    h.expect_idle();
    h.advance(MS);
    let list = h.expect_ranked(100, 1);
    h.expect_idle();
    assert_eq!(ids(&list), vec![1, 2]);
    assert_eq!(h.inst.stats().round.peer_silent, 1);
    // A late answer from the silent peer is ignored, not a panic.
    h.event(Event::WorkloadReport { report: report(_q3, 3, 0, 10) });
    h.expect_idle();
    assert_eq!(h.inst.stats().round.ignored_replies, 1);
}

#[test]
fn unreachable_and_contradictory_peers_are_left_out_at_once() {
    let mut h = cluster_of_three(Role::Serving, 10);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 1);
    h.event(Event::PeerUnreachable { query_id: q2, peer: InstanceId(2), reason: "refused".into() });
    h.expect_idle();
    // connected > max contradicts itself: treated as unreachable.
    h.event(Event::WorkloadReport { report: report(q3, 3, 11, 10) });
    let list = h.expect_ranked(100, 1);
    assert_eq!(ids(&list), vec![1]);
    assert_eq!(h.inst.stats().round.peer_unreachable, 2);
    assert_eq!(h.inst.stats().round.contradictory_reports, 1);
}

#[test]
fn standalone_answers_with_itself_alone_or_nothing_when_full() {
    let mut h = Harness::new(config(9, Role::Standalone, 1));
    h.expect_idle(); // no registry, so no heartbeat
    let direct = HandshakeRequest { request_id: 5, salt: 0, load_balance: true, cluster: None };
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: direct.clone() });
    let list = h.expect_ranked(1, 5);
    h.expect_idle();
    assert_eq!(ids(&list), vec![9]);
    assert_eq!(list.entries[0].workload, Workload::new(0, 1));
    h.accepted(1, 6);
    h.event(Event::HandshakeRequest { conn: ConnectionId(2), request: direct });
    assert!(h.expect_ranked(2, 5).entries.is_empty());
    assert_eq!(h.rejected(2, 7), RejectReason::Full);
    // A client that names a cluster is not one of ours.
    h.event(Event::HandshakeRequest { conn: ConnectionId(3), request: handshake(8, 0) });
    assert!(matches!(
        h.next(),
        Action::Reply { message: Message::HandshakeReply(r), .. }
            if r.outcome == HandshakeOutcome::Refused(RefuseReason::WrongCluster)
    ));
    assert_eq!(h.inst.stats().round.registry_queries, 0);
}

#[test]
fn a_dedicated_load_balancer_ranks_but_rejects_sessions() {
    let mut h = cluster_of_three(Role::LoadBalancerOnly, 10);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 3);
    h.event(Event::WorkloadReport { report: report(q2, 2, 4, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 6, 10) });
    let list = h.expect_ranked(100, 3);
    assert_eq!(ids(&list), vec![2, 3]);
    assert_eq!(h.rejected(5, 1), RejectReason::NotServing);
    assert_eq!(h.inst.connected(), 0);
    // Direct mode on a load balancer: it can take nobody.
    let direct = HandshakeRequest { request_id: 9, salt: 0, load_balance: false, cluster: None };
    h.event(Event::HandshakeRequest { conn: ConnectionId(6), request: direct });
    assert!(h.expect_ranked(6, 9).entries.is_empty());
}

#[test]
fn a_load_balancer_in_the_registry_is_not_queried() {
    let mut h = cluster_of_three(Role::Serving, 10);
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: handshake(1, 0) });
    let q = h.expect_registry_query();
    let mut stale_member = member(4, Role::Serving, 0, 10);
    stale_member.heartbeat_age = Duration::from_secs(31);
    let members =
        vec![member(2, Role::LoadBalancerOnly, 0, 10), member(3, Role::Serving, 0, 10), stale_member];
    h.event(Event::RegistrySnapshot { query_id: q, members });
    let q3 = h.expect_peer_query(3);
    h.expect_idle();
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    // Self has more free sessions? Equal: 0/10 each; salt 0 keeps id order.
    assert_eq!(ids(&h.expect_ranked(1, 1)), vec![1, 3]);
}

#[test]
fn draining_instance_rejects_and_leaves_itself_out() {
    let mut h = cluster_of_three(Role::Serving, 10);
    h.set_accepting(false);
    assert_eq!(h.expect_heartbeat(), (false, Workload::new(0, 10)));
    h.expect_idle();
    assert_eq!(h.rejected(1, 1), RejectReason::Draining);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 2);
    let mut draining_peer = report(q2, 2, 0, 10);
    draining_peer.accepting = false;
    h.event(Event::WorkloadReport { report: draining_peer });
    h.event(Event::WorkloadReport { report: report(q3, 3, 9, 10) });
    assert_eq!(ids(&h.expect_ranked(100, 2)), vec![3]);
    // Undrain: accepted again, heartbeat published at once.
    h.set_accepting(true);
    assert_eq!(h.expect_heartbeat(), (true, Workload::new(0, 10)));
    h.accepted(1, 3);
}

#[test]
fn full_instance_rejects_and_lowering_max_keeps_sessions() {
    let mut h = cluster_of_three(Role::Serving, 3);
    let s: Vec<SessionId> = (0..3).map(|i| h.accepted(i, i)).collect();
    assert_eq!(h.rejected(9, 9), RejectReason::Full);
    assert_eq!(h.inst.connected(), 3);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 4);
    h.event(Event::WorkloadReport { report: report(q2, 2, 10, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 2, 10) });
    assert_eq!(ids(&h.expect_ranked(100, 4)), vec![3]);

    h.set_max_sessions(2);
    let (_, reported) = h.expect_heartbeat();
    // Never `connected > max` on the wire.
    assert_eq!(reported, Workload::new(2, 2));
    assert_eq!(h.inst.connected(), 3);
    h.event(Event::SessionEnded { session_id: s[0] });
    assert_eq!(h.rejected(9, 10), RejectReason::Full);
    h.event(Event::SessionEnded { session_id: s[0] });
    assert_eq!(h.inst.connected(), 2, "a duplicate end is ignored");
    assert_eq!(h.inst.stats().admission.ignored_session_ends, 1);
    h.event(Event::SessionEnded { session_id: s[1] });
    h.accepted(9, 11);
    assert_eq!(h.inst.connected(), 2);
    assert_eq!(
        h.inst.set_max_sessions(0, h.now),
        Err(UsageError::InvalidArgument {
            event: "set_max_sessions",
            reason: "max_sessions must be at least 1",
        })
    );
    assert_eq!(h.inst.max_sessions(), 2);
}

#[test]
fn concurrent_handshakes_share_one_round_and_each_gets_one_reply() {
    let mut h = cluster_of_three(Role::Serving, 10);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 0);
    for r in 1..5u64 {
        h.event(Event::HandshakeRequest { conn: ConnectionId(100 + r), request: handshake(r, r) });
    }
    h.expect_idle();
    // One of them hangs up while waiting.
    h.event(Event::ConnectionClosed { conn: ConnectionId(102) });
    h.event(Event::WorkloadReport { report: report(q2, 2, 0, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    for (conn, r) in [(100, 0), (101, 1), (103, 3), (104, 4)] {
        let list = h.expect_ranked(conn, r);
        assert_eq!(list.entries.len(), 3);
    }
    h.expect_idle();
    assert_eq!(h.inst.stats().round.registry_queries, 1);
    assert_eq!(h.inst.stats().round.peer_queries, 2);
    assert_eq!(h.inst.stats().round.abandoned_handshakes, 1);
}
