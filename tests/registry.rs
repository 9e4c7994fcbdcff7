//! The registry backends (`examples/support/registry.rs`) against real databases.
//!
//! One suite, run against SQLite (a fresh file per test in the temp directory)
//! and PostgreSQL (a fresh schema per test in the server named by
//! `AOS_TEST_POSTGRES_URL`, which `.ci/postgres.sh` starts and exports). Without
//! that variable the PostgreSQL half says so on the terminal and runs nothing.

#[path = "../examples/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use aos_cluster::endpoint::Endpoint;
use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::workload::{InstanceId, Role, Workload};
use support::registry::{redact_password, Registry, RegistryError};

const POSTGRES_URL_VAR: &str = "AOS_TEST_POSTGRES_URL";

/// A database made for one test, and a way to write to it behind the
/// registry's back (to plant rows the registry itself would never write).
trait TestDb {
    fn url(&self) -> String;
    async fn raw(&self, sql: &str);
}

struct SqliteDb {
    path: PathBuf,
}

impl SqliteDb {
    fn new(test: &str) -> SqliteDb {
        let path = std::env::temp_dir().join(format!("aos-registry-{}-{test}.db", std::process::id()));
        let db = SqliteDb { path };
        db.remove_files();
        db
    }

    fn remove_files(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            drop(std::fs::remove_file(file));
        }
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        self.remove_files();
    }
}

impl TestDb for SqliteDb {
    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn raw(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.path).expect("open the test file directly");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        conn.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

struct PostgresDb {
    base_url: String,
    schema: String,
    admin: tokio_postgres::Client,
}

impl PostgresDb {
    /// A fresh schema named after the test, or `None` (said once per run on
    /// the terminal, past the test harness's capture) without a server.
    async fn new(test: &str) -> Option<PostgresDb> {
        let Ok(base_url) = std::env::var(POSTGRES_URL_VAR) else {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // One write, so the line is not split by the harness's own output.
                let line = format!("postgres registry tests did not run: {POSTGRES_URL_VAR} is not set\n");
                drop(std::io::stderr().lock().write_all(line.as_bytes()));
            });
            return None;
        };
        let (admin, connection) = tokio_postgres::connect(&base_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={base_url} is set but unreachable: {e}"));
        tokio::spawn(connection);
        let schema = format!("aos_test_{test}");
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"))
            .await
            .expect("a fresh schema for the test");
        Some(PostgresDb { base_url, schema, admin })
    }

    async fn finish(self) {
        self.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.expect("drop schema");
    }

    /// Ends every server connection this test's registries hold, as a server
    /// restart or a network cut would; returns how many it ended.
    async fn kill_registry_connections(&self) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.schema],
            )
            .await
            .expect("terminate backends");
        row.get(0)
    }
}

impl TestDb for PostgresDb {
    /// The server's URL with this test's schema first on the search path, and
    /// the schema as application name so the test can find its connections.
    fn url(&self) -> String {
        let separator = if self.base_url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{schema}&application_name={schema}",
            self.base_url,
            schema = self.schema
        )
    }

    async fn raw(&self, sql: &str) {
        self.admin
            .batch_execute(&format!("SET search_path = {}; {sql}; RESET search_path", self.schema))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn endpoint(text: &str) -> Endpoint {
    Endpoint::from_str(text).expect("test endpoint")
}

fn heartbeat(id: u32, cluster: Option<&str>, connected: u32, max_sessions: u32) -> Heartbeat {
    Heartbeat {
        id: InstanceId(id),
        endpoint: endpoint(&format!("AOS{id:02}@aos{id}:2712")),
        cluster: cluster.map(str::to_owned),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(connected, max_sessions),
    }
}

async fn connect(db: &impl TestDb) -> Registry {
    let url = db.url();
    Registry::connect(&url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

async fn read_members(registry: &Registry, cluster: Option<&str>) -> Vec<MemberRecord> {
    let snapshot = registry.snapshot(cluster).await.expect("snapshot");
    assert!(snapshot.skipped.is_empty(), "unexpected skipped rows: {:?}", snapshot.skipped);
    snapshot.members
}

fn ids(members: &[MemberRecord]) -> Vec<u32> {
    members.iter().map(|m| m.id.0).collect()
}

// ---- the suite: every function runs once per backend -------------------------

async fn publish_then_snapshot_returns_the_row(db: &impl TestDb) {
    let registry = connect(db).await;
    let hb = heartbeat(7, Some("prod"), 3, 40);
    registry.publish(&hb).await.expect("publish");

    let members = read_members(&registry, Some("prod")).await;
    assert_eq!(members.len(), 1, "{members:?}");
    let m = &members[0];
    assert_eq!(
        (m.id, &m.endpoint, m.role, m.accepting, m.workload),
        (hb.id, &hb.endpoint, hb.role, hb.accepting, hb.workload)
    );
    assert!(m.heartbeat_age < Duration::from_secs(5), "a fresh heartbeat is {:?} old", m.heartbeat_age);
}

async fn upsert_replaces_the_row(db: &impl TestDb) {
    let registry = connect(db).await;
    registry.publish(&heartbeat(1, Some("prod"), 1, 10)).await.expect("first publish");
    let replacement = Heartbeat {
        endpoint: endpoint("[fe80::1]:2713"),
        role: Role::LoadBalancerOnly,
        accepting: false,
        workload: Workload::new(9, 12),
        ..heartbeat(1, Some("prod"), 0, 0)
    };
    registry.publish(&replacement).await.expect("second publish");

    let members = read_members(&registry, Some("prod")).await;
    assert_eq!(ids(&members), [1], "one row per id");
    let m = &members[0];
    assert_eq!(
        (&m.endpoint, m.role, m.accepting, m.workload),
        (&replacement.endpoint, Role::LoadBalancerOnly, false, Workload::new(9, 12))
    );

    // Moving to another cluster moves the row, it does not copy it.
    registry.publish(&heartbeat(1, Some("test"), 0, 10)).await.expect("third publish");
    assert!(read_members(&registry, Some("prod")).await.is_empty());
    assert_eq!(ids(&read_members(&registry, Some("test")).await), [1]);
}

async fn snapshot_filters_by_cluster_and_orders_by_id(db: &impl TestDb) {
    let registry = connect(db).await;
    for hb in [
        heartbeat(30, Some("a"), 0, 10),
        heartbeat(4, None, 0, 10),
        heartbeat(10, Some("a"), 0, 10),
        heartbeat(20, Some("a"), 0, 10),
        heartbeat(3, Some("b"), 0, 10),
        heartbeat(u32::MAX, Some("a"), u32::MAX, u32::MAX),
    ] {
        registry.publish(&hb).await.expect("publish");
    }
    let a = read_members(&registry, Some("a")).await;
    assert_eq!(ids(&a), [10, 20, 30, u32::MAX]);
    assert_eq!(a[3].workload, Workload::new(u32::MAX, u32::MAX), "u32 extremes survive the round trip");
    assert_eq!(ids(&read_members(&registry, Some("b")).await), [3]);
    assert_eq!(ids(&read_members(&registry, None).await), [4], "None selects the rows with no cluster");
    assert!(read_members(&registry, Some("A")).await.is_empty(), "cluster names are compared exactly");
    assert!(read_members(&registry, Some("")).await.is_empty(), "the empty name is not the missing one");
}

async fn every_role_and_endpoint_form_round_trips(db: &impl TestDb) {
    let registry = connect(db).await;
    let forms = [
        (Role::Serving, "aos1"),
        (Role::LoadBalancerOnly, "AOS01@aos1.contoso.com:2713"),
        (Role::Standalone, "[::1]:2712"),
        (Role::Serving, "INST_2@[fe80::1]"),
    ];
    for (i, (role, text)) in forms.iter().enumerate() {
        let hb = Heartbeat { role: *role, endpoint: endpoint(text), ..heartbeat(i as u32, Some("c"), 0, 1) };
        registry.publish(&hb).await.expect("publish");
    }
    let members = read_members(&registry, Some("c")).await;
    let read: Vec<(Role, Endpoint)> = members.iter().map(|m| (m.role, m.endpoint.clone())).collect();
    let written: Vec<(Role, Endpoint)> = forms.iter().map(|(role, text)| (*role, endpoint(text))).collect();
    assert_eq!(read, written);
}

async fn ages_grow_by_the_database_clock(db: &impl TestDb) {
    let registry = connect(db).await;
    registry.publish(&heartbeat(1, Some("c"), 0, 10)).await.expect("publish");
    registry.publish(&heartbeat(2, Some("c"), 0, 10)).await.expect("publish");
    let before = read_members(&registry, Some("c")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = read_members(&registry, Some("c")).await;
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.heartbeat_age >= b.heartbeat_age + Duration::from_millis(40),
            "age went from {:?} to {:?} over 50 ms",
            b.heartbeat_age,
            a.heartbeat_age
        );
    }

    // An instance that stopped publishing 90 s ago reads as 90 s old; a fresh
    // heartbeat brings it back to (nearly) zero.
    assert!(registry.set_heartbeat_age(InstanceId(2), Duration::from_secs(90)).await.expect("backdate"));
    let aged = read_members(&registry, Some("c")).await;
    assert!(aged[0].heartbeat_age < Duration::from_secs(5), "untouched row: {:?}", aged[0].heartbeat_age);
    let age = aged[1].heartbeat_age;
    assert!(Duration::from_secs(90) <= age && age < Duration::from_secs(95), "backdated row: {age:?}");
    registry.publish(&heartbeat(2, Some("c"), 0, 10)).await.expect("publish");
    assert!(read_members(&registry, Some("c")).await[1].heartbeat_age < Duration::from_secs(5));
}

async fn a_heartbeat_from_the_future_reads_as_age_zero(db: &impl TestDb) {
    let registry = connect(db).await;
    registry.publish(&heartbeat(1, Some("c"), 0, 10)).await.expect("publish");
    // As if the writer's database clock had been an hour ahead.
    db.raw(if db.url().starts_with("sqlite") {
        "UPDATE instances SET heartbeat_at = heartbeat_at + 3600000"
    } else {
        "UPDATE instances SET heartbeat_at = heartbeat_at + INTERVAL '1 hour'"
    })
    .await;
    assert_eq!(read_members(&registry, Some("c")).await[0].heartbeat_age, Duration::ZERO);
}

async fn two_connections_share_the_rows(db: &impl TestDb) {
    // Two registries on one database, as two instance processes would hold.
    let first = connect(db).await;
    let second = connect(db).await;
    first.publish(&heartbeat(1, Some("c"), 1, 10)).await.expect("publish");
    second.publish(&heartbeat(2, Some("c"), 2, 10)).await.expect("publish");
    assert_eq!(ids(&read_members(&first, Some("c")).await), [1, 2]);
    assert_eq!(ids(&read_members(&second, Some("c")).await), [1, 2]);

    second.publish(&heartbeat(1, Some("c"), 5, 10)).await.expect("publish over the other's row");
    assert_eq!(read_members(&first, Some("c")).await[0].workload, Workload::new(5, 10));
    assert!(first.remove(InstanceId(2)).await.expect("remove"));
    assert_eq!(ids(&read_members(&second, Some("c")).await), [1]);
}

async fn remove_deletes_only_that_row(db: &impl TestDb) {
    let registry = connect(db).await;
    registry.publish(&heartbeat(1, Some("c"), 0, 10)).await.expect("publish");
    registry.publish(&heartbeat(2, Some("c"), 0, 10)).await.expect("publish");
    assert!(registry.remove(InstanceId(1)).await.expect("remove"));
    assert!(!registry.remove(InstanceId(1)).await.expect("remove again"), "nothing left to remove");
    assert!(!registry.remove(InstanceId(99)).await.expect("remove unknown"));
    assert_eq!(ids(&read_members(&registry, Some("c")).await), [2]);
}

async fn rows_that_do_not_parse_are_skipped_and_reported(db: &impl TestDb) {
    let registry = connect(db).await;
    for id in 1..=5 {
        registry.publish(&heartbeat(id, Some("c"), 0, 10)).await.expect("publish");
    }
    db.raw(
        "UPDATE instances SET endpoint = 'aos2:99999' WHERE id = 2;
         UPDATE instances SET role = 'emperor' WHERE id = 3;
         UPDATE instances SET connected = -1 WHERE id = 4;
         INSERT INTO instances (id, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at)
             SELECT 4294967296, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at
             FROM instances WHERE id = 1",
    )
    .await;

    let snapshot = registry.snapshot(Some("c")).await.expect("a bad row does not fail the snapshot");
    assert_eq!(ids(&snapshot.members), [1, 5]);
    let skipped: Vec<(i64, &str)> = snapshot.skipped.iter().map(|s| (s.id, s.reason.as_str())).collect();
    assert_eq!(skipped.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 3, 4, 4_294_967_296], "{skipped:?}");
    assert!(skipped[0].1.contains("aos2:99999"), "{}", skipped[0].1);
    assert!(skipped[1].1.contains("emperor"), "{}", skipped[1].1);
    assert!(skipped[2].1.contains("connected -1"), "{}", skipped[2].1);
    assert!(skipped[3].1.contains("4294967296"), "{}", skipped[3].1);
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&super::SqliteDb::new(stringify!($test))).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = super::PostgresDb::new(stringify!($test)).await else { return };
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_both_backends!(
    publish_then_snapshot_returns_the_row,
    upsert_replaces_the_row,
    snapshot_filters_by_cluster_and_orders_by_id,
    every_role_and_endpoint_form_round_trips,
    ages_grow_by_the_database_clock,
    a_heartbeat_from_the_future_reads_as_age_zero,
    two_connections_share_the_rows,
    remove_deletes_only_that_row,
    rows_that_do_not_parse_are_skipped_and_reported,
);

// ---- backend-specific behaviour ------------------------------------------------

#[tokio::test]
async fn sqlite_file_is_in_wal_mode_for_sharing_between_processes() {
    let db = SqliteDb::new("wal_mode");
    let registry = connect(&db).await;
    registry.publish(&heartbeat(1, None, 0, 1)).await.expect("publish");
    let conn = rusqlite::Connection::open(&db.path).expect("open directly");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal mode");
    assert_eq!(mode, "wal");
}

/// Set in the child process of the test below: the URL of the parent's file.
const CHILD_URL_VAR: &str = "AOS_TEST_REGISTRY_CHILD_URL";

/// Two real processes on one file (SQLite locks are per process, so two
/// connections in one process are not the whole story): the test binary runs
/// this same test again as a child, which reads the parent's row and adds its
/// own.
#[tokio::test]
async fn sqlite_file_is_shared_between_processes() {
    if let Ok(url) = std::env::var(CHILD_URL_VAR) {
        let registry = Registry::connect(&url).await.expect("child connects");
        assert_eq!(ids(&read_members(&registry, Some("c")).await), [1], "child sees the parent's row");
        registry.publish(&heartbeat(2, Some("c"), 2, 10)).await.expect("child publishes");
        return;
    }
    let db = SqliteDb::new("shared_between_processes");
    let registry = connect(&db).await;
    registry.publish(&heartbeat(1, Some("c"), 1, 10)).await.expect("parent publishes");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "sqlite_file_is_shared_between_processes", "--test-threads=1"])
        .env(CHILD_URL_VAR, db.url())
        .output()
        .expect("run the child");
    let child_out = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "child failed: {child_out}{}", String::from_utf8_lossy(&child.stderr));
    assert!(child_out.contains("1 passed"), "the child ran the test: {child_out}");
    let members = read_members(&registry, Some("c")).await;
    assert_eq!(ids(&members), [1, 2]);
    assert_eq!(members[1].workload, Workload::new(2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_publishers_on_one_file_all_land() {
    let db = SqliteDb::new("concurrent_publishers");
    let url = db.url();
    let mut writers = Vec::new();
    for writer in 0..4u32 {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let registry = Registry::connect(&url).await.expect("connect");
            for round in 0..25u32 {
                registry
                    .publish(&heartbeat(writer, Some("c"), round, 100))
                    .await
                    .expect("publish under contention");
                registry.snapshot(Some("c")).await.expect("read under contention");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    let members = read_members(&connect(&db).await, Some("c")).await;
    assert_eq!(ids(&members), [0, 1, 2, 3]);
    assert!(members.iter().all(|m| m.workload == Workload::new(24, 100)), "last round wins: {members:?}");
}

#[tokio::test]
async fn sqlite_in_memory_works_and_is_private() {
    let first = Registry::connect("sqlite::memory:").await.expect("memory");
    let second = Registry::connect("sqlite::memory:").await.expect("memory");
    first.publish(&heartbeat(1, Some("c"), 0, 1)).await.expect("publish");
    assert_eq!(ids(&read_members(&first, Some("c")).await), [1]);
    assert!(read_members(&second, Some("c")).await.is_empty());
}

#[tokio::test]
async fn postgres_reconnects_after_losing_its_connection() {
    let Some(db) = PostgresDb::new("reconnects").await else { return };
    let registry = connect(&db).await;
    registry.publish(&heartbeat(1, Some("c"), 0, 10)).await.expect("publish");
    assert_eq!(db.kill_registry_connections().await, 1);

    // The call that meets the dead connection may fail (with an error, never
    // a panic); a later one reconnects and finds the row still there.
    let mut recovered = None;
    for attempt in 0..20 {
        match registry.snapshot(Some("c")).await {
            Ok(snapshot) => {
                recovered = Some((attempt, snapshot));
                break;
            }
            Err(e) => {
                assert!(matches!(e, RegistryError::Query { .. }), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (attempt, snapshot) = recovered.expect("the registry reconnects within a second");
    assert!(attempt <= 1, "one failed call at most, took {attempt}");
    assert_eq!(ids(&snapshot.members), [1]);
    registry.publish(&heartbeat(2, Some("c"), 0, 10)).await.expect("publish after reconnecting");
    db.finish().await;
}

// ---- start-up errors -------------------------------------------------------------

async fn connect_error(url: &str) -> RegistryError {
    match Registry::connect(url).await {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn unsupported_urls_are_named_in_the_error() {
    for url in ["mysql://root@localhost/aos", "registry.db", "", "sqlite://", "sqlite:/x.db", "postgres:/x"] {
        let error = connect_error(url).await;
        assert!(matches!(error, RegistryError::BadUrl(_)), "{url}: {error:?}");
        assert!(error.to_string().contains(&format!("`{url}`")), "{error}");
    }
}

#[tokio::test]
async fn sqlite_in_a_missing_directory_fails_at_start_up() {
    let dir = std::env::temp_dir().join(format!("aos-registry-missing-{}", std::process::id()));
    let url = format!("sqlite://{}/registry.db", dir.display());
    let error = connect_error(&url).await;
    assert!(matches!(error, RegistryError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with(&format!("cannot open registry {url}: ")), "{message}");
    assert!(message.contains("unable to open database file"), "{message}");
}

#[tokio::test]
async fn sqlite_file_that_is_not_a_database_fails_at_start_up() {
    let db = SqliteDb::new("not_a_database");
    std::fs::write(&db.path, b"this is not an SQLite file, it is long enough to have a header")
        .expect("write");
    let error = connect_error(&db.url()).await;
    assert!(matches!(error, RegistryError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("not a database"), "{error}");
}

#[tokio::test]
async fn unreachable_postgres_fails_at_start_up_without_showing_the_password() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://aos:secret@127.0.0.1:{port}/aos");
    let error = connect_error(&url).await;
    assert!(matches!(error, RegistryError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot open registry postgres://aos:***@127.0.0.1:{port}/aos: ")),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
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
    ] {
        assert_eq!(redact_password(url), shown, "{url}");
    }
}
