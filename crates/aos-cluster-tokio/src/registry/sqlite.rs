//! The embedded registry: one SQLite file that every instance on a machine
//! shares (bundled SQLite, no system library).
//!
//! The file runs in WAL mode (readers never block the writer) with a busy
//! timeout, so several processes can write into it at once. SQLite calls block,
//! so each runs on tokio's blocking pool, never on the async workers, and each
//! has a deadline ([`CALL_TIMEOUT`]): past it the call fails and the statement
//! still running is interrupted.
//!
//! # A deleted or replaced file
//!
//! An open SQLite connection keeps using its file even after the path is
//! deleted or another file is moved over it, while every process that starts
//! later opens the new file: the cluster would split in two, silently. So the
//! registry remembers which file it opened (its device and inode, and a random
//! `registry_id` written into the file's one-row meta table at creation) and
//! checks, before every call, that the path still leads to that same file.
//! Once it does not, every call fails with a [`RegistryError::Backend`] that
//! says so (and the registry logs it once with `tracing::error!`); it never
//! goes on with either file. Only a restart of the process ends that state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{
    redact_password, role_text, sql_millis, BoxFuture, Incarnation, Registry, RegistryError, RowChecker,
    StoredRow, CALL_TIMEOUT, MEMBERS_TABLE,
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
    conn: Arc<tokio::sync::Mutex<Connection>>,
    interrupt: Arc<rusqlite::InterruptHandle>,
    /// `None` in memory: there is no file to lose.
    file: Option<Arc<FileWatch>>,
    rows: RowChecker,
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
    /// Set once the path no longer leads to the opened file; never cleared.
    lost: Mutex<Option<String>>,
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
    /// Whether the path still leads to the opened file. `Err` says why not,
    /// or why the check itself could not be made (then the call fails too,
    /// but the next one checks again).
    fn check(&self) -> Result<(), String> {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(message) = lost.as_ref() {
            return Err(message.clone());
        }
        match self.lost_because() {
            Ok(None) => Ok(()),
            Ok(Some(why)) => {
                let message = format!(
                    "THE REGISTRY DATABASE FILE {} WAS {why} while this process was using it. \
                     Refusing every registry call from now on: going on with the old file or the \
                     new one would silently split the cluster between two files. Restore the file \
                     or restart every instance of the machine on the same file.",
                    self.path.display()
                );
                tracing::error!(path = %self.path.display(), "{message}");
                *lost = Some(message.clone());
                Err(message)
            }
            Err(transient) => Err(transient),
        }
    }

    /// `Ok(Some(what happened))` once the file is gone or another one.
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
        // it in place): the id written into the file tells.
        match read_registry_id(&self.path) {
            Ok(Some(id)) if id == self.registry_id => Ok(None),
            Ok(_) => Ok(Some("REPLACED (the file holds another registry)")),
            Err(e) => match e.sqlite_error_code() {
                Some(ErrorCode::CannotOpen) => Ok(Some("DELETED")),
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

/// What `register` found.
enum Claim {
    Done,
    InUse { age_ms: i64 },
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
        let interrupt = conn.get_interrupt_handle();
        Ok(SqliteRegistry {
            shown_url,
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            interrupt: Arc::new(interrupt),
            file: file.map(Arc::new),
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
        let file = self.file.clone();
        let work = async move {
            let mut conn = conn.lock_owned().await;
            tokio::task::spawn_blocking(move || {
                if let Some(file) = &file {
                    file.check()?;
                }
                op(&mut conn).map_err(|e| e.to_string())
            })
            .await
        };
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(Ok(answer)) => answer.map_err(|message| RegistryError::backend(&self.shown_url, message)),
            Ok(Err(join)) => Err(RegistryError::backend(&self.shown_url, join)),
            Err(_) => {
                // The blocking call runs on; cut its statement short so the
                // connection is free for the next call.
                self.interrupt.interrupt();
                Err(RegistryError::backend(&self.shown_url, format!("no answer within {CALL_TIMEOUT:?}")))
            }
        }
    }

    /// Makes the row of `id` look `age` old by the database's clock, as if
    /// its owner had stopped heartbeating then. For tests that need an old
    /// row without waiting. Returns whether the row exists.
    #[doc(hidden)]
    pub async fn age_row_for_tests(&self, id: InstanceId, age: Duration) -> Result<bool, RegistryError> {
        let age_ms = sql_millis(age);
        self.call(move |c| {
            c.execute(
                &format!("UPDATE {MEMBERS_TABLE} SET heartbeat_at = {NOW_MS} - ?2 WHERE id = ?1"),
                rusqlite::params![id.0, age_ms],
            )
        })
        .await
        .map(|updated| updated > 0)
    }
}

fn open_blocking(target: Target) -> Result<(Connection, Option<FileWatch>), String> {
    let text = |e: rusqlite::Error| e.to_string();
    let conn = match &target {
        Target::File(path) => Connection::open(path).map_err(text)?,
        Target::Memory => Connection::open_in_memory().map_err(text)?,
    };
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT).map_err(text)?;
    if let Target::File(_) = target {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(text)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("cannot switch the file to WAL mode (it stays in `{mode}` mode)"));
        }
        // WAL makes NORMAL durable across application crashes; only a power
        // loss can drop the last heartbeats, which the next ones replace.
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
    let file = FileWatch { identity: file_identity(&metadata), path, registry_id, lost: Mutex::new(None) };
    Ok((conn, Some(file)))
}

fn register_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    ttl_ms: i64,
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
             WHERE {MEMBERS_TABLE}.incarnation = excluded.incarnation
                OR {MEMBERS_TABLE}.heartbeat_at <= excluded.heartbeat_at - ?9"
        ),
        rusqlite::params![
            hb.id.0,
            incarnation.to_i64(),
            hb.endpoint.to_string(),
            hb.cluster,
            role_text(hb.role),
            hb.accepting,
            hb.workload.max_sessions,
            hb.workload.connected,
            ttl_ms,
        ],
    )?;
    let claim = if claimed > 0 {
        Claim::Done
    } else {
        let age_ms = tx.query_row(
            &format!("SELECT {NOW_MS} - heartbeat_at FROM {MEMBERS_TABLE} WHERE id = ?1"),
            [hb.id.0],
            |row| row.get(0),
        )?;
        Claim::InUse { age_ms }
    };
    tx.commit()?;
    Ok(claim)
}

fn snapshot_blocking(
    c: &mut Connection,
    cluster: Option<&str>,
    purge_ms: i64,
) -> rusqlite::Result<Vec<StoredRow>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT id, endpoint, role, accepting, max_sessions, connected, {NOW_MS} - heartbeat_at
         FROM {MEMBERS_TABLE} WHERE cluster IS ?1 ORDER BY id"
    ))?;
    let rows = statement
        .query_map([cluster], |row| {
            let age_ms: i64 = row.get(6)?;
            Ok(StoredRow {
                id: row.get(0)?,
                endpoint: row.get(1)?,
                role: row.get(2)?,
                accepting: row.get(3)?,
                max_sessions: row.get(4)?,
                connected: row.get(5)?,
                age_micros: age_ms.saturating_mul(1000),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(statement);
    let (live, purged): (Vec<StoredRow>, Vec<StoredRow>) =
        rows.into_iter().partition(|row| row.age_micros <= purge_ms.saturating_mul(1000));
    // Only a snapshot that found old rows writes: the usual one stays a read,
    // which in WAL mode never waits for the writers.
    if !purged.is_empty() {
        c.execute(
            &format!("DELETE FROM {MEMBERS_TABLE} WHERE cluster IS ?1 AND heartbeat_at < {NOW_MS} - ?2"),
            rusqlite::params![cluster, purge_ms],
        )?;
    }
    Ok(live)
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
                Claim::InUse { age_ms } => Err(RegistryError::IdInUse {
                    id: heartbeat.id,
                    age: Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)),
                }),
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
                        rusqlite::params![
                            hb.id.0,
                            incarnation.to_i64(),
                            hb.endpoint.to_string(),
                            hb.cluster,
                            role_text(hb.role),
                            hb.accepting,
                            hb.workload.max_sessions,
                            hb.workload.connected,
                        ],
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
        purge_after: Duration,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            let owned_cluster = cluster.map(str::to_owned);
            let purge_ms = sql_millis(purge_after);
            let rows = self.call(move |c| snapshot_blocking(c, owned_cluster.as_deref(), purge_ms)).await?;
            Ok(self.rows.members(&self.shown_url, rows))
        })
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
