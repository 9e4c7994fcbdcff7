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

mod file;
mod statements;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use self::file::{follow_the_path, open_blocking, FileWatch};
use super::row::RowChecker;
use super::{redact_password, RegistryError, CALL_TIMEOUT};

/// How long an SQLite call waits for another process's write lock. Shorter
/// than [`CALL_TIMEOUT`], so a locked database fails as "database is locked"
/// rather than as a timeout.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(4);

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

enum Target {
    File(PathBuf),
    Memory,
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
