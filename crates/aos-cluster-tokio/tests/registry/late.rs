//! Late marks (PostgreSQL): no read scans for late rows; members take turns
//! to sweep for them and mark them, and every reader reads the mark as a
//! change. A row a reader finds late without a mark is read again until it
//! is marked or on time.

use super::quiet::{change_mark, postgres, stored, FAST};
use super::*;

/// A table made without late marks (nor the trigger that turns a deletion
/// by hand into a removed mark) gets them when a handle connects; a
/// member's heartbeats sweep the cluster and mark a silent row late, a
/// change; that row's own next heartbeat clears the mark, a change again.
#[tokio::test]
async fn postgres_a_sweep_marks_a_silent_row_late_and_its_heartbeat_clears_the_mark() {
    let Some(db) = TestDb::postgres("late_mark").await else { return };
    let pg = postgres(&db);
    drop(db.connect().await);
    let table = db.table();
    db.raw(&format!("ALTER TABLE {table} DROP COLUMN late CASCADE")).await;
    db.raw(&format!("DROP TRIGGER {}_deleted ON {table}", registry::POSTGRES_MEMBERS_TABLE)).await;
    let writer = db.connect().await;
    assert_eq!(stored_column_count(pg, "late").await, 1, "the mark is back");
    writer.register(&heartbeat(9, "h", 0), A, FAST.member_ttl).await.expect("register");
    db.raw(&format!("DELETE FROM {table} WHERE id = 9")).await;
    assert_eq!(stored(pg, 9, "removed").await, "true", "a deletion by hand is a removed mark again");

    writer.register(&heartbeat(1, "beats", 0), A, FAST.member_ttl).await.expect("register");
    writer.register(&heartbeat(2, "stops", 0), B, FAST.member_ttl).await.expect("register");
    assert_eq!(stored(pg, 2, "late").await, "false");
    // Past `late_after` of the writer's timing (1.5 s for a 3 s `member_ttl`).
    db.age(2, Duration::from_secs(2)).await;
    let aged = change_mark(pg, 2).await;

    let start = tokio::time::Instant::now();
    while stored(pg, 2, "late").await != "true" {
        assert!(start.elapsed() < FAST.member_ttl, "no sweep marked the silent row");
        writer.heartbeat(&heartbeat(1, "beats", 0), A).await.expect("heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let marked = change_mark(pg, 2).await;
    assert_ne!(marked, aged, "the mark is a change");
    assert_eq!(stored(pg, 1, "late").await, "false", "the beating row is not marked");

    // The same figures, by a handle that has not written them (the writer
    // may still count its register as the quiet renewal).
    db.connect().await.heartbeat(&heartbeat(2, "stops", 0), B).await.expect("heartbeat");
    assert_eq!(stored(pg, 2, "late").await, "false", "a heartbeat clears the mark");
    assert_ne!(change_mark(pg, 2).await, marked, "and that is a change");
    db.finish().await;
}

/// A row read late without a mark (its heartbeat moved back by hand, no
/// sweep since) comes back on time after a heartbeat that changes nothing
/// else, though no change mark shows that heartbeat.
#[tokio::test]
async fn postgres_a_row_late_without_a_mark_is_read_again_until_it_is_on_time() {
    let Some(db) = TestDb::postgres("late_unmarked").await else { return };
    let pg = postgres(&db);
    let timing = MemberTiming { member_ttl: TTL, heartbeat_interval: Duration::from_millis(200) };
    let age_of = |read: &[MemberRecord]| read.iter().find(|m| m.id == InstanceId(1)).map(|m| m.heartbeat_age);
    let owner = db.connect().await;
    let reader = db.connect().await;
    owner.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let on_time = age_of(&reader.snapshot(Some("c"), timing).await.expect("snapshot"));
    assert!(on_time.is_some_and(|age| age < timing.heartbeat_interval), "{on_time:?}");

    db.age(1, timing.late_after() + Duration::from_secs(5)).await;
    tokio::time::sleep(timing.heartbeat_interval).await;
    let late = age_of(&reader.snapshot(Some("c"), timing).await.expect("snapshot"));
    assert!(late.is_some_and(|age| age > timing.late_after()), "read at its real age: {late:?}");
    assert_eq!(stored(pg, 1, "late").await, "false", "no sweep has marked it");

    // A handle that has not written the row writes the same figures: only
    // the time moves, so the change mark stays.
    let mark = change_mark(pg, 1).await;
    let other = db.connect().await;
    other.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat");
    assert_eq!(change_mark(pg, 1).await, mark, "a heartbeat that changes nothing else");
    tokio::time::sleep(timing.heartbeat_interval).await;
    let again = age_of(&reader.snapshot(Some("c"), timing).await.expect("snapshot"));
    assert!(again.is_some_and(|age| age < timing.heartbeat_interval), "on time again: {again:?}");
    db.finish().await;
}

/// How many live columns named `column` the test's member table has.
async fn stored_column_count(pg: &PostgresDb, column: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = '{}.{}'::regclass AND attname = $1 AND NOT attisdropped",
        pg.schema,
        registry::POSTGRES_MEMBERS_TABLE
    );
    pg.admin.query_one(&sql, &[&column]).await.expect("read the layout").get(0)
}
