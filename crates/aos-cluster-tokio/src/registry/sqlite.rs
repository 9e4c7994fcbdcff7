//! The embedded registry: one SQLite file that every instance on a machine
//! shares (bundled SQLite, no system library).
//!
//! The file uses SQLite's rollback journal, not WAL: WAL maps a shared-memory
//! file (`-shm`) into every process, and a truncated `-shm` then kills each of
//! them with SIGBUS. With the journal every access is a plain read or write
//! that fails with an error instead. A busy timeout lets several processes
//! write into it one after the other. SQLite calls block,
//! so each runs on tokio's blocking pool, never on the async workers, and each
//! has a deadline ([`CALL_TIMEOUT`]): past it the call fails and the statement
//! still running is interrupted.
//!
//! # A deleted, replaced or truncated file
//!
//! An open SQLite connection keeps using its file even after the path is
//! deleted or another file is moved over it, while every process that starts
//! later opens the new file: the cluster would split in two, silently. So the
//! registry remembers which file it opened (its device and inode, and a random
//! `registry_id` written into the file's one-row meta table at creation) and
//! checks, before every call, that the path still leads to that same file.
//! Once it does not, that call fails with a [`RegistryError::Backend`] that
//! says so (logged with `tracing::error!`), and the registry follows the path:
//! it reopens whatever file is there now (creating it if it is gone), as every
//! process that starts later will. Every instance of the machine does the
//! same at its next call, so they meet again in one file, where their next
//! heartbeat finds its row gone and registers again. A check that cannot be
//! made (out of file descriptors, say) is a transient error, never taken for
//! a deleted file.

use rusqlite::types::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::row::{sql_millis, RowChecker, StoredRow};
use super::{
    redact_password, role_text, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError, CALL_TIMEOUT,
    MEMBERS_TABLE,
};

/// How long an SQLite call waits for another process's write lock. Shorter
/// than [`CALL_TIMEOUT`], so a locked database fails as "database is locked"
/// rather than as a timeout.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(4);

/// The one-row table that names the file.
const META_TABLE: &str = "aos_registry_meta_v1";

/// SQLite's clock in whole milliseconds since the Unix epoch.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// The registry in an SQLite file (or in memory, private to one registry).
pub struct SqliteRegistry {
    shown_url: String,
    conn: Arc<tokio::sync::Mutex<Opened>>,
    /// The handle of the connection in use (replaced when the path is
    /// reopened), to cut a statement short at the deadline.
    interrupt: Arc<Mutex<Arc<rusqlite::InterruptHandle>>>,
    rows: RowChecker,
}

/// The connection, and the file it was opened on (`None` in memory: there is
/// no file to lose).
struct Opened {
    conn: Connection,
    file: Option<FileWatch>,
}

impl std::fmt::Debug for SqliteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRegistry").field("url", &self.shown_url).finish_non_exhaustive()
    }
}

/// Where the registry's file is, and what it was when opened.
#[derive(Debug)]
struct FileWatch {
    path: PathBuf,
    identity: FileIdentity,
    registry_id: String,
}

#[cfg(unix)]
type FileIdentity = (u64, u64);
#[cfg(not(unix))]
type FileIdentity = ();

#[cfg(unix)]
fn file_identity(metadata: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn file_identity(_metadata: &std::fs::Metadata) -> FileIdentity {}

impl FileWatch {
    /// Whether the path still leads to the opened file: `Ok(None)` when it
    /// does, `Ok(Some(what happened))` once it is gone or another file, `Err`
    /// when the check itself could not be made (the call fails, the next one
    /// checks again).
    fn lost_because(&self) -> Result<Option<&'static str>, String> {
        let cannot_check = |e: &dyn std::fmt::Display| {
            format!("cannot check that the registry file {} is still the same: {e}", self.path.display())
        };
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some("DELETED")),
            Err(e) => return Err(cannot_check(&e)),
        };
        if file_identity(&metadata) != self.identity {
            return Ok(Some("DELETED OR REPLACED (the path now leads to another file)"));
        }
        // The same inode can still hold other contents (a backup copied over
        // it in place, or the file truncated): the id written into the file
        // tells.
        match read_registry_id(&self.path) {
            Ok(Some(id)) if id == self.registry_id => Ok(None),
            Ok(Some(_)) => Ok(Some("REPLACED (the file holds another registry)")),
            Ok(None) => Ok(Some("EMPTIED (truncated, or replaced by a file with no registry)")),
            Err(e) => match e.sqlite_error_code() {
                // The file was there a moment ago by the same inode: a file
                // that cannot be opened now is out of descriptors or
                // memory, not gone.
                Some(ErrorCode::NotADatabase) => Ok(Some("REPLACED (it is not an SQLite database now)")),
                _ => Err(cannot_check(&e)),
            },
        }
    }
}

/// The `registry_id` of the file at `path`, read through a connection of its
/// own (the registry's connection keeps its old file open, whatever the path
/// leads to now); `None` when the file has no meta row. Never creates a file.
fn read_registry_id(path: &Path) -> rusqlite::Result<Option<String>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    let id = conn.query_row(&format!("SELECT registry_id FROM {META_TABLE} WHERE one = 1"), [], |row| {
        row.get::<_, String>(0)
    });
    match id {
        Ok(id) => Ok(Some(id)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(rusqlite::Error::SqliteFailure(e, Some(message)))
            if e.code == ErrorCode::Unknown && message.starts_with("no such table") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

enum Target {
    File(PathBuf),
    Memory,
}

/// What `register` or `take_over` found.
enum Claim {
    Done,
    InUse(Holder),
}

/// The row that refused a claim.
struct Holder {
    age_ms: i64,
    incarnation: i64,
    endpoint: String,
}

impl SqliteRegistry {
    /// Opens the registry at `url` (`sqlite://relative/path`,
    /// `sqlite:///absolute/path` or `sqlite::memory:`), creating the file
    /// and its tables if missing.
    pub async fn open(url: &str) -> Result<SqliteRegistry, RegistryError> {
        let shown_url = redact_password(url);
        let target = if url == "sqlite::memory:" {
            Target::Memory
        } else {
            match url.strip_prefix("sqlite://") {
                Some(path) if !path.is_empty() => Target::File(PathBuf::from(path)),
                _ => {
                    return Err(RegistryError::BadUrl {
                        url: shown_url,
                        reason: "expected `sqlite://PATH`, `sqlite:///ABSOLUTE/PATH` or `sqlite::memory:`"
                            .to_owned(),
                    })
                }
            }
        };
        let opening = tokio::task::spawn_blocking(move || open_blocking(target));
        let (conn, file) = match tokio::time::timeout(CALL_TIMEOUT, opening).await {
            Ok(Ok(Ok(opened))) => opened,
            Ok(Ok(Err(e))) => return Err(RegistryError::backend(&shown_url, format!("cannot open: {e}"))),
            Ok(Err(join)) => return Err(RegistryError::backend(&shown_url, format!("cannot open: {join}"))),
            Err(_) => {
                return Err(RegistryError::backend(
                    &shown_url,
                    format!("cannot open: no answer within {CALL_TIMEOUT:?}"),
                ))
            }
        };
        let interrupt = Arc::new(conn.get_interrupt_handle());
        Ok(SqliteRegistry {
            shown_url,
            conn: Arc::new(tokio::sync::Mutex::new(Opened { conn, file })),
            interrupt: Arc::new(Mutex::new(interrupt)),
            rows: RowChecker::default(),
        })
    }

    /// The URL this registry was opened with.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Runs `op` on the connection on the blocking pool, after checking that
    /// the file is still the one opened, within [`CALL_TIMEOUT`].
    async fn call<T, F>(&self, op: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let interrupt = Arc::clone(&self.interrupt);
        let work = async move {
            let mut opened = conn.lock_owned().await;
            tokio::task::spawn_blocking(move || {
                follow_the_path(&mut opened, &interrupt)?;
                op(&mut opened.conn).map_err(|e| e.to_string())
            })
            .await
        };
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(Ok(answer)) => answer.map_err(|message| RegistryError::backend(&self.shown_url, message)),
            Ok(Err(join)) => Err(RegistryError::backend(&self.shown_url, join)),
            Err(_) => {
                // The blocking call runs on; cut its statement short so the
                // connection is free for the next call.
                self.interrupt.lock().unwrap_or_else(PoisonError::into_inner).interrupt();
                Err(RegistryError::backend(&self.shown_url, format!("no answer within {CALL_TIMEOUT:?}")))
            }
        }
    }
}

/// Checks that the path still leads to the file `opened` holds; when it does
/// not, says so loudly, fails this call, and reopens the path for the next.
fn follow_the_path(
    opened: &mut Opened,
    interrupt: &Mutex<Arc<rusqlite::InterruptHandle>>,
) -> Result<(), String> {
    let Some(file) = &opened.file else { return Ok(()) };
    let Some(what) = file.lost_because()? else { return Ok(()) };
    let path = file.path.clone();
    let message = format!(
        "THE REGISTRY DATABASE FILE {} WAS {what} while this process was using it. This call fails; \
         the next ones use the file now at that path (created if missing), as every process \
         starting later does, so the machine's instances meet again in one file and register \
         again. Restore the file if this was not meant.",
        path.display()
    );
    tracing::error!(path = %path.display(), "{message}");
    match open_blocking(Target::File(path)) {
        Ok((conn, file)) => {
            *interrupt.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(conn.get_interrupt_handle());
            *opened = Opened { conn, file };
        }
        Err(e) => {
            // Nothing to follow yet (the directory went too, say): the next
            // call checks again against the old file, finds it lost again
            // and retries.
            tracing::warn!("cannot reopen the registry file yet: {e}");
        }
    }
    Err(message)
}

fn open_blocking(target: Target) -> Result<(Connection, Option<FileWatch>), String> {
    let text = |e: rusqlite::Error| e.to_string();
    let conn = match &target {
        Target::File(path) => Connection::open(path).map_err(text)?,
        Target::Memory => Connection::open_in_memory().map_err(text)?,
    };
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT).map_err(text)?;
    if let Target::File(_) = target {
        // No shared-memory map anywhere (module docs): the rollback journal,
        // and no memory-mapped reads of the main file either.
        let mode: String =
            conn.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0)).map_err(text)?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(format!(
                "cannot switch the file to the rollback journal (it stays in `{mode}` mode; \
                 is a process of an older version still using it in WAL mode?)"
            ));
        }
        conn.pragma_update(None, "mmap_size", 0).map_err(text)?;
        // Heartbeats are rewritten every few seconds: a power loss may drop
        // the last ones, which the next replace; an application crash loses
        // nothing with NORMAL.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(text)?;
    }
    // One immediate transaction: two first starts on one new file must not
    // both write a registry id.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS {MEMBERS_TABLE} (
             id            INTEGER PRIMARY KEY,
             incarnation   INTEGER NOT NULL,
             endpoint      TEXT    NOT NULL,
             cluster       TEXT,
             role          TEXT    NOT NULL,
             accepting     BOOLEAN NOT NULL,
             max_sessions  INTEGER NOT NULL,
             connected     INTEGER NOT NULL,
             heartbeat_at  INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS {MEMBERS_TABLE}_cluster ON {MEMBERS_TABLE} (cluster);
         CREATE TABLE IF NOT EXISTS {META_TABLE} (
             one          INTEGER PRIMARY KEY CHECK (one = 1),
             registry_id  TEXT    NOT NULL
         );
         INSERT OR IGNORE INTO {META_TABLE} (one, registry_id) VALUES (1, lower(hex(randomblob(16))));
         COMMIT;"
    ))
    .map_err(text)?;
    let Target::File(path) = target else { return Ok((conn, None)) };
    let registry_id = conn
        .query_row(&format!("SELECT registry_id FROM {META_TABLE} WHERE one = 1"), [], |row| row.get(0))
        .map_err(text)?;
    // Absolute, so a later change of working directory is not taken for a
    // deleted file.
    let path = std::path::absolute(&path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    let metadata = std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = FileWatch { identity: file_identity(&metadata), path, registry_id };
    Ok((conn, Some(file)))
}

/// A heartbeat's row as `?1..?8`: id, incarnation, endpoint, cluster, role,
/// accepting, max_sessions, connected (the order of the claim's columns).
fn row_params(hb: &Heartbeat, incarnation: Incarnation) -> [Value; 8] {
    [
        Value::Integer(i64::from(hb.id.0)),
        Value::Integer(incarnation.to_i64()),
        Value::Text(hb.endpoint.to_string()),
        hb.cluster.clone().map_or(Value::Null, Value::Text),
        Value::Text(role_text(hb.role).to_owned()),
        Value::Integer(i64::from(hb.accepting)),
        Value::Integer(i64::from(hb.workload.max_sessions)),
        Value::Integer(i64::from(hb.workload.connected)),
    ]
}

/// Claims the row of `hb.id` for `incarnation` when there is none, or the
/// stored one is ours, or it passes `{when}` (about the stored row and
/// `excluded`, ours, with `?9` bound to `extra`); else says who holds it.
fn claim_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    when: &str,
    extra: i64,
) -> rusqlite::Result<Claim> {
    // Immediate: the write lock is taken before the row is looked at, so two
    // processes claiming one id are served one after the other.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = tx.execute(
        &format!(
            "INSERT INTO {MEMBERS_TABLE}
                 (id, incarnation, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW_MS})
             ON CONFLICT (id) DO UPDATE SET
                 incarnation = excluded.incarnation, endpoint = excluded.endpoint,
                 cluster = excluded.cluster, role = excluded.role, accepting = excluded.accepting,
                 max_sessions = excluded.max_sessions, connected = excluded.connected,
                 heartbeat_at = excluded.heartbeat_at
             WHERE {MEMBERS_TABLE}.incarnation = excluded.incarnation OR {when}"
        ),
        rusqlite::params_from_iter(row_params(hb, incarnation).into_iter().chain([Value::Integer(extra)])),
    )?;
    let claim = if claimed > 0 { Claim::Done } else { holder_of(&tx, hb.id)? };
    tx.commit()?;
    Ok(claim)
}

/// [`Registry::register`]: a stale row (heartbeat at least `ttl_ms` old) is
/// free to claim.
fn register_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    ttl_ms: i64,
) -> rusqlite::Result<Claim> {
    let stale = format!("{MEMBERS_TABLE}.heartbeat_at <= excluded.heartbeat_at - ?9");
    claim_blocking(c, hb, incarnation, &stale, ttl_ms)
}

/// [`Registry::take_over`]: the row of `previous` is free to claim.
fn take_over_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    previous: Incarnation,
) -> rusqlite::Result<Claim> {
    let held_by_previous = format!("{MEMBERS_TABLE}.incarnation = ?9");
    claim_blocking(c, hb, incarnation, &held_by_previous, previous.to_i64())
}

/// Who holds the row of `id`, as [`Claim::InUse`].
fn holder_of(tx: &rusqlite::Transaction<'_>, id: InstanceId) -> rusqlite::Result<Claim> {
    tx.query_row(
        &format!("SELECT {NOW_MS} - heartbeat_at, incarnation, endpoint FROM {MEMBERS_TABLE} WHERE id = ?1"),
        [id.0],
        |row| {
            Ok(Claim::InUse(Holder {
                age_ms: row.get(0).unwrap_or(0),
                incarnation: row.get(1).unwrap_or(0),
                endpoint: row.get(2).unwrap_or_default(),
            }))
        },
    )
}

/// Every row of the cluster, each column read on its own: SQLite's columns
/// take any type, so one row's text in an integer column must skip that row,
/// not fail the read.
fn snapshot_blocking(
    c: &mut Connection,
    cluster: Option<&str>,
    kept_ms: i64,
) -> rusqlite::Result<Vec<StoredRow>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT id, endpoint, role, accepting, max_sessions, connected, {NOW_MS} - heartbeat_at
         FROM {MEMBERS_TABLE} WHERE cluster IS ?1 ORDER BY id"
    ))?;
    let rows = statement
        .query_map([cluster], |row| {
            let mut stored = StoredRow::empty();
            stored.id = stored.read("id", row.get(0));
            let age_ms: i64 = stored.read("heartbeat_at", row.get(6)).unwrap_or(0);
            stored.age_micros = age_ms.saturating_mul(1000);
            stored.endpoint = stored.read("endpoint", row.get(1)).unwrap_or_default();
            stored.role = stored.read("role", row.get(2)).unwrap_or_default();
            stored.accepting = stored.read("accepting", row.get(3)).unwrap_or(false);
            stored.max_sessions = stored.read("max_sessions", row.get(4)).unwrap_or(0);
            stored.connected = stored.read("connected", row.get(5)).unwrap_or(0);
            Ok(stored)
        })?
        .filter(|row| !matches!(row, Ok(stored) if stored.age_micros > kept_ms.saturating_mul(1000)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn in_use(id: InstanceId, holder: Holder) -> RegistryError {
    RegistryError::IdInUse {
        id,
        age: Duration::from_millis(u64::try_from(holder.age_ms).unwrap_or(0)),
        holder: Incarnation::from_i64(holder.incarnation),
        endpoint: holder.endpoint,
    }
}

impl Registry for SqliteRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            let ttl_ms = sql_millis(member_ttl);
            match self.call(move |c| register_blocking(c, &hb, incarnation, ttl_ms)).await? {
                Claim::Done => Ok(()),
                Claim::InUse(holder) => Err(in_use(heartbeat.id, holder)),
            }
        })
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            match self.call(move |c| take_over_blocking(c, &hb, incarnation, previous)).await? {
                Claim::Done => Ok(()),
                Claim::InUse(holder) => Err(in_use(heartbeat.id, holder)),
            }
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            let updated = self
                .call(move |c| {
                    c.execute(
                        &format!(
                            "UPDATE {MEMBERS_TABLE} SET
                                 endpoint = ?3, cluster = ?4, role = ?5, accepting = ?6,
                                 max_sessions = ?7, connected = ?8, heartbeat_at = {NOW_MS}
                             WHERE id = ?1 AND incarnation = ?2"
                        ),
                        rusqlite::params_from_iter(row_params(&hb, incarnation)),
                    )
                })
                .await?;
            if updated == 0 {
                return Err(RegistryError::Superseded { id: heartbeat.id });
            }
            Ok(())
        })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            let owned_cluster = cluster.map(str::to_owned);
            let member_ttl = timing.member_ttl;
            let kept_ms = sql_millis(member_ttl.saturating_mul(10));
            let rows = self.call(move |c| snapshot_blocking(c, owned_cluster.as_deref(), kept_ms)).await?;
            Ok(self.rows.members(&self.shown_url, rows, member_ttl))
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            let owned_cluster = cluster.map(str::to_owned);
            let older_ms = sql_millis(older_than);
            self.call(move |c| {
                c.execute(
                    &format!(
                        "DELETE FROM {MEMBERS_TABLE} WHERE cluster IS ?1 AND heartbeat_at < {NOW_MS} - ?2"
                    ),
                    rusqlite::params![owned_cluster, older_ms],
                )
            })
            .await
            .map(|deleted| deleted as u64)
        })
    }

    fn malformed_rows(&self) -> u64 {
        self.rows.skipped()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            self.call(move |c| {
                c.execute(
                    &format!("DELETE FROM {MEMBERS_TABLE} WHERE id = ?1 AND incarnation = ?2"),
                    rusqlite::params![id.0, incarnation.to_i64()],
                )
            })
            .await
            .map(|deleted| deleted > 0)
        })
    }
}
