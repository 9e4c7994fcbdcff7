//! etcd over TLS: `.ci/etcd.sh` with `AOS_ETCD_TLS=1` serves a TLS port that
//! checks client certificates, named (with its CA and a client certificate)
//! by `AOS_TEST_ETCD_TLS_URL`.

use aos_cluster_tokio::registry::{EtcdRegistry, MemberTiming, Registry, RegistryError};

use super::{heartbeat, ids, A, TTL};

/// The TLS URL with a prefix of this test's own, or `None` without one.
fn tls_url(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("AOS_TEST_ETCD_TLS_URL") else {
        eprintln!("etcd TLS test {test} did not run: AOS_TEST_ETCD_TLS_URL is not set");
        return None;
    };
    let (base, query) = url.split_once('?').expect("AOS_TEST_ETCD_TLS_URL has TLS parameters");
    Some(format!("{base}/{test}-{}?{query}", std::process::id()))
}

/// `url` with parameter `name` replaced by `value` (or dropped for `None`).
fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, query) = url.split_once('?').expect("parameters");
    let mut params: Vec<String> =
        query.split('&').filter(|pair| !pair.starts_with(&format!("{name}="))).map(str::to_owned).collect();
    if let Some(value) = value {
        params.push(format!("{name}={value}"));
    }
    format!("{base}?{}", params.join("&"))
}

#[tokio::test]
async fn etcd_over_tls_with_a_client_certificate_registers_and_reads() {
    let Some(url) = tls_url("tls_works") else { return };
    let registry = EtcdRegistry::connect(&url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    registry.register(&heartbeat(1, "h", 3), A, TTL).await.expect("register over TLS");
    registry.heartbeat(&heartbeat(1, "h", 4), A).await.expect("heartbeat over TLS");
    let read = registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await.expect("snapshot");
    assert_eq!(ids(&read), [1]);
    assert!(registry.remove(aos_cluster::InstanceId(1), A).await.expect("remove"));
}

/// A CA that did not sign etcd's certificate, or no client certificate
/// where etcd checks them, and the registry does not open: it says so.
#[tokio::test]
async fn etcd_over_tls_refuses_a_server_it_cannot_verify_and_needs_the_client_certificate() {
    let Some(url) = tls_url("tls_refused") else { return };
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let client_cert = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cert="))
        .expect("the URL names a client certificate")
        .to_owned();
    // The client certificate is no CA: nothing it "signed" verifies etcd.
    let wrong_ca = with_param(&url, "cacert", Some(&client_cert));
    let without_identity = with_param(&with_param(&url, "cert", None), "key", None);
    for (bad, what) in [(wrong_ca, "an unknown CA"), (without_identity, "no client certificate")] {
        match EtcdRegistry::connect(&bad).await {
            Err(RegistryError::Backend { message, .. }) => {
                assert!(message.contains("cannot open"), "{what}: {message}")
            }
            other => panic!("{what}: expected a failure to open, got {other:?}"),
        }
    }
    // A file that is not there is a bad URL, said at once.
    let missing = with_param(&url, "cacert", Some("/nonexistent/ca.pem"));
    match EtcdRegistry::connect(&missing).await {
        Err(RegistryError::BadUrl { reason, .. }) => {
            assert!(reason.contains("/nonexistent/ca.pem"), "{reason}")
        }
        other => panic!("expected BadUrl, got {other:?}"),
    }
}
