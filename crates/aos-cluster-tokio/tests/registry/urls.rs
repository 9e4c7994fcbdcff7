//! Registry URLs: forms, features, redaction; incarnations.

use super::*;

#[tokio::test]
async fn unknown_urls_are_refused_naming_the_url() {
    for url in ["mysql://root@localhost/aos", "registry.db", "", "sqlite:/x.db", "postgres:/x", "sqlite://"] {
        match registry::open(url).await {
            Err(e @ RegistryError::BadUrl { .. }) => {
                assert!(e.to_string().contains(&format!("`{url}`")), "{e}");
                assert!(e.to_string().contains("sqlite://") || e.to_string().contains("sqlite"), "{e}");
            }
            other => panic!("{url}: {:?}", other.map(|_| ())),
        }
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_postgres_url_without_the_feature_says_which_feature() {
    match registry::open("postgres://aos:pw@127.0.0.1/aos").await {
        Err(e @ RegistryError::BadUrl { .. }) => {
            let message = e.to_string();
            assert!(message.contains("feature `postgres`"), "{message}");
            assert!(!message.contains(":pw@"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[cfg(not(all(feature = "etcd", aos_etcd)))]
#[tokio::test]
async fn an_etcd_url_without_the_feature_says_which_feature() {
    match registry::open("etcd://aos:pw@127.0.0.1:2379/aos").await {
        Err(e @ RegistryError::BadUrl { .. }) => {
            let message = e.to_string();
            assert!(message.contains("feature `etcd`"), "{message}");
            assert!(!message.contains(":pw@"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn passwords_are_redacted_from_shown_urls() {
    for (url, shown) in [
        ("postgres://aos:pw@db:5432/aos", "postgres://aos:***@db:5432/aos"),
        ("postgres://aos@db/aos", "postgres://aos@db/aos"),
        ("postgres://a:b:c@db/aos?sslmode=disable", "postgres://a:***@db/aos?sslmode=disable"),
        ("postgresql://db/aos?user=a&password=pw&x=1", "postgresql://db/aos?user=a&password=***&x=1"),
        ("sqlite:///var/lib/aos/registry.db", "sqlite:///var/lib/aos/registry.db"),
        ("postgres://db/a@b", "postgres://db/a@b"),
        ("etcd://aos:pw@e1:2379,e2:2379/aos", "etcd://aos:***@e1:2379,e2:2379/aos"),
    ] {
        assert_eq!(registry::redact_password(url), shown, "{url}");
    }
}

#[test]
fn incarnations_differ_between_starts() {
    let drawn: std::collections::BTreeSet<u64> = (0..100).map(|_| Incarnation::random().0).collect();
    assert_eq!(drawn.len(), 100);
}
