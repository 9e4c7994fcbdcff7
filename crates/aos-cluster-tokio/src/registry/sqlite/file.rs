//! The registry's file: opened with its tables, and followed when the path
//! comes to lead to another file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Opened, Target, SQLITE_BUSY_TIMEOUT};
use crate::registry::MEMBERS_TABLE;

/// The one-row table that names the file.
const META_TABLE: &str = "aos_registry_meta_v1";

/// Where the registry's file is, and what it was when opened.
#[derive(Debug)]
pub(super) struct FileWatch {
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

/// Checks that the path still leads to the file `opened` holds; when it does
/// not, says so loudly, fails this call, and reopens the path for the next.
pub(super) fn follow_the_path(
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

pub(super) fn open_blocking(target: Target) -> Result<(Connection, Option<FileWatch>), String> {
    let text = |e: rusqlite::Error| e.to_string();
    let conn = match &target {
        Target::File(path) => Connection::open(path).map_err(text)?,
        Target::Memory => Connection::open_in_memory().map_err(text)?,
    };
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT).map_err(text)?;
    if let Target::File(_) = target {
        // No shared-memory map anywhere (the sqlite module's docs): the
        // rollback journal, and no memory-mapped reads of the main file either.
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
