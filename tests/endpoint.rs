//! Endpoints in every AX client configuration form.

use aos_cluster::endpoint::{Endpoint, EndpointError, DEFAULT_PORT, MAX_HOST_LEN, MAX_INSTANCE_LEN};
use proptest::prelude::*;

fn parts(e: &Endpoint) -> (Option<&str>, &str, u16) {
    (e.instance(), e.host(), e.port())
}

#[test]
fn every_good_form_parses_to_its_parts() {
    let table: &[(&str, Option<&str>, &str, u16, &str)] = &[
        ("aos1", None, "aos1", DEFAULT_PORT, "aos1:2712"),
        ("aos1.contoso.com:2713", None, "aos1.contoso.com", 2713, "aos1.contoso.com:2713"),
        ("AOS01@aos1", Some("AOS01"), "aos1", DEFAULT_PORT, "AOS01@aos1:2712"),
        ("AOS01@aos1:2713", Some("AOS01"), "aos1", 2713, "AOS01@aos1:2713"),
        ("[::1]:2712", None, "::1", 2712, "[::1]:2712"),
        ("[fe80::1]", None, "fe80::1", DEFAULT_PORT, "[fe80::1]:2712"),
        ("01@[::ffff:10.0.0.1]:1", Some("01"), "::ffff:10.0.0.1", 1, "01@[::ffff:10.0.0.1]:1"),
        ("10.0.0.7:65535", None, "10.0.0.7", 65535, "10.0.0.7:65535"),
        ("my_host-2:02712", None, "my_host-2", 2712, "my_host-2:2712"),
        // Surrounding white space from a configuration file is not part of it.
        ("  aos2:2800\n", None, "aos2", 2800, "aos2:2800"),
    ];
    for &(text, instance, host, port, shown) in table {
        let e: Endpoint = text.parse().unwrap_or_else(|err| panic!("{text:?}: {err}"));
        assert_eq!(parts(&e), (instance, host, port), "{text:?}");
        assert_eq!(e.to_string(), shown, "{text:?}");
        assert_eq!(shown.parse::<Endpoint>().as_ref(), Ok(&e), "{shown:?}");
    }
}

/// Whether an error is of the expected kind.
type ErrorKindCheck = fn(&EndpointError) -> bool;

#[test]
fn every_bad_form_is_an_error_that_names_the_text() {
    use EndpointError as E;
    let long_host = "h".repeat(MAX_HOST_LEN + 1);
    let long_instance = format!("{}@aos1", "i".repeat(MAX_INSTANCE_LEN + 1));
    let table: Vec<(&str, ErrorKindCheck)> = vec![
        (":2712", |e| matches!(e, E::EmptyHost(_))),
        ("AOS01@", |e| matches!(e, E::EmptyHost(_))),
        ("AOS01@:1", |e| matches!(e, E::EmptyHost(_))),
        ("[]:2712", |e| matches!(e, E::EmptyHost(_))),
        ("@aos1", |e| matches!(e, E::EmptyInstance(_))),
        ("aos1:0", |e| matches!(e, E::BadPort { port, .. } if port == "0")),
        ("aos1:65536", |e| matches!(e, E::BadPort { port, .. } if port == "65536")),
        ("aos1:99999999", |e| matches!(e, E::BadPort { .. })),
        ("aos1:", |e| matches!(e, E::BadPort { port, .. } if port.is_empty())),
        ("aos1:x", |e| matches!(e, E::BadPort { .. })),
        ("aos1:+1", |e| matches!(e, E::BadPort { .. })),
        ("aos1:-1", |e| matches!(e, E::BadPort { .. })),
        ("[::1]:0", |e| matches!(e, E::BadPort { .. })),
        ("a b", |e| matches!(e, E::StrayCharacter { ch: ' ', .. })),
        ("aos/1", |e| matches!(e, E::StrayCharacter { ch: '/', .. })),
        ("aös", |e| matches!(e, E::StrayCharacter { ch: 'ö', .. })),
        ("a@b@c", |e| matches!(e, E::StrayCharacter { ch: '@', .. })),
        ("A:1@aos1", |e| matches!(e, E::StrayCharacter { ch: ':', .. })),
        ("[::g]", |e| matches!(e, E::StrayCharacter { ch: 'g', .. })),
        ("[::1", |e| matches!(e, E::Brackets(_))),
        ("::1]:1", |e| matches!(e, E::UnbracketedIpv6(_) | E::Brackets(_))),
        ("aos1]", |e| matches!(e, E::Brackets(_))),
        ("a[os1", |e| matches!(e, E::Brackets(_))),
        ("[[::1]]", |e| matches!(e, E::Brackets(_))),
        ("[::1]]:1", |e| matches!(e, E::Brackets(_))),
        ("[::1]x", |e| matches!(e, E::Brackets(_))),
        ("[::1]2712", |e| matches!(e, E::Brackets(_))),
        ("[aos1]:1", |e| matches!(e, E::Brackets(_))),
        ("::1", |e| matches!(e, E::UnbracketedIpv6(_))),
        ("fe80::1:2712", |e| matches!(e, E::UnbracketedIpv6(_))),
        ("[1:2:3]", |e| matches!(e, E::BadIpv6(_))),
        ("[:::]:1", |e| matches!(e, E::BadIpv6(_))),
        (&long_host, |e| matches!(e, E::TooLong(_))),
        (&long_instance, |e| matches!(e, E::TooLong(_))),
    ];
    for (text, expected) in table {
        let err = text.parse::<Endpoint>().expect_err(text);
        assert!(expected(&err), "{text:?} gave {err:?}");
        let message = err.to_string();
        assert!(message.contains(text), "{text:?}: message {message:?} does not name the text");
    }
    for blank in ["", "   ", "\t\n"] {
        assert_eq!(blank.parse::<Endpoint>(), Err(EndpointError::Empty));
    }
}

#[test]
fn constructors_check_like_the_parser() {
    assert_eq!(Endpoint::new("aos1", 2713).map(|e| e.to_string()), Ok("aos1:2713".into()));
    let v6 = Endpoint::with_instance(Some("AOS01"), "::1", 1).unwrap();
    assert_eq!(v6.to_string(), "AOS01@[::1]:1");
    assert_eq!(Endpoint::with_instance(None, "[::1]", 1).unwrap(), "[::1]:1".parse().unwrap());
    assert_eq!(v6.socket_addr_string(), "[::1]:1");
    assert!(matches!(Endpoint::new("aos1", 0), Err(EndpointError::BadPort { .. })));
    assert!(matches!(Endpoint::new("", 1), Err(EndpointError::EmptyHost(_))));
    assert!(matches!(Endpoint::new("a:b", 1), Err(EndpointError::BadIpv6(_))));
    assert!(matches!(Endpoint::new("a b", 1), Err(EndpointError::StrayCharacter { ch: ' ', .. })));
    assert!(matches!(Endpoint::with_instance(Some(""), "aos1", 1), Err(EndpointError::EmptyInstance(_))));
    assert!(matches!(
        Endpoint::with_instance(Some("a@b"), "aos1", 1),
        Err(EndpointError::StrayCharacter { .. })
    ));
}

#[cfg(feature = "serde")]
#[test]
fn serde_uses_the_text_form() {
    let e: Endpoint = "AOS01@[::1]:2713".parse().unwrap();
    assert_eq!(serde_json::to_string(&e).unwrap(), "\"AOS01@[::1]:2713\"");
    assert_eq!(serde_json::from_str::<Endpoint>("\"aos1\"").unwrap(), "aos1:2712".parse().unwrap());
    let err = serde_json::from_str::<Endpoint>("\"aos1:0\"").unwrap_err();
    assert!(err.to_string().contains("aos1:0"), "{err}");
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,20}"
}

fn host() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        name().prop_map(|h| (h, false)),
        any::<[u8; 4]>().prop_map(|o| (std::net::Ipv4Addr::from(o).to_string(), false)),
        any::<[u16; 8]>().prop_map(|s| (std::net::Ipv6Addr::from(s).to_string(), true)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn endpoints_built_from_parts_round_trip(
        instance in proptest::option::of(name()),
        (host, ipv6) in host(),
        port in proptest::option::of(1u16..=u16::MAX),
    ) {
        let mut text = String::new();
        if let Some(i) = &instance {
            text.push_str(i);
            text.push('@');
        }
        if ipv6 {
            text.push_str(&format!("[{host}]"));
        } else {
            text.push_str(&host);
        }
        if let Some(p) = port {
            text.push_str(&format!(":{p}"));
        }
        let e: Endpoint = text.parse().map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(parts(&e), (instance.as_deref(), host.as_str(), port.unwrap_or(DEFAULT_PORT)));
        let shown = e.to_string();
        prop_assert_eq!(shown.parse::<Endpoint>(), Ok(e.clone()));
        prop_assert_eq!(Endpoint::with_instance(instance.as_deref(), &host, e.port()), Ok(e.clone()));
        if port.is_some() {
            // With an explicit port the text is already in display form.
            prop_assert_eq!(shown, text);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_parses_stably(text in any::<String>()) {
        if let Ok(e) = text.parse::<Endpoint>() {
            prop_assert_eq!(e.to_string().parse::<Endpoint>(), Ok(e));
        }
    }

    #[test]
    fn endpoint_like_text_never_panics_and_parses_stably(text in "[a-z0-9:@\\[\\]. ]{0,24}") {
        match text.parse::<Endpoint>() {
            Ok(e) => prop_assert_eq!(e.to_string().parse::<Endpoint>(), Ok(e)),
            Err(err) => {
                if !text.trim().is_empty() {
                    prop_assert!(err.to_string().contains(text.trim()), "{}", err);
                }
            }
        }
    }
}

// ---- targets (SPEC.md phase 1, item 5) -------------------------------------------------

#[test]
fn same_target_ignores_the_label_and_the_host_case_but_not_the_port() {
    let same = [
        ("AOS01@h:2712", "h:2712"),
        ("H:2712", "h"),
        ("AOS01@aos1.Contoso.com", "aos02@AOS1.contoso.COM:2712"),
        ("[::1]", "[0:0:0:0:0:0:0:1]:2712"),
        ("[FE80::A]:1", "x@[fe80::a]:1"),
        ("10.0.0.7:80", "10.0.0.7:80"),
    ];
    for (a, b) in same {
        assert!(ep_(a).same_target(&ep_(b)), "{a} and {b} are one target");
        assert!(ep_(b).same_target(&ep_(a)), "{b} and {a} are one target");
    }
    let different = [
        ("h:2712", "h:2713"),
        ("h", "h2"),
        ("AOS01@h", "AOS01@g"),
        ("[::1]", "[::2]"),
        // A name is never an address, even one that would resolve to it.
        ("localhost", "[::1]"),
        ("[::ffff:10.0.0.7]", "10.0.0.7"),
    ];
    for (a, b) in different {
        assert!(!ep_(a).same_target(&ep_(b)), "{a} and {b} are two targets");
    }
}

#[test]
fn equality_and_hash_stay_structural() {
    use std::collections::HashSet;
    let texts = ["h:2712", "H:2712", "AOS01@h:2712", "[::1]", "[0::1]"];
    let endpoints: HashSet<Endpoint> = texts.iter().map(|t| ep_(t)).collect();
    assert_eq!(endpoints.len(), texts.len(), "five spellings, five endpoints");
    assert_ne!(ep_("H:2712"), ep_("h:2712"));
    assert_ne!(ep_("AOS01@h"), ep_("h"));
    assert_eq!(ep_("h"), ep_("h:2712"), "a missing port is still 2712");
}

fn ep_(text: &str) -> Endpoint {
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Another spelling of the same target: random case, another or no label.
fn respell(e: &Endpoint, upper: &[bool], label: Option<&str>) -> Endpoint {
    let host: String = e
        .host()
        .chars()
        .zip(upper.iter().cycle())
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect();
    Endpoint::with_instance(label, &host, e.port()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_target_is_an_equivalence_that_respelling_keeps(
        instance in proptest::option::of(name()),
        (host, _) in host(),
        port in 1u16..=u16::MAX,
        other_port in 1u16..=u16::MAX,
        upper in proptest::collection::vec(any::<bool>(), 1..8),
        label in proptest::option::of(name()),
    ) {
        let e = Endpoint::with_instance(instance.as_deref(), &host, port).unwrap();
        prop_assert!(e.same_target(&e));
        let again = respell(&e, &upper, label.as_deref());
        prop_assert!(e.same_target(&again) && again.same_target(&e));
        let third = respell(&again, &[true], None);
        prop_assert!(e.same_target(&third), "transitive through {}", again);
        let moved = Endpoint::with_instance(instance.as_deref(), &host, other_port).unwrap();
        prop_assert_eq!(e.same_target(&moved), port == other_port);
        // `==` implies the same target, never the other way round necessarily.
        if e == again {
            prop_assert!(e.same_target(&again));
        }
    }
}
