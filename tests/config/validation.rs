//! `validate()`: every problem reported, together and in declaration
//! order, cross-field problems naming both fields, seeds compared as
//! targets.

use std::time::Duration;

use aos_cluster::config::{ClientConfig, ConfigProblem, InstanceConfig, MIN_ATTEMPT_DELAY};
use aos_cluster::workload::{InstanceId, Role};

use crate::{ep, ms, secs};

fn valid_client() -> ClientConfig {
    ClientConfig::with_seeds(vec![ep("aos1"), ep("aos2")])
}

fn client_problems(edit: impl FnOnce(&mut ClientConfig)) -> Vec<ConfigProblem> {
    let mut c = valid_client();
    edit(&mut c);
    c.validate().map(|()| Vec::new()).unwrap_or_else(|e| e.problems)
}

#[test]
fn each_client_problem_is_reported() {
    assert_eq!(client_problems(|_| {}), vec![]);
    assert_eq!(client_problems(|c| c.seeds.clear()), vec![ConfigProblem::EmptySeedList]);
    assert_eq!(
        client_problems(|c| c.seeds.push(ep("aos1:2712"))),
        vec![ConfigProblem::DuplicateSeed { endpoint: ep("aos1"), first: 0, again: 2 }]
    );
    assert_eq!(
        client_problems(|c| c.handshake_timeout = Duration::ZERO),
        vec![ConfigProblem::Zero("handshake_timeout")]
    );
    assert_eq!(
        client_problems(|c| c.connect_timeout = Duration::ZERO),
        vec![ConfigProblem::Zero("connect_timeout")]
    );
    assert_eq!(client_problems(|c| c.retry.base = Duration::ZERO), vec![ConfigProblem::Zero("retry.base")]);
    assert_eq!(client_problems(|c| c.retry.cap = Duration::ZERO), vec![ConfigProblem::Zero("retry.cap")]);
    assert_eq!(client_problems(|c| c.retry.max_rounds = 0), vec![ConfigProblem::Zero("retry.max_rounds")]);
    assert_eq!(client_problems(|c| c.max_list_len = 0), vec![ConfigProblem::Zero("max_list_len")]);
    assert_eq!(
        client_problems(|c| c.overall_deadline = Some(Duration::ZERO)),
        vec![ConfigProblem::Zero("overall_deadline")]
    );
    assert_eq!(
        client_problems(|c| c.attempt_delay = Some(ms(9))),
        vec![ConfigProblem::AttemptDelayTooShort(ms(9))]
    );
    // The RFC 8305 floor itself is allowed.
    assert_eq!(client_problems(|c| c.attempt_delay = Some(MIN_ATTEMPT_DELAY)), vec![]);
}

#[test]
fn several_client_problems_are_reported_together_in_declaration_order() {
    let problems = client_problems(|c| {
        c.seeds = vec![ep("aos1"), ep("aos2"), ep("aos1"), ep("aos2")];
        c.handshake_timeout = Duration::ZERO;
        c.attempt_delay = Some(Duration::from_micros(500));
        c.max_list_len = 0;
    });
    assert_eq!(
        problems,
        vec![
            ConfigProblem::DuplicateSeed { endpoint: ep("aos1"), first: 0, again: 2 },
            ConfigProblem::DuplicateSeed { endpoint: ep("aos2"), first: 1, again: 3 },
            ConfigProblem::Zero("handshake_timeout"),
            ConfigProblem::AttemptDelayTooShort(Duration::from_micros(500)),
            ConfigProblem::Zero("max_list_len"),
        ]
    );
    let message = valid_client_with(|c| c.seeds.clear(), |c| c.max_list_len = 0);
    assert!(message.contains("seed list is empty") && message.contains("max_list_len"), "{message}");
}

fn valid_client_with(a: impl FnOnce(&mut ClientConfig), b: impl FnOnce(&mut ClientConfig)) -> String {
    let mut c = valid_client();
    a(&mut c);
    b(&mut c);
    c.validate().unwrap_err().to_string()
}

fn valid_instance() -> InstanceConfig {
    InstanceConfig {
        cluster: Some("production".into()),
        ..InstanceConfig::new(InstanceId(1), ep("aos1"), 100)
    }
}

fn instance_problems(edit: impl FnOnce(&mut InstanceConfig)) -> Vec<ConfigProblem> {
    let mut i = valid_instance();
    edit(&mut i);
    i.validate().map(|()| Vec::new()).unwrap_or_else(|e| e.problems)
}

#[test]
fn each_instance_problem_is_reported() {
    use ConfigProblem::*;
    assert_eq!(instance_problems(|_| {}), vec![]);
    assert_eq!(instance_problems(|i| i.max_sessions = 0), vec![Zero("max_sessions")]);
    assert_eq!(instance_problems(|i| i.peer_timeout = Duration::ZERO), vec![Zero("peer_timeout")]);
    assert_eq!(instance_problems(|i| i.registry_timeout = Duration::ZERO), vec![Zero("registry_timeout")]);
    assert_eq!(
        instance_problems(|i| i.reservation_ttl = Duration::ZERO),
        vec![ZeroWithHerdControl("reservation_ttl")]
    );
    assert_eq!(instance_problems(|i| i.max_list_len = 0), vec![Zero("max_list_len")]);
    assert_eq!(instance_problems(|i| i.limits.max_members = 0), vec![Zero("limits.max_members")]);
    assert_eq!(instance_problems(|i| i.cluster = None), vec![MissingCluster]);
    assert_eq!(instance_problems(|i| i.role = Role::Standalone), vec![StandaloneInCluster]);
    assert_eq!(
        instance_problems(|i| {
            i.role = Role::Standalone;
            i.cluster = None;
        }),
        vec![]
    );
    assert_eq!(instance_problems(|i| i.heartbeat_interval = secs(30)), vec![HeartbeatSlowerThanTtl]);
    // A zero snapshot_ttl is allowed: never reuse a snapshot.
    assert_eq!(instance_problems(|i| i.snapshot_ttl = Duration::ZERO), vec![]);
}

#[test]
fn several_instance_problems_are_reported_together() {
    use ConfigProblem::*;
    let problems = instance_problems(|i| {
        i.max_sessions = 0;
        i.peer_timeout = Duration::ZERO;
        i.member_ttl = Duration::ZERO;
        i.max_list_len = 0;
        i.cluster = None;
    });
    assert_eq!(
        problems,
        vec![
            Zero("max_sessions"),
            Zero("peer_timeout"),
            Zero("member_ttl"),
            Zero("max_list_len"),
            MissingCluster
        ]
    );
}

fn seed_problems(seeds: &[&str]) -> Vec<ConfigProblem> {
    client_problems(|c| c.seeds = seeds.iter().map(|s| ep(s)).collect())
}

fn dup(endpoint: &str, first: usize, again: usize) -> ConfigProblem {
    ConfigProblem::DuplicateSeed { endpoint: ep(endpoint), first, again }
}

#[test]
fn seeds_naming_one_target_are_duplicates_whatever_their_label_or_case() {
    assert_eq!(seed_problems(&["AOS01@h:2712", "h:2712"]), vec![dup("h:2712", 0, 1)]);
    assert_eq!(seed_problems(&["H:2712", "h:2712"]), vec![dup("h:2712", 0, 1)]);
    assert_eq!(seed_problems(&["AOS01@h", "AOS02@H:2712"]), vec![dup("AOS02@H:2712", 0, 1)]);
    assert_eq!(seed_problems(&["[::1]", "[0:0::1]:2712"]), vec![dup("[0:0::1]:2712", 0, 1)]);
    // Another port, another host: other targets.
    assert_eq!(seed_problems(&["h:2712", "h:2713", "AOS01@h2:2712", "[::2]"]), vec![]);
    // Every repeat names the first occurrence of its target, in seed order.
    assert_eq!(
        seed_problems(&["a", "b", "A@A", "B:2712", "c", "a:2712"]),
        vec![dup("A@A", 0, 2), dup("B:2712", 1, 3), dup("a:2712", 0, 5)]
    );
}

#[test]
fn a_long_seed_list_reports_its_repeats_in_order() {
    // Past the finder's pairwise range: the sorting path gives the same report.
    let mut seeds: Vec<String> = (0..200).map(|i| format!("host{i}")).collect();
    seeds[150] = "HOST7:2712".into();
    seeds[199] = "X@host150".into();
    seeds[60] = "host3".into();
    let texts: Vec<&str> = seeds.iter().map(String::as_str).collect();
    assert_eq!(
        seed_problems(&texts),
        vec![dup("host3", 3, 60), dup("HOST7:2712", 7, 150)],
        "host150 is gone (replaced), so X@host150 repeats nothing"
    );
}

#[test]
fn cross_field_client_problems_name_both_fields() {
    use ConfigProblem::*;
    let problems = client_problems(|c| {
        c.retry.base = secs(10);
        c.retry.cap = ms(1);
    });
    assert_eq!(problems, vec![RetryBaseAboveCap { base: secs(10), cap: ms(1) }]);
    assert_eq!(
        problems[0].to_string(),
        "`retry.base` (10s) is longer than `retry.cap` (1ms): every backoff would be cut to the cap"
    );
    // Equal is fine: a flat backoff.
    assert_eq!(
        client_problems(|c| {
            c.retry.base = secs(5);
            c.retry.cap = secs(5);
        }),
        vec![]
    );
    let problems = client_problems(|c| {
        c.handshake_timeout = secs(3600);
        c.attempt_delay = Some(secs(7200));
    });
    assert_eq!(
        problems,
        vec![AttemptDelayNotBelowHandshakeTimeout {
            attempt_delay: secs(7200),
            handshake_timeout: secs(3600)
        }]
    );
    let text = problems[0].to_string();
    assert!(text.contains("`attempt_delay` (2h)") && text.contains("`handshake_timeout` (1h)"), "{text}");
    assert_eq!(
        client_problems(|c| c.attempt_delay = Some(c.handshake_timeout)),
        vec![AttemptDelayNotBelowHandshakeTimeout { attempt_delay: secs(5), handshake_timeout: secs(5) }]
    );
    // A zero timeout is reported once, as zero, not also as a cross-field problem.
    assert_eq!(
        client_problems(|c| {
            c.handshake_timeout = Duration::ZERO;
            c.attempt_delay = Some(ms(250));
        }),
        vec![Zero("handshake_timeout")]
    );
}

#[test]
fn cross_field_instance_problems_name_both_fields() {
    use ConfigProblem::*;
    let problems = instance_problems(|i| {
        i.snapshot_ttl = secs(3600);
        i.member_ttl = secs(1);
        i.heartbeat_interval = ms(500);
    });
    assert_eq!(
        problems,
        vec![SnapshotTtlNotBelowMemberTtl { snapshot_ttl: secs(3600), member_ttl: secs(1) }]
    );
    assert_eq!(
        problems[0].to_string(),
        "`snapshot_ttl` (1h) must be shorter than `member_ttl` (1s), or a reused snapshot keeps members that expired"
    );
    assert!(instance_problems(|i| i.heartbeat_interval = secs(30))[0]
        .to_string()
        .contains("`heartbeat_interval` must be shorter than `member_ttl`"));
    assert_eq!(
        instance_problems(|i| i.limits.max_reservations = 0),
        vec![ZeroWithHerdControl("limits.max_reservations")]
    );
    // With herd control off, reservations are never made: zero is allowed.
    assert_eq!(
        instance_problems(|i| {
            i.herd_control = false;
            i.reservation_ttl = Duration::ZERO;
            i.limits.max_reservations = 0;
        }),
        vec![]
    );
    let message = {
        let mut i = valid_instance();
        i.reservation_ttl = Duration::ZERO;
        i.snapshot_ttl = i.member_ttl;
        i.validate().unwrap_err().to_string()
    };
    assert!(
        message.contains("`reservation_ttl` must not be zero while `herd_control` is on")
            && message.contains("`snapshot_ttl` (30s)"),
        "{message}"
    );
}
