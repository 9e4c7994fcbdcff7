//! The bounds of a bounded round, over random clusters.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over random snapshots and answers: a round asks at most k, as many
    /// again to refresh the oldest figures, the stale members and one
    /// replacement per member found unreachable, keeps asking
    /// replacements while fewer than k fresh members answered and any is
    /// left, and lists exactly the members eligible by the figures it ranks
    /// them on, none it found unreachable.
    #[test]
    fn bounded_rounds_ask_at_most_2k_plus_stale_plus_replacements_and_drop_nobody(
        rows in prop::collection::vec(
            (0u32..12, 1u32..12, prop::bool::weighted(0.9), 0u64..16, prop::bool::weighted(0.9)),
            20..90,
        ),
        live in 1usize..12,
        answers in prop::collection::vec((0u32..12, prop::bool::weighted(0.25)), 90),
    ) {
        let members: Vec<MemberRecord> = rows
            .iter()
            .enumerate()
            .map(|(i, &(connected, max, accepting, age, serving))| MemberRecord {
                accepting,
                heartbeat_age: Duration::from_secs(age),
                ..member(
                    i as u32 + 2,
                    if serving { Role::Serving } else { Role::LoadBalancerOnly },
                    connected.min(max + 1), // sometimes contradictory
                    max,
                )
            })
            .collect();
        let is_stale = |m: &MemberRecord| m.heartbeat_age > 10 * SEC;
        let stale = members.iter().filter(|m| m.role == Role::Serving && is_stale(m)).count();
        let contradictory = members
            .iter()
            .filter(|m| m.role == Role::Serving && !is_stale(m))
            .filter(|m| m.workload.connected > m.workload.max_sessions)
            .count();
        let serving = members.iter().filter(|m| m.role == Role::Serving).count();
        let bounded = serving > FanOut::default().full_up_to;
        let mut h = balancer(FanOut { live, ..FanOut::default() });
        let mut waiting = round(&mut h, 1, Some(members.clone()));
        let mut ranked_on = std::collections::BTreeMap::new();
        for m in &members {
            ranked_on.insert(m.id.0, Some((m.role, m.accepting, m.workload)));
        }
        let (mut asked, mut failed, mut fresh_answered) = (0usize, 0usize, 0usize);
        let mut asked_ids = std::collections::BTreeSet::new();
        while let Some((query_id, id)) = waiting.pop() {
            let (connected, fails) = answers[asked % answers.len()];
            asked += 1;
            asked_ids.insert(id);
            if fails {
                unreachable(&mut h, (query_id, id));
                ranked_on.insert(id, None);
                failed += 1;
            } else {
                let max = rows[id as usize - 2].1;
                let w = Workload::new(connected.min(max), max);
                h.event(Event::WorkloadReport { report: report(query_id, id, w.connected, w.max_sessions) });
                ranked_on.insert(id, Some((Role::Serving, true, w)));
                let m = &members[id as usize - 2];
                let fresh = !is_stale(m) && m.workload.connected <= m.workload.max_sessions;
                fresh_answered += usize::from(fresh);
            }
            waiting.extend(queries(&mut h));
        }
        if bounded {
            prop_assert!(asked <= 2 * live + stale + contradictory + failed, "{} asked", asked);
        } else {
            prop_assert_eq!(asked, serving, "full fan-out");
        }
        prop_assert_eq!(h.inst.stats().round.peer_queries, asked as u64);
        if bounded && fresh_answered < live {
            // Every member eligible by its registry figures was asked, in a
            // failed one's place if not among the first.
            for m in &members {
                let figures = Candidate { role: m.role, accepting: m.accepting, workload: m.workload };
                prop_assert!(!figures.is_eligible() || asked_ids.contains(&m.id.0), "member {} not asked", m.id.0);
            }
        }
        let listed = ids(&h.expect_ranked(1, 1));
        for (id, figures) in ranked_on {
            let eligible = figures.is_some_and(|(role, accepting, workload)| {
                Candidate { role, accepting, workload }.is_eligible()
            });
            prop_assert_eq!(listed.contains(&id), eligible, "member {}", id);
        }
    }
}
