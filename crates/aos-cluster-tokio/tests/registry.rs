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

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
#[cfg(feature = "postgres")]
use aos_cluster_tokio::registry::PostgresRegistry;
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

/// Every log line of this test binary (one global subscriber: the registries
/// log from tokio's blocking threads, which a per-thread one would miss).
/// Tests look for lines naming their own file or row.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(logs))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged_lines(needle: &str) -> Vec<String> {
    let logs = logs().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&logs).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
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
            TestDb::Memory(memory) => memory.age_row_for_tests(InstanceId(id), age).await,
            #[cfg(feature = "sqlite")]
            TestDb::Sqlite { .. } => {
                SqliteRegistry::open(&self.url())
                    .await
                    .expect("open")
                    .age_row_for_tests(InstanceId(id), age)
                    .await
            }
            #[cfg(feature = "postgres")]
            TestDb::Postgres(_) => {
                PostgresRegistry::connect(&self.url())
                    .await
                    .expect("connect")
                    .age_row_for_tests(InstanceId(id), age)
                    .await
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
    registry.snapshot(cluster, TTL).await.expect("snapshot")
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

// ---- the suite: every function runs once per backend -------------------------------

async fn register_then_snapshot_round_trips(db: &TestDb) {
    let registry = db.connect().await;
    let hb = Heartbeat {
        role: Role::LoadBalancerOnly,
        accepting: false,
        workload: Workload::new(u32::MAX, u32::MAX),
        ..heartbeat(u32::MAX, "aos1.contoso.com", 0)
    };
    registry.register(&hb, A, TTL).await.expect("register");
    let other = Heartbeat { endpoint: endpoint("[fe80::1]:2713"), ..heartbeat(7, "x", 3) };
    registry.register(&other, B, TTL).await.expect("register another id");
    let lonely = Heartbeat { cluster: None, ..heartbeat(8, "y", 0) };
    registry.register(&lonely, B, TTL).await.expect("register one in no cluster");

    let read = members(&*registry, Some("c")).await;
    assert_eq!(ids(&read), [7, u32::MAX], "ordered by id, one cluster");
    let m = &read[1];
    assert_eq!(
        (m.id, &m.endpoint, m.role, m.accepting, m.workload),
        (hb.id, &hb.endpoint, hb.role, hb.accepting, hb.workload)
    );
    assert!(m.heartbeat_age < Duration::from_secs(5), "a fresh row is {:?} old", m.heartbeat_age);
    assert_eq!(read[0].endpoint, other.endpoint);
    assert_eq!(ids(&members(&*registry, None).await), [8], "None selects the rows of no cluster");
    assert!(members(&*registry, Some("C")).await.is_empty(), "cluster names compare exactly");

    // A heartbeat of the same incarnation rewrites the figures.
    let busier = Heartbeat { workload: Workload::new(5, 100), ..other.clone() };
    registry.heartbeat(&busier, B).await.expect("heartbeat");
    assert_eq!(members(&*registry, Some("c")).await[0].workload, Workload::new(5, 100));
    // Registering again with the same incarnation (a retried start) is fine.
    registry.register(&other, B, TTL).await.expect("same incarnation registers again");
}

async fn a_live_row_of_another_incarnation_is_refused(db: &TestDb) {
    let first = db.connect().await;
    let second = db.connect().await;
    first.register(&heartbeat(1, "first", 1), A, TTL).await.expect("first start");
    db.age(1, Duration::from_secs(10)).await;

    assert_in_use(
        second.register(&heartbeat(1, "second", 2), B, TTL).await,
        1,
        Duration::from_secs(10),
        Duration::from_secs(15),
    );
    let read = members(&*first, Some("c")).await;
    assert_eq!(read[0].endpoint, endpoint("AOS01@first:2712"), "the refused start wrote nothing");
    assert_eq!(read[0].workload, Workload::new(1, 100));
    first.heartbeat(&heartbeat(1, "first", 1), A).await.expect("the owner keeps heartbeating");
}

async fn a_stale_row_is_taken_over_and_its_owner_is_superseded(db: &TestDb) {
    let old = db.connect().await;
    let new = db.connect().await;
    old.register(&heartbeat(1, "old", 1), A, TTL).await.expect("first start");
    db.age(1, TTL + Duration::from_secs(1)).await;

    new.register(&heartbeat(1, "new", 2), B, TTL).await.expect("a stale row is taken over");
    let read = members(&*new, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    assert!(read[0].heartbeat_age < Duration::from_secs(5), "{:?}", read[0].heartbeat_age);

    // The crashed predecessor comes back to life: it may not write.
    match old.heartbeat(&heartbeat(1, "old", 9), A).await {
        Err(RegistryError::Superseded { id }) => assert_eq!(id, InstanceId(1)),
        other => panic!("expected Superseded, got {other:?}"),
    }
    assert!(!old.remove(InstanceId(1), A).await.expect("remove"), "not its row any more");
    let read = members(&*new, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    new.heartbeat(&heartbeat(1, "new", 3), B).await.expect("the new owner heartbeats");
}

async fn remove_touches_only_its_own_incarnation(db: &TestDb) {
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "a", 0), A, TTL).await.expect("register");
    registry.register(&heartbeat(2, "b", 0), B, TTL).await.expect("register");
    assert!(!registry.remove(InstanceId(1), B).await.expect("remove"), "wrong incarnation");
    assert!(!registry.remove(InstanceId(99), A).await.expect("remove"), "no such row");
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1, 2]);

    assert!(registry.remove(InstanceId(1), A).await.expect("remove"));
    assert!(!registry.remove(InstanceId(1), A).await.expect("remove again"), "already gone");
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2]);
    match registry.heartbeat(&heartbeat(1, "a", 0), A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("a heartbeat after removal must not recreate the row: {other:?}"),
    }
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2]);
}

async fn rows_older_than_ten_ttl_are_left_out_then_purged(db: &TestDb) {
    let registry = db.connect().await;
    for id in 1..=3 {
        registry.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    let elsewhere = Heartbeat { cluster: Some("d".to_owned()), ..heartbeat(4, "h", 0) };
    registry.register(&elsewhere, A, TTL).await.expect("register");
    db.age(2, PURGE + Duration::from_secs(1)).await;
    db.age(3, PURGE - Duration::from_secs(60)).await;
    db.age(4, PURGE + Duration::from_secs(1)).await;

    let read = members(&*registry, Some("c")).await;
    assert_eq!(ids(&read), [1, 3], "the row past 10 x member_ttl is left out, the merely stale one stays");
    let age = read[1].heartbeat_age;
    assert!(Duration::from_secs(240) <= age && age < Duration::from_secs(245), "stale row: {age:?}");
    // A snapshot only reads: the old row is still there, holding its id.
    let patient = Duration::from_secs(3600);
    assert_in_use(
        registry.register(&heartbeat(2, "h", 0), B, patient).await,
        2,
        PURGE,
        PURGE + Duration::from_secs(5),
    );

    assert_eq!(registry.purge(Some("c"), PURGE).await.expect("purge"), 1, "one statement deletes it");
    assert_eq!(registry.purge(Some("c"), PURGE).await.expect("purge again"), 0, "idempotent");
    // Deleted, not just hidden: any incarnation may claim the id now, even
    // with a TTL that would still count the old row as live.
    registry.register(&heartbeat(2, "h", 0), B, patient).await.expect("the purged id is free");
    // A purge deletes only its own cluster's rows.
    assert_in_use(registry.register(&elsewhere, B, patient).await, 4, PURGE, PURGE + Duration::from_secs(5));
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1, 2, 3]);
}

/// A starting process that found the row's holder gone takes the row from
/// exactly that holder: not from a third process that claimed it meanwhile.
async fn take_over_replaces_only_the_named_holder(db: &TestDb) {
    let old = db.connect().await;
    let new = db.connect().await;
    const C: Incarnation = Incarnation(7);
    old.register(&heartbeat(1, "old", 1), A, TTL).await.expect("first start");
    match new.register(&heartbeat(1, "new", 2), B, TTL).await {
        Err(RegistryError::IdInUse { holder, endpoint, .. }) => {
            assert_eq!(holder, A, "names the holder");
            assert_eq!(endpoint, "AOS01@old:2712", "and where to ask it");
        }
        other => panic!("expected IdInUse, got {other:?}"),
    }
    // The wrong holder named: refused, nothing written.
    match new.take_over(&heartbeat(1, "new", 2), B, C).await {
        Err(RegistryError::IdInUse { holder, .. }) => assert_eq!(holder, A),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    assert_eq!(members(&*new, Some("c")).await[0].endpoint, endpoint("AOS01@old:2712"));

    new.take_over(&heartbeat(1, "new", 2), B, A).await.expect("the named holder's row is taken over");
    let read = members(&*old, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    match old.heartbeat(&heartbeat(1, "old", 9), A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("the old holder is superseded, got {other:?}"),
    }
    new.heartbeat(&heartbeat(1, "new", 3), B).await.expect("the new holder heartbeats");
    // No row at all: taking over is a plain claim.
    new.take_over(&heartbeat(5, "new", 0), B, A).await.expect("a free id");
    assert_eq!(ids(&members(&*new, Some("c")).await), [1, 5]);
}

/// A member_ttl whose sixth, the age at which a PostgreSQL replica reads
/// what changed, is short enough to wait out in a test.
const SHORT_TTL: Duration = Duration::from_millis(1_200);

/// A snapshot that sees every change committed before it: past the replica's
/// refresh interval (`SHORT_TTL / 6`).
async fn settled_members(registry: &dyn Registry, cluster: Option<&str>) -> Vec<MemberRecord> {
    tokio::time::sleep(SHORT_TTL / 6 + Duration::from_millis(20)).await;
    registry.snapshot(cluster, SHORT_TTL).await.expect("snapshot")
}

/// Changes made through one handle show in another's next snapshot once its
/// replica is due a read: updates, new rows and removals (the incremental
/// read misses none of them).
async fn every_change_shows_in_the_next_snapshot(db: &TestDb) {
    let writer = db.connect().await;
    let reader = db.connect().await;
    for id in 1..=20 {
        writer.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    assert_eq!(members(&*reader, Some("c")).await.len(), 20);
    for round in 1..=5u32 {
        for id in round..=20u32 {
            if (id + round) % 3 == 0 {
                writer.heartbeat(&heartbeat(id, "h", round * 100 + id), A).await.expect("heartbeat");
            }
        }
        writer.register(&heartbeat(100 + round, "h", 0), A, TTL).await.expect("a newcomer");
        assert!(writer.remove(InstanceId(round), A).await.expect("remove"));
        let read = settled_members(&*reader, Some("c")).await;
        let expected: Vec<u32> = (round + 1..=20).chain(101..=100 + round).collect();
        assert_eq!(ids(&read), expected, "round {round}");
        for m in read.iter().filter(|m| m.id.0 <= 20 && (m.id.0 + round) % 3 == 0) {
            assert_eq!(m.workload.connected, round * 100 + m.id.0, "round {round}, row {}", m.id);
        }
    }
}

async fn concurrent_registers_of_one_id_have_one_winner(db: &TestDb) {
    let a = db.connect().await;
    let b = db.connect().await;
    for round in 0..10u32 {
        let id = 100 + round;
        let (hb_a, hb_b) = (heartbeat(id, "a", 0), heartbeat(id, "b", 0));
        let (won_a, won_b) = tokio::join!(
            tokio::spawn({
                let (a, hb) = (Arc::clone(&a), hb_a.clone());
                async move { a.register(&hb, A, TTL).await }
            }),
            tokio::spawn({
                let (b, hb) = (Arc::clone(&b), hb_b.clone());
                async move { b.register(&hb, B, TTL).await }
            }),
        );
        let (won_a, won_b) = (won_a.expect("task a"), won_b.expect("task b"));
        let winner = match (&won_a, &won_b) {
            (Ok(()), Err(RegistryError::IdInUse { .. })) => &hb_a,
            (Err(RegistryError::IdInUse { .. }), Ok(())) => &hb_b,
            other => panic!("round {round}: exactly one must win, got {other:?}"),
        };
        // Read as a process starting now would (a replica may lag behind the other handle's win).
        let read = members(&*db.connect().await, Some("c")).await;
        let row = read.iter().find(|m| m.id.0 == id).expect("the winner's row");
        assert_eq!(row.endpoint, winner.endpoint, "round {round}");
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::TestDb::memory()).await;
                }
            )*
        }

        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::TestDb::sqlite()).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = super::TestDb::postgres(stringify!($test)).await else { return };
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_every_backend!(
    register_then_snapshot_round_trips,
    a_live_row_of_another_incarnation_is_refused,
    a_stale_row_is_taken_over_and_its_owner_is_superseded,
    remove_touches_only_its_own_incarnation,
    rows_older_than_ten_ttl_are_left_out_then_purged,
    take_over_replaces_only_the_named_holder,
    every_change_shows_in_the_next_snapshot,
    concurrent_registers_of_one_id_have_one_winner,
);

/// The suite on etcd: all of it but the purge of rows older than
/// `10 x member_ttl`, which etcd never holds (a key goes when its lease
/// expires: `etcd::a_member_that_stops_heartbeating_disappears_when_its_lease_expires`).
#[cfg(all(feature = "etcd", aos_etcd))]
mod etcd_suite {
    macro_rules! on_etcd {
        ($($test:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = super::TestDb::etcd(stringify!($test)).await else { return };
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        };
    }

    on_etcd!(
        register_then_snapshot_round_trips,
        a_live_row_of_another_incarnation_is_refused,
        a_stale_row_is_taken_over_and_its_owner_is_superseded,
        remove_touches_only_its_own_incarnation,
        take_over_replaces_only_the_named_holder,
        every_change_shows_in_the_next_snapshot,
        concurrent_registers_of_one_id_have_one_winner,
    );
}

/// An etcd registry whose snapshots first [`EtcdRegistry::sync`]: the suite
/// reads right after another handle wrote, and a replica learns of other
/// processes' writes through its watch, milliseconds later. `sync` (one
/// progress request on the watch) makes that wait exact; the etcd tests below
/// check the replica without it.
#[cfg(all(feature = "etcd", aos_etcd))]
struct Synced(EtcdRegistry);

#[cfg(all(feature = "etcd", aos_etcd))]
impl Registry for Synced {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.register(heartbeat, incarnation, member_ttl)
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.heartbeat(heartbeat, incarnation)
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.take_over(heartbeat, incarnation, previous)
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            self.0.sync().await?;
            self.0.snapshot(cluster, member_ttl).await
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        self.0.purge(cluster, older_than)
    }

    fn malformed_rows(&self) -> u64 {
        self.0.malformed_rows()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        self.0.remove(id, incarnation)
    }
}

// ---- SQL backends: rows written behind the registry's back ---------------------------

impl TestDb {
    /// The member table of this backend.
    fn table(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            TestDb::Postgres(_) => registry::POSTGRES_MEMBERS_TABLE,
            _ => registry::MEMBERS_TABLE,
        }
    }
}

/// `ahead` is SQL that moves row `{id}`'s heartbeat forward by `{by}`
/// seconds (per backend).
async fn heartbeats_from_the_future(db: &TestDb, ahead: &str) {
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    registry.register(&heartbeat(2, "h", 0), A, TTL).await.expect("register");
    let ahead = |id: u32, by: u64| {
        ahead.replace("{table}", db.table()).replace("{id}", &id.to_string()).replace("{by}", &by.to_string())
    };
    // A clock that stepped back a little: age zero.
    db.raw(&ahead(1, 10)).await;
    // Beyond member_ttl: such a row would never age out.
    db.raw(&ahead(2, 3600)).await;
    let before = registry.malformed_rows();
    let read = members(&*registry, Some("c")).await;
    assert_eq!(ids(&read), [1], "the row an hour ahead is skipped");
    assert_eq!(read[0].heartbeat_age, Duration::ZERO);
    assert_eq!(registry.malformed_rows(), before + 1, "and counted");
}

async fn rows_that_do_not_parse_are_skipped_counted_and_logged_once(db: &TestDb, test: &str) {
    let registry = db.connect().await;
    // Ids unique to this test, so the log lines it looks for are its own.
    let base = if test.starts_with("sqlite") { 1_000 } else { 2_000 };
    for id in base..base + 4 {
        registry.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    let table = db.table();
    db.raw(&format!(
        "UPDATE {table} SET endpoint = 'aos2:99999' WHERE id = {};
         UPDATE {table} SET role = 'emperor' WHERE id = {};
         UPDATE {table} SET connected = -1 WHERE id = {}",
        base + 1,
        base + 2,
        base + 3
    ))
    .await;
    let before = registry.malformed_rows();
    for _ in 0..3 {
        assert_eq!(ids(&members(&*registry, Some("c")).await), [base], "bad rows do not fail the snapshot");
    }
    assert_eq!(registry.malformed_rows(), before + 9, "three rows, three snapshots");
    for (id, reason) in [(base + 1, "aos2:99999"), (base + 2, "emperor"), (base + 3, "connected -1")] {
        let lines = logged_lines(&format!("registry row id {id} skipped"));
        assert_eq!(lines.len(), 1, "one warning per bad row, not one per snapshot: {lines:?}");
        assert!(lines[0].contains("WARN") && lines[0].contains(reason), "{}", lines[0]);
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_heartbeats_from_the_future() {
    let db = TestDb::sqlite();
    heartbeats_from_the_future(
        &db,
        "UPDATE {table} SET heartbeat_at = heartbeat_at + {by} * 1000 WHERE id = {id}",
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_heartbeats_from_the_future() {
    let Some(db) = TestDb::postgres("future").await else { return };
    let sql = "UPDATE {table} SET heartbeat_at = heartbeat_at + {by} * INTERVAL '1 second' WHERE id = {id}";
    heartbeats_from_the_future(&db, sql).await;
    db.finish().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_rows_that_do_not_parse_are_skipped_counted_and_logged_once() {
    logs();
    rows_that_do_not_parse_are_skipped_counted_and_logged_once(&TestDb::sqlite(), "sqlite").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_rows_that_do_not_parse_are_skipped_counted_and_logged_once() {
    logs();
    let Some(db) = TestDb::postgres("skipped").await else { return };
    rows_that_do_not_parse_are_skipped_counted_and_logged_once(&db, "postgres").await;
    db.finish().await;
}

/// SQLite's columns take any type: text in `accepting`, a blob as the
/// endpoint, a real as the id. Each such row is skipped and counted; the
/// others are read.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_values_of_the_wrong_type_skip_their_row_only() {
    let db = TestDb::sqlite();
    let registry = db.connect().await;
    for id in 1..=4 {
        registry.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    db.raw(
        "UPDATE aos_members_v1 SET accepting = 'maybe' WHERE id = 2;
         UPDATE aos_members_v1 SET endpoint = x'00ff' WHERE id = 3;
         UPDATE aos_members_v1 SET max_sessions = 'lots' WHERE id = 4",
    )
    .await;
    let before = registry.malformed_rows();
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1]);
    assert_eq!(registry.malformed_rows(), before + 3);
    db.raw("UPDATE aos_members_v1 SET accepting = 1 WHERE id = 2").await;
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1, 2], "a mended row is read again");
}

/// A column altered to another type by hand: every row fails to read that
/// column; each is skipped and counted, the snapshot itself succeeds, and
/// the registry keeps working for writes.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_column_of_the_wrong_type_skips_rows_without_failing() {
    let Some(db) = TestDb::postgres("wrongtype").await else { return };
    let registry = db.connect().await;
    for id in 1..=3 {
        registry.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    let table = db.table();
    db.raw(&format!(
        "ALTER TABLE {table} ALTER COLUMN accepting TYPE text; UPDATE {table} SET accepting = 'maybe'"
    ))
    .await;
    let reader = db.connect().await;
    let read = reader.snapshot(Some("c"), TTL).await.expect("the snapshot does not fail");
    assert!(read.is_empty(), "{read:?}");
    assert_eq!(reader.malformed_rows(), 3);
    db.finish().await;
}

// ---- SQLite: the file --------------------------------------------------------------------

/// The first call after the file was lost fails loudly, naming the file and
/// what happened (logged once); the registry then follows the path: the next
/// calls work on the file there, where our row is gone (a heartbeat is
/// `Superseded`, so the server registers again).
#[cfg(feature = "sqlite")]
async fn assert_fails_once_loudly_then_follows_the_path(
    registry: &dyn Registry,
    path: &std::path::Path,
    what: &str,
) {
    let hb = heartbeat(1, "h", 0);
    match registry.snapshot(Some("c"), TTL).await {
        Err(RegistryError::Backend { message, .. }) => {
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(what), "{message}");
        }
        other => panic!("expected the loud backend error, got {other:?}"),
    }
    let lines = logged_lines(&format!("THE REGISTRY DATABASE FILE {} WAS", path.display()));
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    match registry.heartbeat(&hb, A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("our row is not in the file at the path: {other:?}"),
    }
    registry.register(&hb, A, TTL).await.expect("registers again in the file at the path");
    assert_eq!(ids(&members(registry, Some("c")).await), [1]);
    // A process starting now opens the same file and sees the row.
    let newcomer = SqliteRegistry::open(&format!("sqlite://{}", path.display())).await.expect("open");
    assert_eq!(ids(&members(&newcomer, Some("c")).await), [1], "one file for everyone again");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file_deleted_fails_once_then_follows_the_path() {
    logs();
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    std::fs::remove_file(path).expect("delete the file");
    assert_fails_once_loudly_then_follows_the_path(&*registry, path, "DELETED").await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file_replaced_fails_once_then_follows_the_path() {
    logs();
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");

    // Another registry file (say, restored from elsewhere) moved over the path.
    let other = TestDb::sqlite();
    let TestDb::Sqlite { path: other_path, .. } = &other else { unreachable!() };
    other.connect().await.register(&heartbeat(2, "other", 0), B, TTL).await.expect("register");
    std::fs::rename(other_path, path).expect("move the other file over");
    match registry.snapshot(Some("c"), TTL).await {
        Err(RegistryError::Backend { message, .. }) => assert!(message.contains("REPLACED"), "{message}"),
        other => panic!("expected the loud backend error, got {other:?}"),
    }
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2], "the file at the path now");
}

/// Same inode, other contents (a backup copied over the file in place): the
/// device and inode still match, the registry id written into the file does
/// not.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file_overwritten_in_place_fails_once_then_follows_the_path() {
    logs();
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");

    let other = TestDb::sqlite();
    let TestDb::Sqlite { path: other_path, .. } = &other else { unreachable!() };
    let writer = other.connect().await;
    writer.register(&heartbeat(2, "other", 0), B, TTL).await.expect("register");
    drop(writer);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("stat"));
    std::fs::copy(other_path, path).expect("copy the other file over, in place");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("stat")), inode);
    match registry.snapshot(Some("c"), TTL).await {
        Err(RegistryError::Backend { message, .. }) => assert!(message.contains("REPLACED"), "{message}"),
        other => panic!("expected the loud backend error, got {other:?}"),
    }
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2], "the file at the path now");
}

/// Truncated to nothing in place: no crash (no shared-memory map to fault
/// on), one loud error, then the registry works in the emptied file.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file_truncated_fails_once_then_follows_the_path() {
    logs();
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(0)).expect("truncate");
    assert_fails_once_loudly_then_follows_the_path(&*registry, path, "EMPTIED").await;
}

/// No shared-memory file anywhere: the rollback journal, so no process
/// maps a file another can truncate under it.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_two_handles_on_one_file_share_rows_without_shared_memory() {
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let first = db.connect().await;
    let second = db.connect().await;
    first.register(&heartbeat(1, "a", 0), A, TTL).await.expect("register");
    second.register(&heartbeat(2, "b", 0), B, TTL).await.expect("register");
    assert_eq!(ids(&members(&*first, Some("c")).await), [1, 2]);
    let conn = rusqlite::Connection::open(path).expect("open directly");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal mode");
    assert_eq!(mode, "delete");
    assert!(!std::path::Path::new(&format!("{}-shm", path.display())).exists(), "no -shm file");
    let incarnation: i64 = conn
        .query_row("SELECT incarnation FROM aos_members_v1 WHERE id = 1", [], |row| row.get(0))
        .expect("the row");
    assert_eq!(incarnation as u64, A.0, "the incarnation is stored as the i64 of the same bits");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_in_memory_works_and_is_private() {
    let first = registry::open("sqlite::memory:").await.expect("memory");
    let second = registry::open("sqlite::memory:").await.expect("memory");
    first.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    assert_eq!(ids(&members(&*first, Some("c")).await), [1]);
    assert!(members(&*second, Some("c")).await.is_empty());
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_in_a_missing_directory_fails_at_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/missing/registry.db", dir.path().display());
    match registry::open(&url).await {
        Err(RegistryError::Backend { url: shown, message }) => {
            assert_eq!(shown, url);
            assert!(message.contains("unable to open database file"), "{message}");
        }
        other => panic!("{url}: {:?}", other.map(|_| ())),
    }
}

/// Another process holds the write lock: reads still answer at once (WAL),
/// a write fails within its deadline, and meanwhile the async runtime (one
/// thread here) keeps running other tasks: the blocking call is elsewhere.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "current_thread")]
async fn sqlite_locked_file_fails_writes_on_time_without_blocking_the_runtime() {
    let db = TestDb::sqlite();
    let TestDb::Sqlite { path, .. } = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let holder = rusqlite::Connection::open(path).expect("open directly");
    holder.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");

    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let started = tokio::time::Instant::now();
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1], "a read does not wait for the writer");
    assert!(started.elapsed() < Duration::from_secs(1), "read took {:?}", started.elapsed());

    let started = tokio::time::Instant::now();
    let result = registry.heartbeat(&heartbeat(1, "h", 1), A).await;
    let took = started.elapsed();
    ticker.abort();
    match result {
        Err(RegistryError::Backend { message, .. }) => assert!(message.contains("locked"), "{message}"),
        other => panic!("expected a locked-database error, got {other:?}"),
    }
    assert!(Duration::from_secs(3) < took && took < Duration::from_secs(7), "failed after {took:?}");
    let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ticked > 100, "the runtime ran other tasks only {ticked} times in {took:?}");

    holder.execute_batch("ROLLBACK").expect("release");
    registry.heartbeat(&heartbeat(1, "h", 2), A).await.expect("writes work again");
}

// ---- PostgreSQL: the connection --------------------------------------------------------

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_reconnects_after_losing_its_connection() {
    let Some(db) = TestDb::postgres("reconnects").await else { return };
    let TestDb::Postgres(pg) = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let killed: i64 = pg
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&pg.schema],
        )
        .await
        .expect("terminate backends")
        .get(0);
    assert_eq!(killed, 1);

    // The call that meets the dead connection may fail (with an error, never
    // a panic); the next one reconnects and finds the row still there.
    let mut recovered = None;
    for attempt in 0..20 {
        match registry.snapshot(Some("c"), TTL).await {
            Ok(read) => {
                recovered = Some((attempt, read));
                break;
            }
            Err(e) => {
                assert!(matches!(e, RegistryError::Backend { .. }), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (attempt, read) = recovered.expect("the registry reconnects within a second");
    assert!(attempt <= 1, "one failed call at most, took {attempt}");
    assert_eq!(ids(&read), [1]);
    registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat after reconnecting");
    db.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unreachable_postgres_fails_at_start_without_showing_the_password() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://aos:secret@127.0.0.1:{port}/aos");
    match registry::open(&url).await {
        Err(e @ RegistryError::Backend { .. }) => {
            let message = e.to_string();
            assert!(
                message
                    .starts_with(&format!("registry postgres://aos:***@127.0.0.1:{port}/aos: cannot open")),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A server that accepts the connection and never answers: opening fails
/// within its deadline instead of hanging.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_silent_postgres_server_fails_the_open_on_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = tokio::time::Instant::now();
    let result = registry::open(&format!("postgres://aos@127.0.0.1:{port}/aos")).await;
    let took = started.elapsed();
    silent.abort();
    match result {
        Err(RegistryError::Backend { message, .. }) => {
            assert!(message.starts_with("cannot open"), "{message}")
        }
        other => panic!("expected an open error, got {:?}", other.map(|_| ())),
    }
    assert!(Duration::from_secs(4) < took && took < Duration::from_secs(8), "failed after {took:?}");
}

// ---- URLs ----------------------------------------------------------------------------------

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

// ---- etcd: leases, the watched replica, values written by hand, outages -----------------

#[cfg(all(feature = "etcd", aos_etcd))]
mod etcd {
    use std::time::Duration;

    use aos_cluster::registry::Heartbeat;
    use aos_cluster::InstanceId;
    use aos_cluster_tokio::registry::{self, EtcdRegistry, Registry, RegistryError, CALL_TIMEOUT};
    use tokio::time::Instant;

    use super::{heartbeat, ids, TestDb, A, B, TTL};

    async fn open(db: &TestDb) -> EtcdRegistry {
        EtcdRegistry::connect(&db.url()).await.unwrap_or_else(|e| panic!("open {}: {e}", db.url()))
    }

    /// Calls `check` every 20 ms until it answers `Some`, for at most
    /// `within`; panics naming `what` if it never does.
    async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(done) = check().await {
                return done;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn live(registry: &EtcdRegistry) {
        eventually(Duration::from_secs(5), "the replica follows etcd", || async {
            registry.replica_is_live().then_some(())
        })
        .await;
    }

    /// A process that stops heartbeating without `remove` (crashed: its
    /// registry dropped) leaves the other processes' snapshots when its lease
    /// expires, seen through the watch; one that keeps heartbeating stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_that_stops_heartbeating_disappears_when_its_lease_expires() {
        let Some(db) = TestDb::etcd("lease").await else { return };
        let short = Duration::from_secs(1);
        let watcher = open(&db).await;
        let alive = open(&db).await;
        alive.register(&heartbeat(2, "alive", 0), B, short).await.expect("register");
        {
            let crashed = open(&db).await;
            crashed.register(&heartbeat(1, "crashed", 0), A, short).await.expect("register");
        }
        let crashed_at = Instant::now();
        watcher.sync().await.expect("sync");
        assert_eq!(ids(&watcher.snapshot(Some("c"), short).await.expect("snapshot")), [1, 2]);
        let reads = watcher.prefix_reads();

        let gone = eventually(Duration::from_secs(15), "the crashed member's key expires", || async {
            alive.heartbeat(&heartbeat(2, "alive", 1), B).await.expect("the live member heartbeats");
            let read = watcher.snapshot(Some("c"), short).await.expect("snapshot");
            (ids(&read) == [2]).then_some(crashed_at.elapsed())
        })
        .await;
        assert!(gone >= short, "gone after {gone:?}: before its lease could expire");
        assert_eq!(watcher.prefix_reads(), reads, "the expiry came through the watch, not a read");
        // Nothing for a purge to do: the lease did it.
        assert_eq!(watcher.purge(Some("c"), Duration::ZERO).await.expect("purge"), 0);
        // The live member's lease was renewed by its heartbeats all along.
        let read = watcher.snapshot(Some("c"), short).await.expect("snapshot");
        assert_eq!(read[0].workload.connected, 1);
        db.finish().await;
    }

    /// Another handle's register, heartbeat and removal reach this handle's
    /// snapshots through its watch, with no read of the prefix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_replica_sees_another_handles_writes_without_reading() {
        let Some(db) = TestDb::etcd("replica").await else { return };
        let reader = open(&db).await;
        let writer = open(&db).await;
        live(&reader).await;
        assert!(reader.snapshot(Some("c"), TTL).await.expect("snapshot").is_empty());
        let reads = reader.prefix_reads();
        let snapshot = || async { reader.snapshot(Some("c"), TTL).await.expect("snapshot") };

        writer.register(&heartbeat(7, "w", 0), A, TTL).await.expect("register");
        let read = eventually(Duration::from_secs(5), "the new key", || async {
            let read = snapshot().await;
            (!read.is_empty()).then_some(read)
        })
        .await;
        assert_eq!(ids(&read), [7]);
        assert!(read[0].heartbeat_age < Duration::from_secs(1), "{:?}", read[0].heartbeat_age);

        writer.heartbeat(&heartbeat(7, "w", 5), A).await.expect("heartbeat");
        eventually(Duration::from_secs(5), "the new figures", || async {
            (snapshot().await.first().map(|m| m.workload.connected) == Some(5)).then_some(())
        })
        .await;

        assert!(writer.remove(InstanceId(7), A).await.expect("remove"));
        eventually(Duration::from_secs(5), "the removal", || async {
            snapshot().await.is_empty().then_some(())
        })
        .await;
        assert_eq!(reader.prefix_reads(), reads, "every change came through the watch");
        db.finish().await;
    }

    /// Keys and values written by hand under the prefix: each bad one is
    /// skipped and counted at every snapshot, never fails it, and holds no id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_written_by_hand_are_skipped_counted_and_hold_no_id() {
        super::logs();
        let Some(db) = TestDb::etcd("by_hand").await else { return };
        let TestDb::Etcd(etcd) = &db else { unreachable!() };
        let registry = open(&db).await;
        registry.register(&heartbeat(3000, "h", 0), A, TTL).await.expect("register");
        let record = |endpoint: &str, accepting: &str, v: u32| {
            format!(
                r#"{{"v":{v},"incarnation":"00000000000000aa","endpoint":"{endpoint}","cluster":"c",
                   "role":"serving","accepting":{accepting},"max_sessions":10,"connected":1}}"#
            )
        };
        let mut admin = etcd.admin.clone();
        let key = |suffix: &str| format!("{}/members_v1/{suffix}", etcd.prefix);
        let lease = admin.lease_grant(30, None).await.expect("lease").id();
        let under_lease = Some(etcd_client::PutOptions::new().with_lease(lease));
        for (suffix, value) in [
            ("0000003001", "not json".to_owned()),
            ("0000003002", record("AOS01@h:2712", r#""yes""#, 1)),
            ("0000003003", record("aos2:99999", "true", 1)),
            ("0000003004", record("AOS01@h:2712", "true", 2)),
            ("junk", record("AOS01@h:2712", "true", 1)),
        ] {
            admin.put(key(suffix), value, under_lease.clone()).await.expect("put by hand");
        }
        // Well formed, but without a lease it would never expire.
        admin.put(key("0000003006"), record("AOS06@h:2712", "true", 1), None).await.expect("put");
        // A well-formed record written by hand under a lease counts like any other.
        admin.put(key("0000003005"), record("AOS05@h:2712", "true", 1), under_lease).await.expect("put");

        registry.sync().await.expect("sync");
        let before = registry.malformed_rows();
        for _ in 0..3 {
            let read = registry.snapshot(Some("c"), TTL).await.expect("bad values do not fail the snapshot");
            assert_eq!(ids(&read), [3000, 3005]);
        }
        assert_eq!(registry.malformed_rows(), before + 18, "six bad keys, three snapshots");
        for (id, reason) in [
            (3001, "not a member record"),
            (3002, "not a member record"),
            (3003, "aos2:99999"),
            (3004, "version 2"),
            (3006, "no lease"),
        ] {
            let lines = super::logged_lines(&format!("registry row id {id} skipped"));
            assert_eq!(lines.len(), 1, "one warning per bad key, not one per snapshot: {lines:?}");
            assert!(lines[0].contains("WARN") && lines[0].contains(reason), "{}", lines[0]);
        }
        // A value nobody can read holds no id: a starting process claims it.
        registry.register(&heartbeat(3001, "h", 0), B, TTL).await.expect("claims the unreadable key");
        registry.sync().await.expect("sync");
        let read = registry.snapshot(Some("c"), TTL).await.expect("snapshot");
        assert_eq!(ids(&read), [3000, 3001, 3005]);
        db.finish().await;
    }

    #[tokio::test]
    async fn an_unreachable_etcd_fails_the_open_on_time_without_showing_the_password() {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("etcd://aos:secret@127.0.0.1:{port}/p");
        let started = Instant::now();
        let result = registry::open(&url).await;
        let took = started.elapsed();
        match result {
            Err(e @ RegistryError::Backend { .. }) => {
                let message = e.to_string();
                let shown = format!("registry etcd://aos:***@127.0.0.1:{port}/p: cannot open");
                assert!(message.starts_with(&shown), "{message}");
                assert!(!message.contains("secret"), "{message}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(took < CALL_TIMEOUT + Duration::from_secs(2), "failed after {took:?}");
    }

    /// A server that accepts connections and never answers: the open fails
    /// within its deadline instead of hanging.
    #[tokio::test]
    async fn a_silent_etcd_fails_the_open_on_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let started = Instant::now();
        let result = registry::open(&format!("etcd://127.0.0.1:{port}/p")).await;
        let took = started.elapsed();
        silent.abort();
        match result {
            Err(RegistryError::Backend { message, .. }) => {
                assert!(message.starts_with("cannot open"), "{message}")
            }
            other => panic!("expected an open error, got {:?}", other.map(|_| ())),
        }
        assert!(took < CALL_TIMEOUT + Duration::from_secs(2), "failed after {took:?}");
    }

    #[tokio::test]
    async fn bad_etcd_urls_are_refused_naming_the_form() {
        for url in ["etcd://", "etcd://host/p", "etcd://host:port/p", "etcd://h:2379/p?x=1"] {
            match registry::open(url).await {
                Err(e @ RegistryError::BadUrl { .. }) => {
                    assert!(e.to_string().contains(&format!("`{url}`")), "{e}")
                }
                other => panic!("{url}: {:?}", other.map(|_| ())),
            }
        }
    }

    /// An etcd server of this test's own, on free loopback ports, stopped
    /// when dropped.
    struct OwnEtcd {
        child: std::process::Child,
        dir: std::path::PathBuf,
        client_port: u16,
        peer_port: u16,
    }

    impl OwnEtcd {
        fn start(dir: &std::path::Path, client_port: u16, peer_port: u16) -> OwnEtcd {
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let child = std::process::Command::new("etcd")
                .args(["--name", "own", "--data-dir"])
                .arg(dir)
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("own={peer}"), "--unsafe-no-fsync"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start etcd (the etcd binary is on the PATH wherever AOS_TEST_ETCD_URL is set)");
            OwnEtcd { child, dir: dir.to_owned(), client_port, peer_port }
        }

        fn url(&self) -> String {
            format!("etcd://127.0.0.1:{}/own", self.client_port)
        }

        fn stop(&mut self) {
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }

    impl Drop for OwnEtcd {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
    }

    /// etcd stops: every call fails with a backend error within its deadline
    /// (once the watch has noticed, snapshots too), none hangs; etcd comes
    /// back: the same registry recovers by itself, its lease and key intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_stopped_fails_calls_on_time_and_restarted_recovers_by_itself() {
        if std::env::var(super::ETCD_URL_VAR).is_err() {
            return; // said by the suite's tests
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = OwnEtcd::start(&dir.path().join("data"), free_port(), free_port());
        let registry = eventually(Duration::from_secs(20), "etcd starts", || async {
            EtcdRegistry::connect(&server.url()).await.ok()
        })
        .await;
        let hb: Heartbeat = heartbeat(1, "h", 0);
        registry.register(&hb, A, TTL).await.expect("register");
        live(&registry).await;
        assert_eq!(ids(&registry.snapshot(Some("c"), TTL).await.expect("snapshot")), [1]);

        server.stop();
        let started = Instant::now();
        let result = registry.heartbeat(&hb, A).await;
        assert!(matches!(result, Err(RegistryError::Backend { .. })), "{result:?}");
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
        eventually(Duration::from_secs(30), "snapshots fail once the watch is broken", || async {
            let started = Instant::now();
            let result = registry.snapshot(Some("c"), TTL).await;
            assert!(
                started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1),
                "took {:?}",
                started.elapsed()
            );
            match result {
                Err(RegistryError::Backend { .. }) => Some(()),
                Ok(read) => {
                    assert_eq!(ids(&read), [1], "the replica's last view until then");
                    None
                }
                Err(other) => panic!("{other}"),
            }
        })
        .await;
        assert!(!registry.replica_is_live());

        let _restarted = OwnEtcd::start(&server.dir, server.client_port, server.peer_port);
        eventually(Duration::from_secs(30), "heartbeats work again", || async {
            registry.heartbeat(&hb, A).await.ok()
        })
        .await;
        live(&registry).await;
        assert_eq!(ids(&registry.snapshot(Some("c"), TTL).await.expect("snapshot")), [1]);
        assert!(registry.remove(InstanceId(1), A).await.expect("remove"), "still its own key");
        assert!(B != A);
    }
}

// ---- PostgreSQL behind PgBouncer (transaction mode) -------------------------------------

/// 40 registries (twice PgBouncer's 20 server connections) register,
/// heartbeat, read incrementally, take over, purge and remove at once
/// through PgBouncer in transaction mode, where consecutive statements of
/// one client run on different server connections: nothing may rely on
/// session state or a statement prepared on a connection. Every call must
/// succeed and every reader must see every row.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_pgbouncer_in_transaction_mode() {
    const VAR: &str = "AOS_TEST_PGBOUNCER_URL";
    let Ok(url) = std::env::var(VAR) else {
        drop(
            std::io::stderr()
                .lock()
                .write_all(format!("pgbouncer test did not run: {VAR} is not set\n").as_bytes()),
        );
        return;
    };
    const N: u32 = 40;
    let cluster = format!("pgbouncer-{}", std::process::id());
    let hb = |id: u32, connected: u32| Heartbeat {
        cluster: Some(cluster.clone()),
        ..heartbeat(60_000 + id, "pgb", connected)
    };
    let mut handles = Vec::new();
    for _ in 0..N {
        handles.push(registry::open(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}")));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, registry) in handles.iter().enumerate() {
        let (registry, id, cluster) = (Arc::clone(registry), i as u32, cluster.clone());
        let (first, later) = (hb(id, 0), hb(id, 5));
        tasks.spawn(async move {
            registry.register(&first, A, TTL).await?;
            for round in 0..5 {
                registry
                    .heartbeat(&Heartbeat { workload: Workload::new(round, 100), ..later.clone() }, A)
                    .await?;
                registry.snapshot(Some(&cluster), TTL).await?;
                registry.purge(Some(&cluster), PURGE).await?;
            }
            registry.heartbeat(&later, A).await?;
            Ok::<_, RegistryError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("every call through PgBouncer succeeds");
    }
    for registry in &handles {
        let read = settled_members(&**registry, Some(&cluster)).await;
        assert_eq!(read.len(), N as usize, "every row, every reader");
        assert!(read.iter().all(|m| m.workload == Workload::new(5, 100)), "the last figures");
    }
    // Take over and removal through it too.
    handles[0].take_over(&hb(1, 7), B, A).await.expect("take over");
    for (i, registry) in handles.iter().enumerate().skip(2) {
        assert!(registry.remove(InstanceId(60_000 + i as u32), A).await.expect("remove"));
    }
    let read = settled_members(&*handles[1], Some(&cluster)).await;
    assert_eq!(ids(&read), [60_000, 60_001]);
    assert_eq!(read[1].workload, Workload::new(7, 100));
    assert!(handles[0].remove(InstanceId(60_000), A).await.expect("remove"));
    assert!(handles[0].remove(InstanceId(60_001), B).await.expect("remove"));
}
