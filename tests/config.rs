//! Configuration: SPEC.md defaults, TOML and JSON with human durations, and
//! `validate()` reporting every problem at once.

#![cfg(feature = "serde")]

use std::time::Duration;

use aos_cluster::config::{
    duration, ClientConfig, ConfigProblem, InstanceConfig, DEFAULT_ATTEMPT_DELAY, MIN_ATTEMPT_DELAY,
};
use aos_cluster::endpoint::{Endpoint, DEFAULT_PORT};
use aos_cluster::workload::{InstanceId, Role};
use proptest::prelude::*;

fn ep(text: &str) -> Endpoint {
    text.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_are_the_spec_table() {
    let c = ClientConfig::default();
    assert_eq!(DEFAULT_PORT, 2712);
    assert_eq!(c.handshake_timeout, secs(5));
    assert_eq!(c.connect_timeout, secs(5));
    assert_eq!(c.attempt_delay, None);
    assert_eq!(DEFAULT_ATTEMPT_DELAY, ms(250));
    assert_eq!(MIN_ATTEMPT_DELAY, ms(10));
    assert!(!c.shuffle_seeds);
    assert!(c.load_balance);
    assert_eq!((c.retry.base, c.retry.cap, c.retry.max_rounds), (secs(1), secs(30), 3));
    assert_eq!(c.max_list_len, 1024);

    let i = InstanceConfig::default();
    assert_eq!(i.peer_timeout, ms(500));
    assert_eq!(i.snapshot_ttl, secs(1));
    assert_eq!(i.reservation_ttl, c.connect_timeout);
    assert_eq!(i.member_ttl, secs(30));
    assert!(i.herd_control);
    assert_eq!(i.max_list_len, 1024);
    // max_sessions is required: the default is the configuration error.
    assert_eq!(i.max_sessions, 0);
    assert_eq!(i.validate().unwrap_err().problems.first(), Some(&ConfigProblem::Zero("max_sessions")));
}

const FULL_CLIENT_TOML: &str = r#"
seeds = ["AOS01@aos1:2712", "aos2", "[::1]:2713"]
cluster = "production"
handshake_timeout = "2s"
connect_timeout = "1500ms"
attempt_delay = "250ms"
shuffle_seeds = true
load_balance = false
max_list_len = 99
overall_deadline = "1m"

[retry]
base = "100ms"
cap = "10s"
max_rounds = 5
"#;

fn full_client() -> ClientConfig {
    ClientConfig {
        seeds: vec![ep("AOS01@aos1"), ep("aos2:2712"), ep("[::1]:2713")],
        cluster: Some("production".into()),
        handshake_timeout: secs(2),
        connect_timeout: ms(1500),
        attempt_delay: Some(ms(250)),
        shuffle_seeds: true,
        load_balance: false,
        retry: aos_cluster::RetryPolicy { base: ms(100), cap: secs(10), max_rounds: 5 },
        max_list_len: 99,
        overall_deadline: Some(secs(60)),
    }
}

#[test]
fn a_full_client_config_reads_from_toml_and_json() {
    let from_toml: ClientConfig = toml::from_str(FULL_CLIENT_TOML).unwrap();
    assert_eq!(from_toml, full_client());
    assert_eq!(from_toml.validate(), Ok(()));

    let json = r#"{
        "seeds": ["AOS01@aos1:2712", "aos2", "[::1]:2713"], "cluster": "production",
        "handshake_timeout": "2s", "connect_timeout": "1.5s", "attempt_delay": "250ms",
        "shuffle_seeds": true, "load_balance": false, "max_list_len": 99, "overall_deadline": "60s",
        "retry": {"base": "0.1s", "cap": "10s", "max_rounds": 5}
    }"#;
    assert_eq!(serde_json::from_str::<ClientConfig>(json).unwrap(), full_client());
}

#[test]
fn a_minimal_client_config_takes_every_default() {
    let c: ClientConfig = toml::from_str(r#"seeds = ["aos1"]"#).unwrap();
    assert_eq!(c, ClientConfig::with_seeds(vec![ep("aos1:2712")]));
    let c: ClientConfig = serde_json::from_str(r#"{"seeds": ["aos1"]}"#).unwrap();
    assert_eq!(c, ClientConfig::with_seeds(vec![ep("aos1:2712")]));
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn configs_round_trip_through_toml_and_json() {
    let full = full_client();
    let text = toml::to_string(&full).unwrap();
    assert!(text.contains(r#"connect_timeout = "1500ms""#), "{text}");
    assert!(text.contains(r#"overall_deadline = "1m""#), "{text}");
    assert_eq!(toml::from_str::<ClientConfig>(&text).unwrap(), full);
    assert_eq!(serde_json::from_str::<ClientConfig>(&serde_json::to_string(&full).unwrap()).unwrap(), full);
    // `None` durations are left out of TOML and read back as `None`.
    let minimal = ClientConfig::with_seeds(vec![ep("aos1")]);
    let text = toml::to_string(&minimal).unwrap();
    assert!(!text.contains("attempt_delay"), "{text}");
    assert_eq!(toml::from_str::<ClientConfig>(&text).unwrap(), minimal);

    let instance = instance_from_toml();
    let text = toml::to_string(&instance).unwrap();
    assert_eq!(toml::from_str::<InstanceConfig>(&text).unwrap(), instance);
    assert_eq!(
        serde_json::from_str::<InstanceConfig>(&serde_json::to_string(&instance).unwrap()).unwrap(),
        instance
    );
}

fn instance_from_toml() -> InstanceConfig {
    toml::from_str(
        r#"
        id = 7
        endpoint = "AOS07@aos7.contoso.com"
        cluster = "production"
        role = "serving"
        max_sessions = 200
        accepting = false
        peer_timeout = "250ms"
        registry_timeout = "2s"
        snapshot_ttl = "500ms"
        reservation_ttl = "3s"
        member_ttl = "45s"
        heartbeat_interval = "10s"
        herd_control = false
        max_list_len = 99

        [limits]
        max_pending_handshakes = 100
        max_members = 99
        max_reservations = 1000
        max_tracked_sessions = 400
        "#,
    )
    .unwrap()
}

#[test]
fn a_full_instance_config_reads_from_toml_and_json() {
    let i = instance_from_toml();
    assert_eq!((i.id, i.endpoint.to_string()), (InstanceId(7), "AOS07@aos7.contoso.com:2712".to_owned()));
    assert_eq!(
        (i.cluster.as_deref(), i.role, i.max_sessions, i.accepting),
        (Some("production"), Role::Serving, 200, false)
    );
    assert_eq!(
        (
            i.peer_timeout,
            i.registry_timeout,
            i.snapshot_ttl,
            i.reservation_ttl,
            i.member_ttl,
            i.heartbeat_interval
        ),
        (ms(250), secs(2), ms(500), secs(3), secs(45), secs(10))
    );
    assert!(!i.herd_control);
    assert_eq!(i.max_list_len, 99);
    assert_eq!(
        (
            i.limits.max_pending_handshakes,
            i.limits.max_members,
            i.limits.max_reservations,
            i.limits.max_tracked_sessions
        ),
        (100, 99, 1000, 400)
    );
    assert_eq!(i.validate(), Ok(()));

    let json = r#"{"id": 7, "endpoint": "AOS07@aos7.contoso.com:2712", "cluster": "production",
        "role": "serving", "max_sessions": 200, "accepting": false, "peer_timeout": "250ms",
        "registry_timeout": "2s", "snapshot_ttl": "0.5s", "reservation_ttl": "3s", "member_ttl": "45s",
        "heartbeat_interval": "10s", "herd_control": false, "max_list_len": 99,
        "limits": {"max_pending_handshakes": 100, "max_members": 99, "max_reservations": 1000,
                   "max_tracked_sessions": 400}}"#;
    assert_eq!(serde_json::from_str::<InstanceConfig>(json).unwrap(), i);
}

#[test]
fn a_minimal_instance_config_takes_every_default() {
    let text = r#"
        id = 1
        endpoint = "aos1"
        cluster = "production"
        max_sessions = 100
    "#;
    let i: InstanceConfig = toml::from_str(text).unwrap();
    let expected = InstanceConfig {
        cluster: Some("production".into()),
        ..InstanceConfig::new(InstanceId(1), ep("aos1"), 100)
    };
    assert_eq!(i, expected);
    assert_eq!(i.validate(), Ok(()));
    let json = r#"{"id": 1, "endpoint": "aos1", "cluster": "production", "max_sessions": 100}"#;
    assert_eq!(serde_json::from_str::<InstanceConfig>(json).unwrap(), expected);
}

#[test]
fn bad_values_are_deserialization_errors_that_name_them() {
    for (text, needle) in [
        (r#"seeds = ["aos1:0"]"#, "aos1:0"),
        (r#"handshake_timeout = "5""#, "`5`"),
        (r#"handshake_timeout = "5 parsecs""#, "5 parsecs"),
        (r#"handshake_timeout = "-1s""#, "-1s"),
        (r#"connect_timeout = "1.5ns""#, "1.5ns"),
        (r#"handshake_timout = "5s""#, "handshake_timout"),
    ] {
        let err = toml::from_str::<ClientConfig>(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

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

#[test]
fn human_durations_parse_and_format() {
    for (text, d) in [
        ("250ms", ms(250)),
        ("5s", secs(5)),
        ("1.5s", ms(1500)),
        ("0.25s", ms(250)),
        (".5s", ms(500)),
        ("2m", secs(120)),
        ("1min", secs(60)),
        ("1h", secs(3600)),
        ("100us", Duration::from_micros(100)),
        ("100µs", Duration::from_micros(100)),
        ("7ns", Duration::from_nanos(7)),
        (" 5 s ", secs(5)),
        ("0s", Duration::ZERO),
    ] {
        assert_eq!(duration::parse(text), Ok(d), "{text:?}");
    }
    for bad in
        ["", "5", "s", ".s", "1.2.3s", "-1s", "5 parsecs", "1.5ns", "1.0000000001s", "99999999999999999999h"]
    {
        let err = duration::parse(bad).unwrap_err();
        assert!(err.contains(bad), "{bad:?}: {err}");
    }
    assert_eq!(duration::format(ms(1500)), "1500ms");
    assert_eq!(duration::format(secs(120)), "2m");
    assert_eq!(duration::format(Duration::ZERO), "0s");
    assert_eq!(duration::format(Duration::new(1, 1)), "1000000001ns");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_duration_formats_to_text_that_parses_back(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
    }

    #[test]
    fn duration_parsing_never_panics(text in "[0-9.a-zµ ]{0,30}") {
        let _ = duration::parse(&text);
    }
}

// ---- one default for the list length ---------------------------------

#[test]
fn client_instance_and_codec_share_one_list_length_default() {
    use aos_cluster::wire::{Limits, DEFAULT_MAX_LIST_LEN};
    assert_eq!(aos_cluster::config::DEFAULT_MAX_LIST_LEN, DEFAULT_MAX_LIST_LEN);
    assert_eq!(ClientConfig::default().max_list_len, Limits::default().max_list_len);
    assert_eq!(InstanceConfig::default().max_list_len, Limits::default().max_list_len);
}

// ---- seeds compared as targets (SPEC.md phase 1, item 5) -----------------

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

// ---- attempt_delay switched on without a value ----------------------------

fn client_toml(line: &str) -> Result<ClientConfig, String> {
    toml::from_str(&format!("seeds = [\"aos1\"]\n{line}")).map_err(|e| e.to_string())
}

fn client_json(field: &str) -> Result<ClientConfig, String> {
    serde_json::from_str(&format!(r#"{{"seeds": ["aos1"]{field}}}"#)).map_err(|e| e.to_string())
}

#[test]
fn attempt_delay_true_means_the_rfc_8305_default() {
    for (text, expected) in [
        ("attempt_delay = true", Some(DEFAULT_ATTEMPT_DELAY)),
        ("attempt_delay = false", None),
        ("", None),
        (r#"attempt_delay = "100ms""#, Some(ms(100))),
    ] {
        assert_eq!(client_toml(text).map(|c| c.attempt_delay), Ok(expected), "{text:?}");
    }
    for (field, expected) in [
        (r#", "attempt_delay": true"#, Some(DEFAULT_ATTEMPT_DELAY)),
        (r#", "attempt_delay": false"#, None),
        (r#", "attempt_delay": null"#, None),
        ("", None),
        (r#", "attempt_delay": "1s""#, Some(secs(1))),
    ] {
        assert_eq!(client_json(field).map(|c| c.attempt_delay), Ok(expected), "{field:?}");
    }
    assert_eq!(client_toml("attempt_delay = true").unwrap().attempt_delay, Some(ms(250)));
}

#[test]
fn attempt_delay_refuses_what_is_neither_a_switch_nor_a_duration() {
    for text in
        ["attempt_delay = 5", r#"attempt_delay = "5""#, r#"attempt_delay = "soon""#, "attempt_delay = [1]"]
    {
        let err = client_toml(text).unwrap_err();
        assert!(err.contains("attempt_delay"), "{text:?}: {err}");
    }
    let err = client_json(r#", "attempt_delay": 250"#).unwrap_err();
    assert!(err.contains("true (250ms) or false"), "{err}");
}

#[test]
fn a_switched_on_attempt_delay_is_written_as_its_duration() {
    let on = ClientConfig::with_seeds(vec![ep("aos1")]).with_default_attempt_delay();
    assert_eq!(on.attempt_delay, Some(DEFAULT_ATTEMPT_DELAY));
    assert_eq!(on.validate(), Ok(()));
    let text = toml::to_string(&on).unwrap();
    assert!(text.contains(r#"attempt_delay = "250ms""#), "{text}");
    assert_eq!(toml::from_str::<ClientConfig>(&text).unwrap(), on);
    let json = serde_json::to_string(&on).unwrap();
    assert_eq!(serde_json::from_str::<ClientConfig>(&json).unwrap(), on);
}

#[test]
fn compound_durations_parse_as_their_sum() {
    use aos_cluster::config::duration::parse;
    assert_eq!(parse("1m30s"), Ok(secs(90)));
    assert_eq!(parse("1h2m3.5s"), Ok(Duration::from_millis(3_723_500)));
    assert_eq!(parse("1h 2m 3s"), Ok(secs(3723)));
    assert_eq!(parse("250ms"), Ok(ms(250)));
    // `ms` is one unit, not minutes then seconds.
    assert_eq!(parse("1m250ms"), Ok(ms(60_250)));
    assert_eq!(parse("2s500us"), Ok(Duration::from_micros(2_000_500)));
    for bad in ["1m30", "1m30x", "m30s", "1.2.3s", "", "1h-2m"] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let toml_text = r#"seeds = ["aos1"]
handshake_timeout = "1m30s"
"#;
    let c: ClientConfig = toml::from_str(toml_text).unwrap();
    assert_eq!(c.handshake_timeout, secs(90));
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

/// No input panics: a timeout too long to add to an `Instant` is a
/// configuration error, not an overflow inside the machine (found by the
/// client_ops fuzz body with `Duration::MAX`).
#[test]
fn absurdly_long_durations_are_refused_not_overflowed() {
    use aos_cluster::{ClientConfig, Connector, Endpoint, Instance, InstanceConfig, InstanceId};
    use std::time::{Duration, Instant};
    #[allow(clippy::disallowed_methods)] // a test is its own driver
    let now = Instant::now();
    let mut client = ClientConfig::with_seeds(vec![Endpoint::new("aos1", 2712).unwrap()]);
    client.handshake_timeout = Duration::MAX;
    let error = Connector::new(client, now, 1).expect_err("refused");
    assert!(error.to_string().contains("handshake_timeout"), "{error}");
    let mut instance = InstanceConfig::new(InstanceId(1), Endpoint::new("aos1", 2712).unwrap(), 5);
    instance.cluster = Some("c".into());
    instance.reservation_ttl = Duration::MAX;
    let error = Instance::new(instance, now, 1).expect_err("refused");
    assert!(error.to_string().contains("reservation_ttl"), "{error}");
}

/// SPEC defaults table: an instance's `id` and `endpoint` have no default
/// (a silent id 0 at `localhost:2712` collided); a file without them is
/// refused and says which field is missing.
#[test]
fn an_instance_file_without_id_or_endpoint_is_refused() {
    let without_id = "endpoint = \"aos1:2712\"\ncluster = \"c\"\nmax_sessions = 5\n";
    let error = toml::from_str::<aos_cluster::InstanceConfig>(without_id).expect_err("id is required");
    assert!(error.to_string().contains("missing field `id`"), "{error}");
    let without_endpoint = "id = 1\ncluster = \"c\"\nmax_sessions = 5\n";
    let error =
        toml::from_str::<aos_cluster::InstanceConfig>(without_endpoint).expect_err("endpoint is required");
    assert!(error.to_string().contains("missing field `endpoint`"), "{error}");
    let minimal = "id = 1\nendpoint = \"aos1:2712\"\ncluster = \"c\"\nmax_sessions = 5\n";
    let config: aos_cluster::InstanceConfig = toml::from_str(minimal).expect("the rest has defaults");
    assert_eq!(config.member_ttl, std::time::Duration::from_secs(30));
    config.validate().expect("valid");
}
