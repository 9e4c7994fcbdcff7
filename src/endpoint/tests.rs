use super::*;

#[test]
fn every_ax_form_parses() {
    let e: Endpoint = "aos1".parse().unwrap();
    assert_eq!((e.instance(), e.host(), e.port()), (None, "aos1", 2712));
    let e: Endpoint = "AOS01@aos1:2713".parse().unwrap();
    assert_eq!((e.instance(), e.host(), e.port()), (Some("AOS01"), "aos1", 2713));
    let e: Endpoint = "AOS01@aos1".parse().unwrap();
    assert_eq!(e.port(), 2712);
    let e: Endpoint = "[::1]:2712".parse().unwrap();
    assert_eq!((e.host(), e.to_string().as_str()), ("::1", "[::1]:2712"));
    let e: Endpoint = "[fe80::1]".parse().unwrap();
    assert_eq!(e.port(), DEFAULT_PORT);
}

#[test]
fn bad_forms_name_the_text() {
    for bad in [
        "",
        ":2712",
        "@aos1",
        "aos1:0",
        "aos1:65536",
        "aos1:x",
        "[::1",
        "::1]:1",
        "a b",
        "::1",
        "[aos1]:1",
        "[::1]x",
    ] {
        let err = bad.parse::<Endpoint>().unwrap_err();
        if !bad.is_empty() {
            assert!(err.to_string().contains(bad.trim()), "{bad:?}: {err}");
        }
    }
}

/// What the endpoint was before sharing: the three parts, compared,
/// ordered and hashed field by field.
fn parts(e: &Endpoint) -> (Option<String>, String, u16) {
    (e.instance().map(str::to_owned), e.host().to_owned(), e.port())
}

fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

proptest::proptest! {
    /// Five bytes decide whether a checked host is IPv6, in every textual
    /// form: compressed, full with leading zeros, IPv4-embedded.
    #[test]
    fn five_bytes_tell_an_ipv6_host(bits: u128, name in "[A-Za-z0-9._-]{1,30}") {
        let addr = Ipv6Addr::from(bits);
        let full = addr.segments().map(|s| format!("{s:04x}")).join(":");
        let embedded = format!("::ffff:{}", std::net::Ipv4Addr::from((bits >> 96) as u32));
        for host in [addr.to_string(), full, embedded, name] {
            let e = Endpoint::new(&host, 1).unwrap();
            proptest::prop_assert_eq!(e.has_ipv6_host(), host.contains(':'), "{}", host);
        }
    }
}

#[test]
fn clones_share_the_text() {
    let e: Endpoint = "AOS01@aos1:2713".parse().unwrap();
    let copy = e.clone();
    assert!(std::ptr::eq(e.host(), copy.host()));
    assert!(std::ptr::eq(e.instance().unwrap(), copy.instance().unwrap()));
    assert_eq!(copy, e);
}

#[test]
fn order_equality_and_hash_are_those_of_the_parts() {
    let texts = [
        "aos1",
        "aos1:1",
        "aos1:65535",
        "aos10",
        "aos2:2712",
        "AOS1",
        "A@aos1",
        "A@aos1:1",
        "B@aos0",
        "[::1]",
        "[::1]:1",
        "10.0.0.7:80",
        "a-b_c.d@db.example",
    ];
    let endpoints: Vec<Endpoint> = texts.iter().map(|t| t.parse().unwrap()).collect();
    for a in &endpoints {
        for b in &endpoints {
            assert_eq!(a.cmp(b), parts(a).cmp(&parts(b)), "{a} vs {b}");
            assert_eq!(a == b, parts(a) == parts(b), "{a} vs {b}");
        }
        // A derive on the fields hashes them in order, as a tuple does.
        let p = parts(a);
        assert_eq!(hash_of(a), hash_of(&(p.0.as_deref(), p.1.as_str(), p.2)), "{a}");
        assert_eq!(
            format!("{a:?}"),
            format!("Endpoint {{ instance: {:?}, host: {:?}, port: {} }}", p.0, p.1, p.2)
        );
    }
}
