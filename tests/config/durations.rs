//! Human durations: parsing, formatting, compounds, and lengths too long
//! for a timer.

use std::time::Duration;

use aos_cluster::config::{duration, ClientConfig};
use proptest::prelude::*;

use crate::{ms, secs};

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
