//! Rows and files changed behind the registry's back: input from outside.

use super::*;

impl TestDb {
    /// The member table of this backend.
    pub(crate) fn table(&self) -> &'static str {
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
    // PostgreSQL refuses to retype a column its trigger's condition reads:
    // whoever does it by hand drops the trigger first.
    db.raw(&format!(
        "DROP TRIGGER {table}_updated ON {table};
         ALTER TABLE {table} ALTER COLUMN accepting TYPE text; UPDATE {table} SET accepting = 'maybe'"
    ))
    .await;
    let reader = db.connect().await;
    let read =
        reader.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await.expect("the snapshot does not fail");
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
    match registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await {
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
    match registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await {
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
    match registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await {
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
