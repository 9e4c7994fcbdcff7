//! Property tests: random networks against a reference model and the
//! Connector's invariants (checked after every driver step by
//! `common::client::Invariants`).

mod common;

use std::time::Duration;

use aos_cluster::client::{Action, AttemptOutcome, AttemptRecord, Phase, State};
use aos_cluster::wire::RejectReason;
use aos_cluster::RetryPolicy;
use common::client::*;
use proptest::prelude::*;

fn seed_behaviour() -> impl Strategy<Value = SeedBehaviour> {
    let list = || proptest::collection::vec(0..POOL, 0..8);
    prop_oneof![
        3 => (0..1000u64, list()).prop_map(|(latency, list)| SeedBehaviour::Answers { latency, list }),
        2 => Just(SeedBehaviour::Silent),
        1 => (0..1000u64).prop_map(|latency| SeedBehaviour::Refuses { latency }),
        1 => (0..1000u64).prop_map(|latency| SeedBehaviour::Garbage { latency }),
        1 => (0..1000u64).prop_map(|latency| SeedBehaviour::Fails { latency }),
        1 => (1..3000u64, list()).prop_map(|(late, list)| SeedBehaviour::Slow { late, list }),
    ]
}

fn admission() -> impl Strategy<Value = Admission> {
    let reason = prop_oneof![
        Just(RejectReason::Full),
        Just(RejectReason::Draining),
        Just(RejectReason::NotServing),
        Just(RejectReason::Busy)
    ];
    prop_oneof![
        2 => (0..1000u64).prop_map(|latency| Admission::Accept { latency }),
        3 => (0..1000u64, reason).prop_map(|(latency, reason)| Admission::Reject { latency, reason }),
        1 => Just(Admission::Silent),
        1 => (0..1000u64).prop_map(|latency| Admission::Fails { latency }),
    ]
}

/// `stagger` and `shuffle`: `Some(b)` fixes the switch, `None` draws it.
fn scenario(stagger: Option<bool>, shuffle: Option<bool>) -> impl Strategy<Value = Scenario> {
    let switch = |fixed: Option<bool>| match fixed {
        Some(b) => Just(b).boxed(),
        None => any::<bool>().boxed(),
    };
    (1..=MAX_SEEDS, 1..=3u32, switch(stagger), switch(shuffle), any::<bool>(), 1..=8usize, any::<u64>())
        .prop_flat_map(|(n, rounds, stagger, shuffle, load_balance, max_list_len, rng_seed)| {
            let seeds =
                proptest::collection::vec(proptest::collection::vec(seed_behaviour(), n), rounds as usize);
            let admissions =
                proptest::collection::vec(proptest::collection::vec(admission(), POOL + n), rounds as usize);
            let spurious = proptest::collection::vec(0..200usize, 0..6);
            (seeds, admissions, spurious, 10..400u64).prop_map(move |(seeds, admissions, spurious, delay)| {
                let mut config = config(n);
                config.handshake_timeout = Duration::from_millis(1000);
                config.connect_timeout = Duration::from_millis(1000);
                config.attempt_delay = stagger.then(|| Duration::from_millis(delay));
                config.shuffle_seeds = shuffle;
                config.load_balance = load_balance;
                config.max_list_len = max_list_len;
                config.retry = RetryPolicy {
                    base: Duration::from_millis(500),
                    cap: Duration::from_secs(2),
                    max_rounds: rounds,
                };
                Scenario { config, seeds, admissions, rng_seed, spurious }
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Sequential walks take exactly the steps of the reference model, and
    /// end in `Connected` or `Failed`.
    #[test]
    fn sequential_walk_matches_the_model(s in scenario(Some(false), Some(false))) {
        let run = run(&s);
        prop_assert_eq!(&run.steps, &model(&s));
        prop_assert!(matches!(run.connector.state(), State::Connected | State::Failed));
    }

    /// Staggered and shuffled walks keep every invariant, end, and when one
    /// connects, it connects to an instance that a valid reply listed and
    /// that admits sessions.
    #[test]
    fn any_walk_keeps_the_invariants_and_ends(s in scenario(None, None)) {
        let run = run(&s);
        let c = &run.connector;
        match c.state() {
            State::Connected => {
                let session = c.session().expect("a session when connected");
                let k = admission_index(&session.endpoint);
                let admits = matches!(s.admissions[session.round as usize][k], Admission::Accept { .. });
                prop_assert!(admits);
                prop_assert!(matches!(run.steps.last(), Some(Step::Connected(_))));
            }
            State::Failed => prop_assert_eq!(run.steps.last(), Some(&Step::Failed)),
            other => prop_assert!(false, "ended in {:?}", other),
        }
        let rounds = run.steps.iter().filter(|s| matches!(s, Step::RoundFailed(_))).count();
        prop_assert!(rounds < s.config.retry.max_rounds as usize);
    }

    /// With staggering, the winner is the earliest seed among the valid
    /// replies that arrived at the same instant, and no earlier seed's valid
    /// reply arrived before the winner's.
    #[test]
    fn staggered_winner_is_the_earliest_ready_seed(s in scenario(Some(true), Some(false))) {
        let run = run(&s);
        let log = run.connector.attempts();
        let arrival = |record: &AttemptRecord| match &s.seeds[record.round as usize][record.index] {
            SeedBehaviour::Answers { latency, list } if !list.is_empty() => {
                Some(record.started + Duration::from_millis(*latency))
            }
            _ => None,
        };
        for winner in log.iter().filter(|r| matches!(r.outcome, AttemptOutcome::Ranked { .. } | AttemptOutcome::Answered)) {
            let won_at = arrival(winner).expect("the winner sent a valid reply");
            prop_assert!(winner.ended.is_some_and(|e| e >= won_at));
            for earlier in log.iter().filter(|r| r.round == winner.round && r.phase == Phase::Handshake && r.index < winner.index) {
                prop_assert!(earlier.outcome != AttemptOutcome::Superseded);
                if let Some(t) = arrival(earlier) {
                    prop_assert!(t > won_at, "seed {} was ready at {:?}, the winner {} at {:?}", earlier.index, t, winner.index, won_at);
                }
            }
        }
    }

    /// Same seed and inputs, same action trace (salts and retry times included).
    #[test]
    fn same_seed_same_trace(s in scenario(None, None)) {
        let a = run(&s);
        let b = run(&s);
        prop_assert_eq!(&a.actions, &b.actions);
        prop_assert_eq!(a.connector.attempts(), b.connector.attempts());
    }
}

/// The backoff after round r lies in [0, min(cap, base * 2^r)].
#[test]
fn backoff_is_full_jitter_within_the_bound() {
    for rng_seed in 0..200 {
        let mut cfg = config(1);
        cfg.handshake_timeout = Duration::from_millis(100);
        cfg.retry =
            RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_millis(700), max_rounds: 6 };
        let s = Scenario {
            config: cfg,
            seeds: vec![vec![SeedBehaviour::Silent]; 6],
            admissions: vec![vec![Admission::Silent; POOL + 1]; 6],
            rng_seed,
            spurious: vec![],
        };
        let run = run(&s);
        let mut fails = run.actions.iter().filter_map(|(t, a)| match a {
            Action::RoundFailed { round, retry_at } => Some((*t, *round, *retry_at)),
            _ => None,
        });
        for (t, round, retry_at) in fails.by_ref() {
            let bound = Duration::from_millis(100 * (1 << round)).min(Duration::from_millis(700));
            assert!(retry_at - t <= bound, "round {round}: {:?} > {bound:?}", retry_at - t);
        }
        assert_eq!(run.steps.last(), Some(&Step::Failed));
    }
}

/// Full jitter is spread over the whole window [0, bound] and depends on the
/// rng seed: not only bounded. Over 400 seeds the first backoff (bound
/// 100 ms) reaches both ends of the window, averages near the middle, and
/// hardly repeats.
#[test]
fn backoff_is_spread_over_the_window_and_depends_on_the_seed() {
    let bound = Duration::from_millis(100);
    let mut waits = Vec::new();
    for rng_seed in 0..400 {
        let mut cfg = config(1);
        cfg.handshake_timeout = Duration::from_millis(100);
        cfg.retry = RetryPolicy { base: bound, cap: Duration::from_secs(1), max_rounds: 2 };
        let s = Scenario {
            config: cfg,
            seeds: vec![vec![SeedBehaviour::Silent]; 2],
            admissions: vec![vec![Admission::Silent; POOL + 1]; 2],
            rng_seed,
            spurious: vec![],
        };
        let run = run(&s);
        let wait = run.actions.iter().find_map(|(t, a)| match a {
            Action::RoundFailed { retry_at, .. } => Some(*retry_at - *t),
            _ => None,
        });
        waits.push(wait.expect("round 0 fails"));
    }
    assert!(waits.iter().all(|w| *w <= bound));
    let fraction = |w: &Duration| w.as_secs_f64() / bound.as_secs_f64();
    assert!(waits.iter().any(|w| fraction(w) < 0.05), "never near 0");
    assert!(waits.iter().any(|w| fraction(w) > 0.95), "never near the bound");
    let mean = waits.iter().map(fraction).sum::<f64>() / waits.len() as f64;
    assert!((0.4..0.6).contains(&mean), "mean {mean:.3} of the window");
    let quarters = (0..4).map(|q| waits.iter().filter(|w| (fraction(w) * 4.0) as usize == q).count());
    for (q, n) in quarters.enumerate() {
        assert!(n >= 60, "quarter {q} of the window holds only {n} of 400");
    }
    let mut distinct = waits.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 390, "only {} distinct waits: the seed barely matters", distinct.len());
}
