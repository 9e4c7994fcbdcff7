//! Quiet heartbeats: a heartbeat that changes nothing but the time reaches
//! no other reader (PostgreSQL: it is written once per quiet renewal and the
//! row's change mark stays; etcd: only the lease is renewed), yet every
//! reader still tells an on-time member from a late one.

use super::*;

/// A member beating every 300 ms, active for 3 s.
#[cfg(feature = "postgres")]
pub(super) const FAST: MemberTiming =
    MemberTiming { member_ttl: Duration::from_secs(3), heartbeat_interval: Duration::from_millis(300) };

#[cfg(feature = "postgres")]
pub(super) fn postgres(db: &TestDb) -> &PostgresDb {
    match db {
        TestDb::Postgres(pg) => pg,
        _ => unreachable!("a PostgreSQL test database"),
    }
}

/// Row `id`'s `column` as the database holds it, as text.
#[cfg(feature = "postgres")]
pub(super) async fn stored(pg: &PostgresDb, id: u32, column: &str) -> String {
    let sql = format!(
        "SELECT {column}::text FROM {}.{} WHERE id = $1",
        pg.schema,
        registry::POSTGRES_MEMBERS_TABLE
    );
    pg.admin.query_one(&sql, &[&i64::from(id)]).await.unwrap_or_else(|e| panic!("read {column}: {e}")).get(0)
}

/// Row `id`'s change mark.
#[cfg(feature = "postgres")]
pub(super) async fn change_mark(pg: &PostgresDb, id: u32) -> String {
    stored(pg, id, "changed_xid").await
}

/// Row `id`'s heartbeat time.
#[cfg(feature = "postgres")]
async fn stored_heartbeat(pg: &PostgresDb, id: u32) -> String {
    stored(pg, id, "heartbeat_at").await
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_only_a_heartbeat_that_changes_something_marks_the_row_changed() {
    let Some(db) = TestDb::postgres("quiet_mark").await else { return };
    let pg = postgres(&db);
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let mark = change_mark(pg, 1).await;
    for _ in 0..3 {
        registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat");
    }
    assert_eq!(change_mark(pg, 1).await, mark, "heartbeats that move only the time leave the mark");

    registry.heartbeat(&heartbeat(1, "h", 1), A).await.expect("heartbeat");
    let busier = change_mark(pg, 1).await;
    assert_ne!(busier, mark, "new figures mark the row changed");

    // Writes by hand are input from outside: a heartbeat moved back (or
    // into the future) is a change every reader must see.
    db.age(1, Duration::from_secs(60)).await;
    let aged = change_mark(pg, 1).await;
    assert_ne!(aged, busier, "a heartbeat moved back by hand marks the row");
    db.raw(&format!("UPDATE {} SET heartbeat_at = now() + INTERVAL '1 hour' WHERE id = 1", db.table())).await;
    assert_ne!(change_mark(pg, 1).await, aged, "a heartbeat moved ahead by hand marks the row");
    db.finish().await;
}

/// A heartbeat with the figures last written is written once per quiet
/// renewal (a third of `member_ttl`), not at every beat; new figures are
/// written at once.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_quiet_heartbeat_is_written_once_per_quiet_renewal() {
    let Some(db) = TestDb::postgres("quiet_renewal").await else { return };
    let pg = postgres(&db);
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, FAST.member_ttl).await.expect("register");
    let registered = stored_heartbeat(pg, 1).await;
    let started = tokio::time::Instant::now();
    while started.elapsed() < FAST.quiet_renewal() * 8 / 10 {
        registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored_heartbeat(pg, 1).await,
        registered,
        "quiet heartbeats within the renewal write nothing"
    );
    tokio::time::sleep_until(started + FAST.quiet_renewal()).await;
    registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat");
    let renewed = stored_heartbeat(pg, 1).await;
    assert_ne!(renewed, registered, "the beat past the renewal writes");
    registry.heartbeat(&heartbeat(1, "h", 7), A).await.expect("heartbeat");
    assert_ne!(stored_heartbeat(pg, 1).await, renewed, "new figures are written at once");
    let read = db.connect().await.snapshot(Some("c"), FAST).await.expect("snapshot");
    assert_eq!(read[0].workload, Workload::new(7, 100));
    db.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_on_time_rows_read_younger_than_one_interval_and_late_rows_at_their_age() {
    let Some(db) = TestDb::postgres("quiet_ages").await else { return };
    let writer = db.connect().await;
    let reader = db.connect().await;
    writer.register(&heartbeat(1, "beats", 0), A, FAST.member_ttl).await.expect("register");
    writer.register(&heartbeat(2, "stops", 0), B, FAST.member_ttl).await.expect("register");
    let age_of = |read: &[MemberRecord], id: u32| {
        read.iter()
            .find(|m| m.id == InstanceId(id))
            .unwrap_or_else(|| panic!("row {id} in {read:?}"))
            .heartbeat_age
    };
    let read = reader.snapshot(Some("c"), FAST).await.expect("snapshot");
    assert!(age_of(&read, 2) < FAST.heartbeat_interval, "{read:?}");

    // Row 1 beats every 100 ms with the same figures (written once per
    // quiet renewal); row 2 falls silent past `late_after` (1.3 s).
    let silent_since = tokio::time::Instant::now();
    while silent_since.elapsed() < Duration::from_millis(2000) {
        writer.heartbeat(&heartbeat(1, "beats", 0), A).await.expect("heartbeat");
        let read = reader.snapshot(Some("c"), FAST).await.expect("snapshot");
        let on_time = age_of(&read, 1);
        assert!(on_time < FAST.heartbeat_interval, "an on-time row read as {on_time:?} old");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The writer's sweeps (one per interval or so, at its heartbeats) mark
    // row 2 late; the reader reads the mark at its next read.
    let late = loop {
        writer.heartbeat(&heartbeat(1, "beats", 0), A).await.expect("heartbeat");
        let age = age_of(&reader.snapshot(Some("c"), FAST).await.expect("snapshot"), 2);
        if age >= FAST.late_after() || silent_since.elapsed() > Duration::from_millis(2_800) {
            break age;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        Duration::from_millis(2000) <= late && late < FAST.member_ttl,
        "a row silent for over 2 s read as {late:?} old"
    );

    // It beats again: young at the next read.
    writer.heartbeat(&heartbeat(2, "stops", 0), B).await.expect("heartbeat");
    tokio::time::sleep(FAST.heartbeat_interval).await;
    let read = reader.snapshot(Some("c"), FAST).await.expect("snapshot");
    let again = age_of(&read, 2);
    assert!(again < FAST.heartbeat_interval, "a row that beat again read as {again:?} old");
    db.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_row_deleted_by_hand_leaves_every_replica() {
    let Some(db) = TestDb::postgres("quiet_delete").await else { return };
    let writer = db.connect().await;
    let reader = db.connect().await;
    for id in 1..=3 {
        writer.register(&heartbeat(id, "h", 0), A, FAST.member_ttl).await.expect("register");
    }
    assert_eq!(ids(&reader.snapshot(Some("c"), FAST).await.expect("snapshot")), [1, 2, 3]);
    // Deleted behind the registry's back: the deletion becomes a removed
    // mark, a change every reader reads; the purge deletes the row later.
    db.raw(&format!("DELETE FROM {} WHERE id = 2", db.table())).await;
    assert_eq!(stored(postgres(&db), 2, "removed").await, "true");
    // A truncation would skip that: refused, naming what to do instead.
    let truncate = postgres(&db).admin.batch_execute(&format!("TRUNCATE {}", db.table())).await;
    let refused = truncate.expect_err("TRUNCATE is refused");
    assert!(
        refused.as_db_error().is_some_and(|e| e.message().contains("DELETE the rows instead")),
        "{refused}"
    );
    tokio::time::sleep(FAST.heartbeat_interval).await;
    assert_eq!(ids(&reader.snapshot(Some("c"), FAST).await.expect("snapshot")), [1, 3]);
    // And a deletion and an insertion between two reads.
    db.raw(&format!("DELETE FROM {} WHERE id = 3", db.table())).await;
    writer.register(&heartbeat(4, "h", 0), A, FAST.member_ttl).await.expect("register");
    tokio::time::sleep(FAST.heartbeat_interval).await;
    assert_eq!(ids(&reader.snapshot(Some("c"), FAST).await.expect("snapshot")), [1, 4]);
    db.finish().await;
}

#[cfg(all(feature = "etcd", aos_etcd))]
/// A heartbeat that changes nothing but the time renews the lease on the
/// stream kept open and writes nothing: the key keeps its revision, so no
/// watch receives an event. New figures are written. A key that is still
/// there reads as at most one heartbeat interval old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_with_the_same_figures_only_renews_the_lease() {
    let Some(db) = TestDb::etcd("quiet").await else { return };
    let TestDb::Etcd(etcd) = &db else { unreachable!("an etcd test database") };
    let key = format!("{}/members_v1/{:010}", etcd.prefix, 1);
    let mut admin = etcd.admin.clone();
    let reader = etcd.admin.clone();
    let stored = || {
        let mut admin = reader.clone();
        let key = key.clone();
        async move {
            let read = admin.get(key, None).await.expect("read the key");
            let found = read.kvs().first().expect("the key exists");
            (found.mod_revision(), found.lease())
        }
    };
    let registry = EtcdRegistry::connect(&db.url()).await.expect("open");
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let (revision, lease) = stored().await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = admin.lease_time_to_live(lease, None).await.expect("lease TTL").ttl();
    for _ in 0..3 {
        registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat");
    }
    let after = admin.lease_time_to_live(lease, None).await.expect("lease TTL").ttl();
    assert!(after > before, "the heartbeats renewed the lease ({before} s left before, {after} s after)");
    assert_eq!(stored().await.0, revision, "the value was not rewritten");
    let timing = registry::MemberTiming { member_ttl: TTL, heartbeat_interval: Duration::from_millis(500) };
    let read = registry.snapshot(Some("c"), timing).await.expect("snapshot");
    assert_eq!(ids(&read), [1]);
    assert!(read[0].heartbeat_age <= timing.heartbeat_interval, "read as {:?} old", read[0].heartbeat_age);

    registry.heartbeat(&heartbeat(1, "h", 4), A).await.expect("heartbeat");
    assert!(stored().await.0 > revision, "new figures are written");
    // The lease revoked behind its back: the next heartbeat that writes (or
    // renews) is superseded.
    admin.lease_revoke(lease).await.expect("revoke");
    match registry.heartbeat(&heartbeat(1, "h", 5), A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("expected Superseded after the lease went, got {other:?}"),
    }
    db.finish().await;
}

/// A purge skips its statement while the replica knows nothing old enough
/// to delete; it still deletes what the replica knows: a removed row and a
/// late row whose heartbeats are past the horizon.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_purge_deletes_the_old_rows_its_replica_knows() {
    let Some(db) = TestDb::postgres("quiet_purge").await else { return };
    let writer = db.connect().await;
    let reader = db.connect().await;
    for id in 1..=3 {
        writer.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    assert_eq!(ids(&settled_members(&*reader, Some("c")).await), [1, 2, 3]);
    assert_eq!(reader.purge(Some("c"), PURGE).await.expect("purge"), 0, "nothing old");

    assert!(writer.remove(InstanceId(2), A).await.expect("remove"));
    db.age(2, PURGE + Duration::from_secs(1)).await;
    assert_eq!(ids(&settled_members(&*reader, Some("c")).await), [1, 3]);
    assert_eq!(reader.purge(Some("c"), PURGE).await.expect("purge"), 1, "the removed row, past the horizon");

    db.age(3, PURGE + Duration::from_secs(1)).await;
    assert_eq!(ids(&settled_members(&*reader, Some("c")).await), [1], "past the horizon: left out");
    assert_eq!(reader.purge(Some("c"), PURGE).await.expect("purge"), 1, "the late row, past the horizon");
    assert_eq!(reader.purge(Some("c"), PURGE).await.expect("purge"), 0, "idempotent");
    writer.register(&heartbeat(3, "h", 0), B, TTL).await.expect("the purged id is free");
    db.finish().await;
}

/// A handle that has not read the cluster cannot judge what a purge would
/// find: its first purge runs (the real-cluster harness clears an earlier
/// run's rows so, with a fresh handle), the next within half the horizon is
/// skipped.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_purge_without_a_read_runs_once_per_half_horizon() {
    let Some(db) = TestDb::postgres("quiet_blind_purge").await else { return };
    let writer = db.connect().await;
    for id in 1..=3 {
        writer.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    db.age(1, PURGE + Duration::from_secs(1)).await;
    db.age(2, PURGE + Duration::from_secs(1)).await;
    let blind = db.connect().await;
    assert_eq!(blind.purge(Some("c"), PURGE).await.expect("purge"), 2, "no read to judge by: it runs");
    db.age(3, PURGE + Duration::from_secs(1)).await;
    assert_eq!(blind.purge(Some("c"), PURGE).await.expect("purge"), 0, "skipped within half the horizon");
    assert_eq!(
        db.connect().await.purge(Some("c"), Duration::ZERO).await.expect("purge"),
        1,
        "a fresh handle's"
    );
    db.finish().await;
}
