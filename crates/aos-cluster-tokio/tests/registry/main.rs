//! The registry backends against the SPEC "Membership" rules.
//!
//! One suite, run against every backend: [`MemoryRegistry`], SQLite (a fresh
//! file per test in its own temporary directory), PostgreSQL (a fresh
//! schema per test in the server named by `AOS_TEST_POSTGRES_URL`, which
//! `.ci/postgres.sh` starts and exports) and etcd (a fresh prefix per test in
//! the server named by `AOS_TEST_ETCD_URL`, from `.ci/etcd.sh`). Without its
//! variable a server's half says so on the terminal and runs nothing.

// The harness serves every backend; a build without one leaves parts unused.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_variables)
)]

use aos_cluster_tokio::registry::MemberTiming;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
#[cfg(feature = "sqlite")]
use aos_cluster_tokio::registry::SqliteRegistry;
use aos_cluster_tokio::registry::{self, Incarnation, MemoryRegistry, Registry, RegistryError};
#[cfg(all(feature = "etcd", aos_etcd))]
use aos_cluster_tokio::registry::{BoxFuture, EtcdRegistry};

const POSTGRES_URL_VAR: &str = "AOS_TEST_POSTGRES_URL";
#[cfg(all(feature = "etcd", aos_etcd))]
const ETCD_URL_VAR: &str = "AOS_TEST_ETCD_URL";
const TTL: Duration = Duration::from_secs(30);
const PURGE: Duration = Duration::from_secs(300);
/// Two incarnations whose top bit is set: their stored `i64` is negative, so
/// a wrong conversion would show.
const A: Incarnation = Incarnation(0xdead_beef_0000_0001);
const B: Incarnation = Incarnation(u64::MAX - 6);

// ---- log capture -------------------------------------------------------------------

/// Every log line of this test binary at INFO or above.
fn logs() -> &'static Mutex<Vec<u8>> {
    log_capture::capture(tracing::Level::INFO)
}

fn logged_lines(needle: &str) -> Vec<String> {
    log_capture::lines_containing(logs(), needle)
}

// ---- the databases -------------------------------------------------------------------

/// One test's database, and ways to reach it: new connections, and writes
/// behind the registry's back.
enum TestDb {
    Memory(MemoryRegistry),
    #[cfg(feature = "sqlite")]
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    #[cfg(feature = "postgres")]
    Postgres(PostgresDb),
    #[cfg(all(feature = "etcd", aos_etcd))]
    Etcd(Box<EtcdDb>),
}

#[cfg(all(feature = "etcd", aos_etcd))]
struct EtcdDb {
    /// The registry URL: the server's, with a prefix of this test's own.
    url: String,
    /// The prefix under which the test's keys live.
    prefix: String,
    admin: etcd_client::Client,
}

#[cfg(feature = "postgres")]
struct PostgresDb {
    base_url: String,
    schema: String,
    admin: tokio_postgres::Client,
}

impl TestDb {
    fn memory() -> TestDb {
        TestDb::Memory(MemoryRegistry::new())
    }

    #[cfg(feature = "sqlite")]
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("registry.db");
        TestDb::Sqlite { _dir: dir, path }
    }

    /// A fresh schema named after the test, or `None` (said once per run on
    /// the terminal, past the test harness's capture) without a server.
    #[cfg(feature = "postgres")]
    async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(base_url) = std::env::var(POSTGRES_URL_VAR) else {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                let line = format!("postgres registry tests did not run: {POSTGRES_URL_VAR} is not set\n");
                drop(std::io::stderr().lock().write_all(line.as_bytes()));
            });
            return None;
        };
        let (admin, connection) = tokio_postgres::connect(&base_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={base_url} is set but unreachable: {e}"));
        tokio::spawn(connection);
        let schema = format!("aos_tokio_test_{test}");
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"))
            .await
            .expect("a fresh schema for the test");
        Some(TestDb::Postgres(PostgresDb { base_url, schema, admin }))
    }

    /// A fresh prefix named after the test (and this run), or `None` (said
    /// once per run) without a server.
    #[cfg(all(feature = "etcd", aos_etcd))]
    async fn etcd(test: &str) -> Option<TestDb> {
        let Ok(base_url) = std::env::var(ETCD_URL_VAR) else {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                let line = format!("etcd registry tests did not run: {ETCD_URL_VAR} is not set\n");
                drop(std::io::stderr().lock().write_all(line.as_bytes()));
            });
            return None;
        };
        let rest = base_url.strip_prefix("etcd://").unwrap_or_else(|| panic!("{ETCD_URL_VAR}={base_url}"));
        let (hosts, base_prefix) = rest.split_once('/').unwrap_or((rest, "aos-test"));
        let endpoints: Vec<String> = hosts.split(',').map(|host| format!("http://{host}")).collect();
        let admin = etcd_client::Client::connect(&endpoints, None)
            .await
            .unwrap_or_else(|e| panic!("{ETCD_URL_VAR}={base_url} is set but unreachable: {e}"));
        let prefix = format!("{}/{test}-{}", base_prefix.trim_end_matches('/'), Incarnation::random());
        let url = format!("etcd://{hosts}/{prefix}");
        Some(TestDb::Etcd(Box::new(EtcdDb { url, prefix, admin })))
    }

    async fn finish(self) {
        #[cfg(feature = "postgres")]
        if let TestDb::Postgres(pg) = &self {
            pg.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", pg.schema)).await.expect("drop schema");
        }
        #[cfg(all(feature = "etcd", aos_etcd))]
        if let TestDb::Etcd(etcd) = self {
            let mut admin = etcd.admin.clone();
            let everything = Some(etcd_client::DeleteOptions::new().with_prefix());
            admin.delete(format!("{}/", etcd.prefix), everything).await.expect("delete the test's prefix");
        }
    }

    fn url(&self) -> String {
        match self {
            TestDb::Memory(_) => "memory".to_owned(),
            #[cfg(feature = "sqlite")]
            TestDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            // The test's schema first on the search path, and as application
            // name so the test can find its connections.
            #[cfg(feature = "postgres")]
            TestDb::Postgres(pg) => {
                let separator = if pg.base_url.contains('?') { '&' } else { '?' };
                format!(
                    "{}{separator}options=-csearch_path%3D{schema}&application_name={schema}",
                    pg.base_url,
                    schema = pg.schema
                )
            }
            #[cfg(all(feature = "etcd", aos_etcd))]
            TestDb::Etcd(etcd) => etcd.url.clone(),
        }
    }

    /// A new connection to the database, behind the trait, opened by URL
    /// as a program would (memory: a handle on the same rows).
    async fn connect(&self) -> Arc<dyn Registry> {
        match self {
            TestDb::Memory(memory) => Arc::new(memory.clone()),
            #[cfg(all(feature = "etcd", aos_etcd))]
            TestDb::Etcd(etcd) => Arc::new(Synced(
                EtcdRegistry::connect(&etcd.url).await.unwrap_or_else(|e| panic!("open {}: {e}", etcd.url)),
            )),
            #[allow(unreachable_patterns)]
            _ => {
                let url = self.url();
                registry::open(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}"))
            }
        }
    }

    /// Makes the row of `id` look `age` old, through a connection of its own.
    async fn age(&self, id: u32, age: Duration) {
        let found = match self {
            TestDb::Memory(memory) => Ok::<bool, String>(memory.set_heartbeat_age(InstanceId(id), age)),
            // By the database's clock, as the registry ages rows.
            #[cfg(feature = "sqlite")]
            TestDb::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open the test file directly");
                conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
                let sql = format!(
                    "UPDATE {} SET heartbeat_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) - ?2 WHERE id = ?1",
                    registry::MEMBERS_TABLE
                );
                let age_ms = i64::try_from(age.as_millis()).expect("an age in range");
                conn.execute(&sql, rusqlite::params![id, age_ms]).map(|n| n > 0).map_err(|e| e.to_string())
            }
            #[cfg(feature = "postgres")]
            TestDb::Postgres(pg) => {
                let sql = format!(
                    "UPDATE {}.{} SET heartbeat_at = now() - $2::float8 * INTERVAL '1 second' WHERE id = $1",
                    pg.schema,
                    registry::POSTGRES_MEMBERS_TABLE
                );
                pg.admin
                    .execute(&sql, &[&i64::from(id), &age.as_secs_f64()])
                    .await
                    .map(|n| n > 0)
                    .map_err(|e| e.to_string())
            }
            // etcd ages by its own clock, which no one can set back: a key
            // younger than its lease ages for real; one meant to be older
            // than its lease is what etcd makes of it, gone with its lease.
            #[cfg(all(feature = "etcd", aos_etcd))]
            TestDb::Etcd(etcd) => {
                let key = format!("{}/members_v1/{id:010}", etcd.prefix);
                let mut admin = etcd.admin.clone();
                let found =
                    admin.get(key, None).await.expect("read the key").kvs().first().map(|kv| kv.lease());
                match found {
                    Some(lease) if age >= TTL => {
                        admin.lease_revoke(lease).await.expect("revoke its lease");
                        Ok(true)
                    }
                    Some(_) => {
                        tokio::time::sleep(age).await;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        };
        assert!(found.expect("age the row"), "row {id} exists");
    }

    /// Runs `sql` on the database directly (SQL backends only).
    async fn raw(&self, sql: &str) {
        match self {
            TestDb::Memory(_) => panic!("the memory registry has no SQL"),
            #[cfg(all(feature = "etcd", aos_etcd))]
            TestDb::Etcd(_) => panic!("etcd has no SQL"),
            #[cfg(feature = "sqlite")]
            TestDb::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open the test file directly");
                conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
                conn.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            #[cfg(feature = "postgres")]
            TestDb::Postgres(pg) => pg
                .admin
                .batch_execute(&format!("SET search_path = {}; {sql}; RESET search_path", pg.schema))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

fn endpoint(text: &str) -> Endpoint {
    Endpoint::from_str(text).expect("test endpoint")
}

fn heartbeat(id: u32, host: &str, connected: u32) -> Heartbeat {
    Heartbeat {
        id: InstanceId(id),
        endpoint: endpoint(&format!("AOS{id:02}@{host}:2712")),
        cluster: Some("c".to_owned()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(connected, 100),
    }
}

async fn members(registry: &dyn Registry, cluster: Option<&str>) -> Vec<MemberRecord> {
    registry.snapshot(cluster, MemberTiming::with_ttl(TTL)).await.expect("snapshot")
}

/// Opens the registry at `url(port)` against a server on `port` that accepts
/// connections and never answers: asserts that the open fails as "cannot
/// open", and says how long that took.
#[cfg(any(feature = "postgres", all(feature = "etcd", aos_etcd)))]
async fn open_fails_against_a_silent_server(url: impl FnOnce(u16) -> String) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = tokio::time::Instant::now();
    let result = registry::open(&url(port)).await;
    let took = started.elapsed();
    silent.abort();
    match result {
        Err(RegistryError::Backend { message, .. }) => {
            assert!(message.starts_with("cannot open"), "{message}")
        }
        other => panic!("expected an open error, got {:?}", other.map(|_| ())),
    }
    took
}

fn ids(members: &[MemberRecord]) -> Vec<u32> {
    members.iter().map(|m| m.id.0).collect()
}

fn assert_in_use(result: Result<(), RegistryError>, id: u32, older_than: Duration, younger_than: Duration) {
    match result {
        Err(RegistryError::IdInUse { id: got, age, .. }) => {
            assert_eq!(got, InstanceId(id));
            assert!(
                older_than <= age && age < younger_than,
                "age {age:?} not in {older_than:?}..{younger_than:?}"
            );
        }
        other => panic!("expected IdInUse for {id}, got {other:?}"),
    }
}

#[cfg(all(feature = "etcd", aos_etcd))]
mod etcd;
#[cfg(all(feature = "etcd", feature = "tls", aos_etcd))]
mod etcd_tls;
#[cfg(feature = "postgres")]
mod late;
#[path = "../log_capture/mod.rs"]
mod log_capture;
mod outside;
#[cfg(feature = "postgres")]
mod postgres;
mod quiet;
mod suite;
mod urls;

use suite::settled_members;
#[cfg(all(feature = "etcd", aos_etcd))]
use suite::Synced;
