//! Bounded fan-out: above `fan_out.full_up_to` active peers a
//! round asks live only the `fan_out.live` best by registry figures plus the
//! members whose figures are too old (plus the next best in place of each
//! one found unreachable), and ranks everyone else on the registry figures,
//! exactly like answered members.

mod bounds;
#[path = "../common/mod.rs"]
mod common;
mod herd;

use std::time::Duration;

use aos_cluster::config::{FanOut, DEFAULT_FULL_FAN_OUT_UP_TO};
use aos_cluster::instance::{Action, ConnectionId, Event};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{QueryId, RankedList};
use aos_cluster::workload::{rank, Candidate, InstanceId, Role, Workload};
use common::instance::*;
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

/// Member `id`'s registry figures: distinct loads, so the order is unique.
fn registry_connected(id: u32) -> u32 {
    (id * 37) % 97
}

/// A 50-member cluster seen by load balancer #1: peers 2..=50 (49 of them),
/// with 3, 4 and 5 heartbeating 11 s ago (beyond the default 10 s).
fn fifty() -> Vec<MemberRecord> {
    (2..=50)
        .map(|id| {
            let mut m = member(id, Role::Serving, registry_connected(id), 100);
            if (3..=5).contains(&id) {
                m.heartbeat_age = 11 * SEC;
            }
            m
        })
        .collect()
}

/// Instance #1, a load balancer (never listed itself), with `fan_out`.
fn balancer(fan_out: FanOut) -> Harness {
    let mut c = config(1, Role::LoadBalancerOnly, 10);
    c.fan_out = fan_out;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    h
}

/// One handshake (request and salt `request_id`) on conn `request_id`;
/// with `registry`, the registry query is expected and answered with it.
/// Returns the peers asked, in order, with their query ids.
fn round(h: &mut Harness, request_id: u64, registry: Option<Vec<MemberRecord>>) -> Vec<(QueryId, u32)> {
    h.event(Event::HandshakeRequest {
        conn: ConnectionId(request_id),
        request: handshake(request_id, request_id),
    });
    if let Some(members) = registry {
        let q = h.expect_registry_query();
        h.event(Event::RegistrySnapshot { query_id: q, members });
    }
    queries(h)
}

/// The peer queries at the front of the queue, in order.
fn queries(h: &mut Harness) -> Vec<(QueryId, u32)> {
    let mut asked = Vec::new();
    while let Some(Action::QueryPeer { query_id, peer, .. }) = h.queue.front().cloned() {
        h.queue.pop_front();
        asked.push((query_id, peer.0));
    }
    asked
}

fn unreachable(h: &mut Harness, (query_id, id): (QueryId, u32)) {
    h.event(Event::PeerUnreachable { query_id, peer: InstanceId(id), reason: "refused".into() });
}

/// The fresh members of [`fifty`], best registry figures first.
fn fresh_by_figures() -> Vec<u32> {
    let mut fresh: Vec<u32> = (2..=50).filter(|id| !(3..=5).contains(id)).collect();
    fresh.sort_by_key(|&id| registry_connected(id));
    fresh
}

fn peers(asked: &[(QueryId, u32)]) -> Vec<u32> {
    asked.iter().map(|&(_, p)| p).collect()
}

/// The list `rank` gives for these figures, by id (ids ascending).
fn expected(figures: &[(u32, Workload)], salt: u64) -> Vec<u32> {
    let cands: Vec<Candidate> = figures
        .iter()
        .map(|&(_, workload)| Candidate { role: Role::Serving, accepting: true, workload })
        .collect();
    rank(&cands, salt).into_iter().map(|i| figures[i].0).collect()
}

#[test]
fn a_bounded_round_asks_the_k_best_and_the_stale_and_lists_everyone_in_exact_order() {
    let mut h = balancer(FanOut::default());
    let asked = round(&mut h, 1, Some(fifty()));
    // The 8 best by registry figures among the 46 fresh peers, and the 3 stale.
    let fresh = fresh_by_figures();
    let mut want: Vec<u32> = fresh[..8].iter().copied().chain(3..=5).collect();
    want.sort_unstable();
    assert_eq!(peers(&asked), want, "ascending ids, each once");
    assert_eq!((h.inst.stats().round.peer_queries, h.inst.stats().round.rounds), (11, 1));
    h.expect_idle();

    // Live figures differ from the registry's: the asked members rank on
    // them, the rest on their registry figures.
    let live = |id: u32| Workload::new(registry_connected(id) + 3 * (id % 4), 100);
    for &(query_id, id) in &asked {
        let w = live(id);
        h.event(Event::WorkloadReport { report: report(query_id, id, w.connected, w.max_sessions) });
    }
    let list = h.expect_ranked(1, 1);
    let figures: Vec<(u32, Workload)> = (2..=50)
        .map(|id| {
            let w = if want.contains(&id) { live(id) } else { Workload::new(registry_connected(id), 100) };
            (id, w)
        })
        .collect();
    assert_eq!(ids(&list), expected(&figures, 1));
    assert_eq!(list.entries.len(), 49, "nobody dropped");
    let e = list.entries.iter().find(|e| e.id == InstanceId(40)).expect("listed");
    assert_eq!(e.workload, Workload::new(registry_connected(40), 100), "not asked: registry figures");
}

#[test]
fn a_silent_or_unreachable_asked_member_is_left_out_the_unasked_stay() {
    let mut h = balancer(FanOut::bounded(2));
    let asked = round(&mut h, 1, Some(fifty()));
    assert_eq!(asked.len(), 5, "2 best + 3 stale");
    let (silent, dead) = (asked[0], asked[1]);
    unreachable(&mut h, dead);
    // The unreachable one is replaced by the next best, at once.
    let replacement = queries(&mut h);
    assert_eq!(peers(&replacement), vec![fresh_by_figures()[2]]);
    for &(query_id, id) in asked[2..].iter().chain(&replacement) {
        h.event(Event::WorkloadReport { report: report(query_id, id, registry_connected(id), 100) });
    }
    h.expect_idle();
    h.advance(h.inst.config().peer_timeout);
    let list = h.expect_ranked(1, 1);
    let listed = ids(&list);
    assert!(!listed.contains(&silent.1) && !listed.contains(&dead.1), "{listed:?}");
    assert_eq!(listed.len(), 47);
    let stats = h.inst.stats();
    assert_eq!(
        (stats.round.peer_silent, stats.round.peer_queries, stats.fan_out.replacement_queries),
        (1, 6, 1)
    );
}

/// After a crash the dead members' rows keep their old figures, which look
/// best: a bounded round replaces every asked member found unreachable by
/// the next best, so its lists are headed by members that answered and
/// list none of the dead it met.
#[test]
fn a_round_replaces_each_unreachable_member_until_k_answer() {
    let mut h = balancer(FanOut::bounded(2));
    let fresh = fresh_by_figures();
    let dead: Vec<u32> = fresh[..7].to_vec();
    let mut waiting = round(&mut h, 1, Some(fifty()));
    let mut answered = Vec::new();
    for _ in 0..50 {
        let Some(query) = waiting.pop() else { break };
        if dead.contains(&query.1) {
            unreachable(&mut h, query);
        } else {
            h.event(Event::WorkloadReport {
                report: report(query.0, query.1, registry_connected(query.1), 100),
            });
            answered.push(query.1);
        }
        waiting.extend(queries(&mut h));
    }
    assert!(waiting.is_empty());
    answered.sort_by_key(|&id| registry_connected(id));
    let best_answered = answered[0];
    answered.retain(|id| !(3..=5).contains(id));
    assert_eq!(answered, fresh[7..9], "the two best fresh members that answered");
    let list = ids(&h.expect_ranked(1, 1));
    assert_eq!(list[0], best_answered, "headed by a member that answered");
    assert!(dead.iter().all(|id| !list.contains(id)), "{list:?}");
    assert_eq!(list.len(), 49 - 7);
    let stats = h.inst.stats();
    assert_eq!(
        (stats.round.peer_queries, stats.fan_out.replacement_queries, stats.round.peer_unreachable),
        (2 + 3 + 7, 7, 7)
    );
}

/// A member found unreachable is neither asked nor listed by later bounded
/// rounds until its registry row shows a heartbeat after the failure: a
/// crashed member's row stays active for `member_ttl` with figures that
/// would put it at the head of every list.
#[test]
fn an_unreachable_member_stays_out_until_a_later_heartbeat() {
    let mut h = balancer(FanOut::bounded(2));
    let asked = round(&mut h, 1, Some(fifty()));
    // One of the two best (3, 4 and 5 are asked for their stale rows).
    let dead = *asked.iter().find(|&&(_, id)| !(3..=5).contains(&id)).expect("a best member");
    unreachable(&mut h, dead);
    let replacement = queries(&mut h);
    assert_eq!(replacement.len(), 1);
    for &(query_id, id) in asked.iter().chain(&replacement).filter(|&&a| a != dead) {
        h.event(Event::WorkloadReport { report: report(query_id, id, registry_connected(id), 100) });
    }
    assert!(!ids(&h.expect_ranked(1, 1)).contains(&dead.1));

    // The same snapshot: the dead member's row still looks best, but it is
    // not asked again and not listed.
    let asked = round(&mut h, 2, None);
    assert!(!peers(&asked).contains(&dead.1), "{:?}", peers(&asked));
    for &(query_id, id) in &asked {
        h.event(Event::WorkloadReport { report: report(query_id, id, registry_connected(id), 100) });
    }
    assert!(!ids(&h.expect_ranked(2, 2)).contains(&dead.1));

    // A new snapshot whose row for it was heartbeated before the failure:
    // still out. One heartbeated after it: back, and asked first.
    h.advance(2 * SEC);
    let asked = round(
        &mut h,
        3,
        Some(fifty().into_iter().map(|m| MemberRecord { heartbeat_age: 3 * SEC, ..m }).collect()),
    );
    assert!(!peers(&asked).contains(&dead.1));
    for &(query_id, id) in &asked {
        h.event(Event::WorkloadReport { report: report(query_id, id, registry_connected(id), 100) });
    }
    h.expect_ranked(3, 3);
    h.advance(2 * SEC);
    let asked = round(&mut h, 4, Some(fifty()));
    assert!(peers(&asked).contains(&dead.1), "{:?}", peers(&asked));
}

#[test]
fn at_or_below_the_threshold_and_with_full_every_active_peer_is_asked() {
    // As many peers as the default threshold: the seed's full fan-out.
    let up_to = DEFAULT_FULL_FAN_OUT_UP_TO;
    let at_threshold: Vec<MemberRecord> = fifty().into_iter().take(up_to).collect();
    let mut h = balancer(FanOut::default());
    let all: Vec<u32> = (2..).take(up_to).collect();
    assert_eq!(peers(&round(&mut h, 1, Some(at_threshold))), all);
    // One more makes it bounded: 8 best + the 3 stale.
    let one_more: Vec<MemberRecord> = fifty().into_iter().take(up_to + 1).collect();
    let mut h = balancer(FanOut::default());
    assert_eq!(round(&mut h, 1, Some(one_more)).len(), 11);
    // FULL asks all 49, a threshold of 0 bounds even a cluster of two.
    let mut h = balancer(FanOut::FULL);
    assert_eq!(peers(&round(&mut h, 1, Some(fifty()))), (2..=50).collect::<Vec<_>>());
    let mut h = balancer(FanOut::bounded(1));
    let two = vec![member(2, Role::Serving, 5, 10), member(3, Role::Serving, 1, 10)];
    assert_eq!(peers(&round(&mut h, 1, Some(two))), vec![3]);
}

#[test]
fn figures_aged_past_the_limit_by_a_reused_snapshot_are_asked() {
    let mut rows = fifty();
    for m in &mut rows {
        m.heartbeat_age = SEC;
    }
    rows[10].heartbeat_age = 9 * SEC + Duration::from_millis(500); // member #12
    rows[11].heartbeat_age = 9 * SEC + Duration::from_millis(600); // member #13
    let mut h = balancer(FanOut::bounded(1));
    let asked = round(&mut h, 1, Some(rows));
    assert_eq!(asked.len(), 2, "the best, and the oldest figures refreshed: {asked:?}");
    assert!(peers(&asked).contains(&13) && !peers(&asked).contains(&12), "9.5 s old: trusted, {asked:?}");
    h.advance(h.inst.config().peer_timeout);
    h.expect_ranked(1, 1);
    // The cached snapshot is reused 800 ms later: #12's figures are 10.3 s
    // old, and #13 (silent) still has its row's, 10.4 s: both asked for
    // their age; with the best, and one more refreshed.
    h.now += Duration::from_millis(300);
    let asked = round(&mut h, 2, None);
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(peers(&asked).contains(&12) && peers(&asked).contains(&13), "{asked:?}");
    assert_eq!(h.inst.stats().round.registry_queries, 1);
}

#[test]
fn the_k_best_are_chosen_by_predicted_figures_so_a_burst_spreads() {
    // 20 idle equal members, k = 2: each round asks the two that the first
    // reply would head, and reservations move the next round on.
    let rows: Vec<MemberRecord> = (2..=21).map(|id| member(id, Role::Serving, 0, 10)).collect();
    let mut h = balancer(FanOut::bounded(2));
    let mut heads = Vec::new();
    let mut asked_all = Vec::new();
    for r in 1..=6u64 {
        let asked = round(&mut h, r, (r == 1).then(|| rows.clone()));
        assert_eq!(asked.len(), 2, "round {r}");
        for &(query_id, id) in &asked {
            h.event(Event::WorkloadReport { report: report(query_id, id, 0, 10) });
        }
        let list: RankedList = h.expect_ranked(r, r);
        assert_eq!(list.entries.len(), 20);
        heads.push(list.entries[0].id.0);
        asked_all.push(peers(&asked));
        assert!(peers(&asked).contains(&heads[heads.len() - 1]), "the head was asked live");
    }
    let mut distinct = heads.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "six arrivals, six members: {heads:?} (asked {asked_all:?})");
}
