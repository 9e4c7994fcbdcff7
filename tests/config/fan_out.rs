//! The bounded fan-out settings: defaults, TOML and JSON with
//! human durations, and `validate()`.

use std::time::Duration;

use aos_cluster::config::{
    ConfigProblem, FanOut, InstanceConfig, DEFAULT_FAN_OUT_LIVE, DEFAULT_FULL_FAN_OUT_UP_TO,
    DEFAULT_MAX_FIGURE_AGE, MAX_DURATION,
};
use aos_cluster::workload::InstanceId;

fn valid_instance() -> InstanceConfig {
    InstanceConfig {
        cluster: Some("production".into()),
        ..InstanceConfig::new(InstanceId(1), "aos1".parse().unwrap(), 100)
    }
}

fn problems(edit: impl FnOnce(&mut FanOut)) -> Vec<ConfigProblem> {
    let mut i = valid_instance();
    edit(&mut i.fan_out);
    i.validate().map(|()| Vec::new()).unwrap_or_else(|e| e.problems)
}

#[test]
fn defaults_and_constructors() {
    let d = FanOut::default();
    assert_eq!(
        (d.live, d.full_up_to, d.max_figure_age),
        (8, DEFAULT_FULL_FAN_OUT_UP_TO, Duration::from_secs(10))
    );
    assert_eq!((DEFAULT_FAN_OUT_LIVE, DEFAULT_MAX_FIGURE_AGE), (8, Duration::from_secs(10)));
    // Twice the default heartbeat interval: one late heartbeat is tolerated.
    assert_eq!(DEFAULT_MAX_FIGURE_AGE, 2 * InstanceConfig::default().heartbeat_interval);
    assert_eq!(InstanceConfig::default().fan_out, d);
    assert_eq!(FanOut::FULL, FanOut { full_up_to: usize::MAX, ..d });
    assert_eq!(FanOut::bounded(3), FanOut { live: 3, full_up_to: 0, ..d });
    assert!(FanOut::FULL.is_full_for(usize::MAX));
    assert!(!FanOut::bounded(3).is_full_for(1));
    assert!(FanOut::bounded(3).is_full_for(0));
    assert!(d.is_full_for(DEFAULT_FULL_FAN_OUT_UP_TO) && !d.is_full_for(DEFAULT_FULL_FAN_OUT_UP_TO + 1));
}

#[test]
fn an_instance_file_without_fan_out_takes_the_default() {
    let text = "id = 1\nendpoint = \"aos1\"\ncluster = \"production\"\nmax_sessions = 100\n";
    let i: InstanceConfig = toml::from_str(text).unwrap();
    assert_eq!(i.fan_out, FanOut::default());
}

#[test]
fn fan_out_reads_from_toml_and_json_and_round_trips() {
    let text = r#"
        id = 1
        endpoint = "aos1"
        cluster = "production"
        max_sessions = 100

        [fan_out]
        live = 4
        full_up_to = 0
        max_figure_age = "1m30s"
    "#;
    let i: InstanceConfig = toml::from_str(text).unwrap();
    let expected = FanOut { live: 4, full_up_to: 0, max_figure_age: Duration::from_secs(90) };
    assert_eq!(i.fan_out, expected);
    assert_eq!(i.validate(), Ok(()));
    let written = toml::to_string(&i).unwrap();
    assert!(written.contains("max_figure_age = \"90s\""), "{written}");
    assert_eq!(toml::from_str::<InstanceConfig>(&written).unwrap(), i);

    // A partial table keeps the other defaults.
    let partial: FanOut = serde_json::from_str(r#"{"live": 2}"#).unwrap();
    assert_eq!(partial, FanOut { live: 2, ..FanOut::default() });
    let json = serde_json::to_string(&expected).unwrap();
    assert_eq!(serde_json::from_str::<FanOut>(&json).unwrap(), expected);
}

#[test]
fn unknown_fields_and_bad_durations_are_errors_that_name_them() {
    for (text, needle) in
        [(r#"lives = 3"#, "lives"), (r#"max_figure_age = "10""#, "`10`"), (r#"live = -1"#, "-1")]
    {
        let err = toml::from_str::<FanOut>(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn validation_reports_each_fan_out_problem() {
    use ConfigProblem::*;
    assert_eq!(problems(|_| {}), vec![]);
    assert_eq!(problems(|f| f.live = 0), vec![Zero("fan_out.live")]);
    assert_eq!(problems(|f| f.max_figure_age = Duration::ZERO), vec![Zero("fan_out.max_figure_age")]);
    let long = MAX_DURATION + Duration::from_secs(1);
    assert_eq!(
        problems(|f| f.max_figure_age = long),
        vec![TooLong { field: "fan_out.max_figure_age", value: long }]
    );
    assert_eq!(
        problems(|f| *f = FanOut { live: 0, full_up_to: 7, max_figure_age: Duration::ZERO }),
        vec![Zero("fan_out.live"), Zero("fan_out.max_figure_age")]
    );
    // Any threshold is valid, from always bounded to always full, and k may
    // exceed the cluster.
    assert_eq!(problems(|f| *f = FanOut::FULL), vec![]);
    assert_eq!(problems(|f| *f = FanOut::bounded(1)), vec![]);
    assert_eq!(problems(|f| f.live = usize::MAX), vec![]);
    let message = {
        let mut i = valid_instance();
        i.fan_out.live = 0;
        i.validate().unwrap_err().to_string()
    };
    assert!(message.contains("fan_out.live"), "{message}");
}
