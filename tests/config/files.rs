//! The SPEC defaults, and configurations read from TOML and JSON: full,
//! minimal, round trips, bad values and missing required fields.

use aos_cluster::config::{
    ClientConfig, ConfigProblem, InstanceConfig, DEFAULT_ATTEMPT_DELAY, MIN_ATTEMPT_DELAY,
};
use aos_cluster::endpoint::DEFAULT_PORT;
use aos_cluster::workload::{InstanceId, Role};

use crate::{ep, ms, secs};

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

#[test]
fn client_instance_and_codec_share_one_list_length_default() {
    use aos_cluster::wire::{Limits, DEFAULT_MAX_LIST_LEN};
    assert_eq!(aos_cluster::config::DEFAULT_MAX_LIST_LEN, DEFAULT_MAX_LIST_LEN);
    assert_eq!(ClientConfig::default().max_list_len, Limits::default().max_list_len);
    assert_eq!(InstanceConfig::default().max_list_len, Limits::default().max_list_len);
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
