//! The PostgreSQL registry over TLS.

use super::*;

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_registry_connects_with_sslmode_verify_full() {
    use aos_cluster::registry::Heartbeat;
    use aos_cluster_tokio::registry::{Incarnation, PostgresRegistry};
    let Ok(url) = std::env::var("AOS_TEST_POSTGRES_TLS_URL") else {
        eprintln!("AOS_TEST_POSTGRES_TLS_URL is not set (AOS_PG_TLS=1 source .ci/postgres.sh): PostgreSQL over TLS not tested");
        return;
    };
    assert!(url.contains("sslmode=verify-full"), "the TLS test URL must ask for verify-full: {url}");
    let registry = PostgresRegistry::connect(&url).await.expect("connects with verify-full");
    let id = InstanceId(4242);
    let heartbeat = Heartbeat {
        id,
        endpoint: Endpoint::new("127.0.0.1", 4242).unwrap(),
        cluster: Some("tls-test".into()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(1, 10),
    };
    let incarnation = Incarnation(0x5151);
    registry.register(&heartbeat, incarnation, Duration::from_secs(30)).await.expect("register over TLS");
    let members = registry
        .snapshot(Some("tls-test"), MemberTiming::with_ttl(Duration::from_secs(300)))
        .await
        .expect("snapshot over TLS");
    assert!(members.iter().any(|m| m.id == id), "{members:?}");
    assert!(registry.remove(id, incarnation).await.expect("remove"));

    // Another CA: the server's certificate is refused, so TLS really was spoken.
    let stranger = DevPki::new().unwrap();
    let base: Vec<&str> = url.split('&').filter(|p| !p.starts_with("sslrootcert=")).collect();
    let wrong = format!("{}&sslrootcert={}", base.join("&"), stranger.ca_cert().display());
    let error = PostgresRegistry::connect(&wrong).await.expect_err("a server certificate of another CA");
    assert!(error.to_string().contains("certificate"), "{error}");
    let error =
        PostgresRegistry::connect(&wrong.replace("verify-full", "verify-ca")).await.expect_err("verify-ca");
    assert!(error.to_string().contains("certificate"), "{error}");
    // `require` without a root encrypts without checking the chain (libpq's meaning).
    let require = base.join("&").replace("sslmode=verify-full", "sslmode=require");
    assert!(!require.contains("sslrootcert") && require.contains("sslmode=require"), "{require}");
    PostgresRegistry::connect(&require).await.expect("sslmode=require without sslrootcert");
}
