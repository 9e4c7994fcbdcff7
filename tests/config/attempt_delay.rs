//! `attempt_delay`: a switch or a duration.

use aos_cluster::config::{ClientConfig, DEFAULT_ATTEMPT_DELAY};

use crate::{ep, ms, secs};

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
