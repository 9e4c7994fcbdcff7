//! The replica against a model of the table: random writes, quiet beats,
//! removals, hand-made ages, sweeps and time, read as the PostgreSQL read
//! would return them. After every read the replica must list every row the
//! table holds on time (younger than one interval), never a removed row,
//! marked rows at their real age, and a purge must never be skipped while a
//! row old enough is known.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const TIMING: MemberTiming =
    MemberTiming { member_ttl: Duration::from_secs(3), heartbeat_interval: Duration::from_millis(500) };
const PURGE_AFTER: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Op {
    /// A heartbeat with new figures (a new row if there is none).
    Write {
        id: i64,
        connected: i64,
    },
    /// A heartbeat with the same figures: no change mark, unless it clears
    /// a late mark.
    QuietBeat {
        id: i64,
    },
    /// A graceful stop, or a deletion by hand.
    Remove {
        id: i64,
    },
    /// A heartbeat moved back by hand (a change).
    Age {
        id: i64,
        by_ms: u64,
    },
    /// A member's sweep: late rows marked.
    Sweep,
    Advance {
        ms: u64,
    },
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..6i64, 0..4i64).prop_map(|(id, connected)| Op::Write { id, connected }),
        3 => (0..6i64).prop_map(|id| Op::QuietBeat { id }),
        1 => (0..6i64).prop_map(|id| Op::Remove { id }),
        1 => (0..6i64, 0..25_000u64).prop_map(|(id, by_ms)| Op::Age { id, by_ms }),
        1 => Just(Op::Sweep),
        3 => (0..3_000u64).prop_map(|ms| Op::Advance { ms }),
        3 => Just(Op::Read),
    ]
}

/// A row as the table holds it.
#[derive(Debug, Clone)]
struct Stored {
    connected: i64,
    beat_us: i64,
    removed: bool,
    marked: bool,
    /// The change counter's value at its last change.
    changed: i64,
}

#[derive(Debug, Default)]
struct Table {
    rows: BTreeMap<i64, Stored>,
    /// The last change's number (the change marks' order).
    changes: i64,
}

impl Table {
    fn change(&mut self, id: i64, now_us: i64, edit: impl FnOnce(&mut Stored)) {
        self.changes += 1;
        let changed = self.changes;
        let row = self.rows.entry(id).or_insert(Stored {
            connected: 0,
            beat_us: now_us,
            removed: false,
            marked: false,
            changed,
        });
        edit(row);
        row.changed = changed;
    }

    /// What the read statement returns for `horizon` and the rows `again`.
    fn read(&self, horizon: i64, again: &[i64], now_us: i64) -> ChangeRead {
        let mut read = ChangeRead { full: horizon == 0, ..ChangeRead::default() };
        for (&id, row) in &self.rows {
            if row.changed < horizon && !again.contains(&id) {
                continue;
            }
            read.clock = Some((now_us, self.changes + 1));
            let mut stored = StoredRow::empty();
            stored.id = Some(id);
            stored.connected = row.connected;
            read.changed.push((
                id,
                if row.removed {
                    Change::Removed(row.beat_us)
                } else {
                    Change::Row { row: stored, beat_us: row.beat_us, marked_late: row.marked }
                },
            ));
        }
        read
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let base_us = 1_700_000_000_000_000i64;
    let start = Instant::now();
    let now_us = || base_us + micros(start.elapsed());
    let late_after_us = micros(TIMING.late_after());
    let mut table = Table::default();
    let mut replica = Replica::default();
    for op in ops {
        let now = now_us();
        match op {
            Op::Write { id, connected } => {
                let revived = table.rows.get(&id).is_some_and(|row| row.removed);
                table.change(id, now, |row| {
                    if revived {
                        row.removed = false;
                    }
                    row.connected = connected;
                    row.beat_us = now;
                    row.marked = false;
                });
            }
            Op::QuietBeat { id } => match table.rows.get_mut(&id) {
                Some(row) if !row.removed && !row.marked => row.beat_us = now,
                Some(row) if !row.removed => table.change(id, now, |row| {
                    row.beat_us = now;
                    row.marked = false;
                }),
                _ => {}
            },
            Op::Remove { id } => {
                if table.rows.get(&id).is_some_and(|row| !row.removed) {
                    table.change(id, now, |row| row.removed = true);
                }
            }
            Op::Age { id, by_ms } => {
                if table.rows.contains_key(&id) {
                    table.change(id, now, |row| row.beat_us -= i64::try_from(by_ms).unwrap_or(0) * 1_000);
                }
            }
            Op::Sweep => {
                let late: Vec<i64> = (table.rows.iter())
                    .filter(|(_, row)| !row.removed && !row.marked && now - row.beat_us > late_after_us)
                    .map(|(&id, _)| id)
                    .collect();
                for id in late {
                    table.change(id, now, |row| row.marked = true);
                }
            }
            Op::Advance { ms } => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::Read => {
                let horizon = replica.next_horizon(TIMING);
                let again = replica.unmarked_late();
                replica.apply(table.read(horizon, &again, now), TIMING);
                check(&replica, &table, now)?;
            }
        }
    }
    Ok(())
}

/// What must hold right after a read at `now_us`.
fn check(replica: &Replica, table: &Table, now_us: i64) -> Result<(), TestCaseError> {
    let listed: BTreeMap<i64, i64> =
        replica.rows_at(TIMING).iter().filter_map(|row| Some((row.id?, row.age_micros))).collect();
    let interval_us = micros(TIMING.heartbeat_interval);
    let kept_us = micros(crate::registry::timing::purge_horizon(TIMING.member_ttl));
    for id in listed.keys() {
        let row = table.rows.get(id);
        prop_assert!(row.is_some_and(|row| !row.removed), "row {id} listed but removed or absent: {row:?}");
    }
    for (id, row) in &table.rows {
        let real_age = now_us - row.beat_us;
        if row.removed {
            continue;
        }
        if !row.marked && real_age <= micros(TIMING.late_after()) {
            let age = listed.get(id);
            prop_assert!(
                age.is_some_and(|&age| (0..interval_us).contains(&age)),
                "on-time row {id}: {age:?}"
            );
        }
        if row.marked && real_age <= kept_us {
            prop_assert_eq!(listed.get(id), Some(&real_age), "marked row {} at its real age", id);
        }
    }
    // No purge is skipped while the table holds a row old enough that the
    // replica has seen as old (removed, or marked late).
    let due = now_us - micros(PURGE_AFTER);
    let old_known = table.rows.values().any(|row| (row.removed || row.marked) && row.beat_us <= due);
    prop_assert!(!old_known || replica.purge_may_find(PURGE_AFTER), "a purge would be skipped");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_replica_follows_the_table(ops in prop::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()
            .expect("a runtime");
        runtime.block_on(run(ops))?;
    }
}
