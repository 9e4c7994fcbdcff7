//! Herd control in transcripts: reservations, the tie rule, and herd control off.

use super::*;

#[test]
fn herd_control_spreads_a_burst_and_reports_replace_predictions() {
    let mut h = cluster_of_three(Role::Serving, 10);
    let (q2, q3) = handshake_to_peer_queries(&mut h, 0);
    h.event(Event::HandshakeRequest { conn: ConnectionId(101), request: handshake(1, 0) });
    h.event(Event::HandshakeRequest { conn: ConnectionId(102), request: handshake(2, 0) });
    h.event(Event::WorkloadReport { report: report(q2, 2, 1, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    // Self 0/10, #2 1/10, #3 0/10: first reply [1,3,2] reserves on #1,
    // the second then sees #1 at 1/10 and puts #3 first, the third sees
    // three at 1/10 (salt 0 keeps id order) and puts first #2, the one that
    // has not headed a reply yet.
    let first = h.expect_ranked(100, 0);
    assert_eq!(ids(&first), vec![1, 3, 2]);
    let second = h.expect_ranked(101, 1);
    assert_eq!(ids(&second), vec![3, 1, 2]);
    assert_eq!(second.entries[1].workload, Workload::new(1, 10), "predicted, not reported");
    let third = h.expect_ranked(102, 2);
    assert_eq!(ids(&third), vec![2, 1, 3]);
    assert_eq!(h.inst.reservations(), 3);
    // A session here, on a connection of its own, cancels one own
    // reservation, held until its client's handshake connection closes.
    h.accepted(1, 1);
    assert_eq!(h.inst.reservations(), 3);
    // The next round (snapshot still fresh: no registry query): #3's report
    // shows no new session, so it covers none of its prediction (that client
    // is still on its way); #2 does not answer.
    h.event(Event::HandshakeRequest { conn: ConnectionId(103), request: handshake(3, 0) });
    let q2b = h.expect_peer_query(2);
    let q3b = h.expect_peer_query(3);
    h.event(Event::WorkloadReport { report: report(q3b, 3, 0, 10) });
    h.event(Event::PeerUnreachable { query_id: q2b, peer: InstanceId(2), reason: String::new() });
    let list = h.expect_ranked(103, 3);
    // Self: 1 live (its reservation cancelled) = 1/10; #3: 0/10 live + 1 still
    // predicted = 1/10. Tied: self headed a reply longer ago than #3.
    assert_eq!(ids(&list), vec![1, 3]);
    assert_eq!(list.entries[0].workload, Workload::new(1, 10));
    assert_eq!(list.entries[1].workload, Workload::new(1, 10), "uncovered prediction kept");
    assert_eq!(h.inst.stats().round.registry_queries, 1);
    // #2 1 (silent, so nothing covered it), #3 1 (kept), self 1 cancelled
    // and 1 (this reply's). They expire after reservation_ttl.
    assert_eq!(h.inst.reservations(), 4);
    h.now += h.inst.config().reservation_ttl;
    h.event(Event::HandshakeRequest { conn: ConnectionId(104), request: handshake(4, 0) });
    let q = h.expect_registry_query();
    h.event(Event::RegistrySnapshot { query_id: q, members: snapshot() });
    let q2 = h.expect_peer_query(2);
    let q3 = h.expect_peer_query(3);
    h.event(Event::WorkloadReport { report: report(q2, 2, 0, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    let list = h.expect_ranked(104, 4);
    // #2 and #3 tie at 0/10; #3 headed reply 2, #2 reply 3.
    assert_eq!(ids(&list), vec![3, 2, 1]);
    assert_eq!(list.entries[2].workload, Workload::new(1, 10), "own prediction expired");
    assert_eq!(h.inst.reservations(), 1, "expired ones purged, one new on #3");
}

#[test]
fn herd_control_hands_tied_members_arrivals_in_round_robin() {
    let mut h = cluster_of_three(Role::Serving, 10);
    // Six handshakes in one round; every member reports 0/10.
    let (q2, q3) = handshake_to_peer_queries(&mut h, 0);
    let salts = [0, 0, 2, 0, 0];
    for (r, &salt) in salts.iter().enumerate() {
        let r = r as u64 + 1;
        h.event(Event::HandshakeRequest { conn: ConnectionId(100 + r), request: handshake(r, salt) });
    }
    h.event(Event::WorkloadReport { report: report(q2, 2, 0, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    // Replies 1-3 fill the first level (salt 0 keeps id order). At reply 4
    // all three tie at 1/10 again and salt 2 alone would put #3 first, the
    // member that just took reply 3; the least recently headed (#1) goes
    // first instead, and the levels repeat in one order.
    let heads: Vec<u32> = (0..6).map(|r| ids(&h.expect_ranked(100 + r, r))[0]).collect();
    assert_eq!(heads, vec![1, 2, 3, 1, 2, 3]);
    h.expect_idle();
    assert_eq!(h.inst.reservations(), 6);
}

#[test]
fn herd_control_off_replies_with_reported_figures_only() {
    let mut c = config(1, Role::Serving, 10);
    c.herd_control = false;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    let (q2, q3) = handshake_to_peer_queries(&mut h, 0);
    h.event(Event::HandshakeRequest { conn: ConnectionId(101), request: handshake(1, 0) });
    h.event(Event::WorkloadReport { report: report(q2, 2, 1, 10) });
    h.event(Event::WorkloadReport { report: report(q3, 3, 0, 10) });
    // The seed's plain behaviour: both clients herd onto the same first entry.
    assert_eq!(ids(&h.expect_ranked(100, 0)), vec![1, 3, 2]);
    assert_eq!(ids(&h.expect_ranked(101, 1)), vec![1, 3, 2]);
    assert_eq!(h.inst.reservations(), 0);
}
