//! Herd control under the conditions of a real cluster: clients that land
//! out of order and close their handshake connections after landing, a
//! flood that never lands, registry rows that disagree, figures that go
//! stale. Each test names the rule it holds the machine to.

mod common;

use std::time::Duration;

use aos_cluster::config::FanOut;
use aos_cluster::instance::{Action, ConnectionId, Event};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{self, Message, QueryId, RankedList};
use aos_cluster::workload::{InstanceId, Role, Workload};
use aos_cluster::Endpoint;
use common::instance::*;

const MS: Duration = Duration::from_millis(1);

/// Instance #1 serving `max` sessions, with `peers` in the registry.
fn balancer(max: u32, peers: Vec<MemberRecord>) -> (Harness, Vec<MemberRecord>) {
    let mut h = Harness::new(config(1, Role::Serving, max));
    h.expect_heartbeat();
    (h, peers)
}

/// Starts a round with one handshake on `conn`: answers the registry with
/// `rows` when asked, and returns the peers asked, in order.
fn start(h: &mut Harness, conn: u64, rows: &[MemberRecord]) -> Vec<(QueryId, u32)> {
    h.event(Event::HandshakeRequest { conn: ConnectionId(conn), request: handshake(conn, conn) });
    h.queue.retain(|a| !matches!(a, Action::PublishHeartbeat(_)));
    if let Some(Action::QueryRegistry { query_id, .. }) = h.queue.front().cloned() {
        h.queue.pop_front();
        h.event(Event::RegistrySnapshot { query_id, members: rows.to_vec() });
    }
    let mut asked = Vec::new();
    while let Some(Action::QueryPeer { query_id, peer, .. }) = h.queue.front().cloned() {
        h.queue.pop_front();
        asked.push((query_id, peer.0));
    }
    asked
}

/// Answers every query in `asked` with `figures(peer)`.
fn answer(h: &mut Harness, asked: &[(QueryId, u32)], figures: impl Fn(u32) -> (u32, u32)) {
    for &(q, peer) in asked {
        let (connected, max) = figures(peer);
        h.event(Event::WorkloadReport { report: report(q, peer, connected, max) });
    }
}

/// One whole round for a handshake on `conn`, peers answering `figures`;
/// the list it got.
fn round(
    h: &mut Harness,
    conn: u64,
    rows: &[MemberRecord],
    figures: impl Fn(u32) -> (u32, u32),
) -> RankedList {
    let asked = start(h, conn, rows);
    answer(h, &asked, figures);
    ranked(h, conn)
}

/// The ranked reply on `conn`, past any heartbeat.
fn ranked(h: &mut Harness, conn: u64) -> RankedList {
    h.queue.retain(|a| !matches!(a, Action::PublishHeartbeat(_)));
    h.expect_ranked(conn, conn)
}

/// The figures entry `id` of `list` shows.
fn shown(list: &RankedList, id: u32) -> Workload {
    list.entries.iter().find(|e| e.id == InstanceId(id)).expect("listed").workload
}

/// A flood: `n` handshakes, each on a new connection closed after its reply,
/// none ever asking for a session; peers answer `figures`.
fn flood(h: &mut Harness, n: u64, rows: &[MemberRecord], figures: impl Fn(u32) -> (u32, u32) + Copy) {
    for conn in 1_000..1_000 + n {
        round(h, conn, rows, figures);
        h.event(Event::ConnectionClosed { conn: ConnectionId(conn) });
        h.advance(MS);
    }
}

/// Two handshakes in one round: both wait for the peers' answers, then the
/// heads of their lists, in order.
fn two_in_one_round(
    h: &mut Harness,
    conns: (u64, u64),
    rows: &[MemberRecord],
    figures: impl Fn(u32) -> (u32, u32),
) -> (u32, u32) {
    let asked = start(h, conns.0, rows);
    h.event(Event::HandshakeRequest { conn: ConnectionId(conns.1), request: handshake(conns.1, conns.1) });
    answer(h, &asked, figures);
    let first = ranked(h, conns.0).entries[0].id.0;
    let second = ranked(h, conns.1).entries[0].id.0;
    (first, second)
}

#[test]
fn a_reservation_weighed_below_one_session_still_moves_its_member_back() {
    // #2 is emptier than #3 by less than a sixteenth of a session: after a
    // flood the share is about 1/16, and one reservation must still put #2
    // behind #3 (compared exactly). Rounded, it weighed 0 sessions and both
    // handshakes headed to #2.
    let rows = vec![member(2, Role::Serving, 0, 1_000), member(3, Role::Serving, 1, 16_001)];
    let (mut h, rows) = balancer(100_000, rows);
    let figures = |peer| if peer == 2 { (0, 1_000) } else { (1, 16_001) };
    flood(&mut h, 300, &rows, figures);
    h.inst.set_accepting(false, h.now);
    assert_eq!(two_in_one_round(&mut h, (1, 2), &rows, figures), (2, 3));
}

#[test]
fn a_flood_weighs_nothing_one_reservation_ttl_after_it_stopped() {
    // #3 carries half a session per thousand more than #2. Right after a
    // flood that never landed, a reservation weighs about 1/16 session: #2
    // stays ahead of #3 for the second handshake of a round. One
    // `reservation_ttl` later the flood is out of the share and a
    // reservation weighs a whole session again, as before the flood.
    let rows = vec![member(2, Role::Serving, 0, 1_000), member(3, Role::Serving, 1, 2_000)];
    let (mut h, rows) = balancer(100_000, rows);
    let figures = |peer| if peer == 2 { (0, 1_000) } else { (1, 2_000) };
    // #1 drains to stay out of the lists it ranks (it heads the flood's).
    h.inst.set_accepting(false, h.now);
    assert_eq!(two_in_one_round(&mut h, (1, 2), &rows, figures), (2, 3), "before the flood");
    for conn in [1, 2] {
        h.event(Event::ConnectionClosed { conn: ConnectionId(conn) });
    }
    h.inst.set_accepting(true, h.now);
    flood(&mut h, 300, &rows, figures);
    h.inst.set_accepting(false, h.now);
    assert_eq!(two_in_one_round(&mut h, (3, 4), &rows, figures), (2, 2), "just after the flood");
    for conn in [3, 4] {
        h.event(Event::ConnectionClosed { conn: ConnectionId(conn) });
    }
    let ttl = h.inst.config().reservation_ttl;
    h.advance(ttl);
    assert_eq!(two_in_one_round(&mut h, (5, 6), &rows, figures), (2, 3), "one reservation_ttl later");
}

#[test]
fn an_admission_here_and_its_client_s_close_count_one_landing_not_two() {
    // Two clients head here (#1); the second lands first, on a connection of
    // its own, then closes its handshake connection. The first is still on
    // its way: #1 holds one session and one client coming. Counting the
    // admission against the oldest reservation and the close against the
    // closer's own removed both.
    let rows = vec![member(2, Role::Serving, 50, 100)];
    let (mut h, rows) = balancer(100, rows);
    let figures = |_| (50, 100);
    let (first, second) = two_in_one_round(&mut h, (1, 2), &rows, figures);
    assert_eq!((first, second), (1, 1), "both head to the emptier #1");
    h.accepted(20, 20);
    h.event(Event::ConnectionClosed { conn: ConnectionId(2) });
    h.advance(MS);
    let list = round(&mut h, 3, &rows, figures);
    assert_eq!(shown(&list, 1), Workload::new(2, 100), "one session and one client on its way");
}

#[test]
fn a_peer_s_landing_released_before_its_report_is_counted_once() {
    // Two clients head to #2; the second lands there and closes its
    // handshake connection; then #2 reports its one session. The first
    // client is still on its way: #2 holds one and one is coming. Dropping
    // the release at once and then taking the report's rise off the oldest
    // reservation counted the landing twice.
    let rows = vec![member(2, Role::Serving, 0, 100)];
    let (mut h, rows) = balancer(100, rows);
    h.inst.set_accepting(false, h.now);
    let (first, second) = two_in_one_round(&mut h, (1, 2), &rows, |_| (0, 100));
    assert_eq!((first, second), (2, 2));
    h.advance(50 * MS);
    h.event(Event::ConnectionClosed { conn: ConnectionId(2) });
    for wait in [10 * MS, 200 * MS] {
        // Whether or not the report was asked for within the release's bucket.
        h.advance(wait);
        let list = round(&mut h, 3, &rows, |_| (1, 100));
        assert_eq!(shown(&list, 2), Workload::new(2, 100), "after {wait:?}");
        h.event(Event::ConnectionClosed { conn: ConnectionId(3) });
    }
}

#[test]
fn two_rows_at_one_target_make_one_entry_and_the_reply_encodes() {
    // A renamed host left a second row at the same host and port (`aos7`
    // and `AOS7:2712`), and a third sits at this instance's own target:
    // each target is listed once (the freshest row), and the reply encodes.
    let mut stale = member(8, Role::Serving, 0, 100);
    stale.endpoint = Endpoint::new("AOS7", 2712).expect("endpoint");
    stale.heartbeat_age = Duration::from_secs(3);
    let mut at_own = member(9, Role::Serving, 0, 100);
    at_own.endpoint = endpoint(1);
    let rows = vec![member(7, Role::Serving, 10, 100), stale, at_own, member(10, Role::Serving, 20, 100)];
    for fan_out in [FanOut { full_up_to: 0, live: 1, ..FanOut::default() }, FanOut::default()] {
        let mut c = config(1, Role::Serving, 100);
        c.fan_out = fan_out;
        let mut h = Harness::new(c);
        h.expect_heartbeat();
        let list = round(&mut h, 1, &rows, |peer| (if peer == 10 { 20 } else { 10 }, 100));
        assert_eq!(ids(&list), vec![1, 7, 10], "{fan_out:?}");
        let mut out = Vec::new();
        let reply = Message::HandshakeReply(wire::HandshakeReply {
            request_id: 1,
            outcome: wire::HandshakeOutcome::Ranked(list),
        });
        wire::encode(&reply, &mut out).expect("the reply encodes");
    }
}

/// A bounded balancer (#1, load balancer only) asking `live` best.
fn bounded(live: usize, snapshot_ttl: Duration) -> Harness {
    let mut c = config(1, Role::LoadBalancerOnly, 10);
    c.fan_out = FanOut { full_up_to: 0, live, ..FanOut::default() };
    c.snapshot_ttl = snapshot_ttl;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    h
}

#[test]
fn a_bounded_round_also_refreshes_the_members_with_the_oldest_figures() {
    // Registry figures miss the sessions that ended since the heartbeat: a
    // member that looks busier than it is is never among the best, so it
    // is asked only because its figures are the oldest (beyond one
    // snapshot), as many of those per round as best ones.
    let mut rows: Vec<MemberRecord> = (2..=6).map(|id| member(id, Role::Serving, id, 100)).collect();
    rows[3].heartbeat_age = Duration::from_secs(4); // #5
    rows[4].heartbeat_age = Duration::from_secs(3); // #6
    let mut h = bounded(2, Duration::from_secs(1));
    let mut asked: Vec<u32> = start(&mut h, 1, &rows).into_iter().map(|(_, id)| id).collect();
    asked.sort_unstable();
    assert_eq!(asked, vec![2, 3, 5, 6], "the two best by figures and the two oldest figures");
}

#[test]
fn a_member_not_asked_is_ranked_on_its_last_report_when_newer_than_its_row() {
    // #2's row says 0, but it answered 9 in the last round (whose reply
    // headed to #3); this round asks only #3 (the best), and ranks #2 on
    // its report, not its older row.
    let rows = vec![member(2, Role::Serving, 0, 100), member(3, Role::Serving, 5, 100)];
    let mut h = bounded(1, Duration::from_secs(10));
    let asked = start(&mut h, 1, &rows);
    assert_eq!(asked.iter().map(|&(_, id)| id).collect::<Vec<_>>(), vec![2]);
    answer(&mut h, &asked, |_| (9, 100));
    h.expect_ranked(1, 1);
    h.advance(MS);
    let asked = start(&mut h, 2, &rows);
    assert_eq!(asked.iter().map(|&(_, id)| id).collect::<Vec<_>>(), vec![3], "#2 now looks busier");
    answer(&mut h, &asked, |_| (5, 100));
    let list = h.expect_ranked(2, 2);
    assert_eq!(ids(&list), vec![3, 2]);
    assert_eq!(shown(&list, 2), Workload::new(9, 100), "its report, not its row");
    assert_eq!(shown(&list, 3), Workload::new(6, 100), "its report and the first reply's reservation");
}
