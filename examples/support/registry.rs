//! The registry in a real database: the driver side of the instance's registry
//! actions (publish a heartbeat, query the members).
//!
//! Two backends behind one [`Registry`], chosen by URL:
//!
//! | URL                               | backend                                                  |
//! | --------------------------------- | -------------------------------------------------------- |
//! | `sqlite://relative/path.db`       | SQLite file, relative to the working directory           |
//! | `sqlite:///absolute/path.db`      | SQLite file, absolute path                               |
//! | `sqlite::memory:`                 | SQLite in memory, private to one `Registry` (tests, demos) |
//! | `postgres://user@host:port/db`    | PostgreSQL (also `postgresql://`, with the usual query parameters) |
//!
//! SQLite is the embedded default: one file that every instance on a machine
//! shares. It runs in WAL mode (readers never block the writer) with a busy
//! timeout of [`SQLITE_BUSY_TIMEOUT`], so several processes can publish into
//! the same file at once. PostgreSQL is for clusters that span machines.
//!
//! # The table
//!
//! Both backends create this table if it is missing (`CREATE TABLE IF NOT EXISTS`):
//!
//! ```sql
//! CREATE TABLE instances (
//!     id            BIGINT  PRIMARY KEY, -- InstanceId (u32); SQLite: INTEGER
//!     endpoint      TEXT    NOT NULL,    -- Endpoint's Display text, e.g. `AOS01@aos1:2712`
//!     cluster       TEXT,                -- cluster name; NULL for an instance in no cluster
//!     role          TEXT    NOT NULL,    -- `serving`, `load_balancer_only` or `standalone`
//!     accepting     BOOLEAN NOT NULL,    -- admits new sessions (false while draining); SQLite: 0/1
//!     max_sessions  BIGINT  NOT NULL,    -- "Max concurrent sessions" (u32); SQLite: INTEGER
//!     connected     BIGINT  NOT NULL,    -- sessions connected at the last heartbeat (u32)
//!     heartbeat_at  TIMESTAMPTZ NOT NULL -- the database's clock at the last heartbeat;
//!                                        -- SQLite: INTEGER milliseconds since the Unix epoch
//! );
//! CREATE INDEX instances_cluster ON instances (cluster);
//! ```
//!
//! One row per instance, keyed by `id` alone: ids are unique across every
//! cluster that shares the database.
//!
//! # Time
//!
//! `heartbeat_at` is always written by the database's own clock (`now()` in
//! PostgreSQL, `unixepoch('subsec')` in SQLite), never by the instance, and a
//! snapshot computes each member's `heartbeat_age` with that same clock at read
//! time. So instances whose clocks disagree still agree on ages; only a clock
//! that steps backwards can make a heartbeat look like it came from the future,
//! and such an age is reported as zero rather than negative. SQLite ages have
//! millisecond resolution, PostgreSQL ages microsecond resolution.
//!
//! # Rows that do not parse
//!
//! Nothing but the reader checks a row (the schema has no `CHECK`s, so a newer
//! writer with a new role does not break an older one's inserts). A row whose
//! endpoint does not parse with [`Endpoint::from_str`], whose role is unknown,
//! or whose numbers do not fit a `u32` is left out of the snapshot and listed
//! in [`Snapshot::skipped`] with the reason, for the driver to log; the other
//! members are still returned.
//!
//! # Failures
//!
//! [`Registry::connect`] opens the database, creates the table and fails with a
//! [`RegistryError::Open`] naming the URL (password hidden) if it cannot: a bad
//! or unreachable database is a start-up error. After that, each call returns
//! its own error and never panics; a PostgreSQL registry whose connection was
//! lost reconnects on its next call, and a call that gets no answer within
//! [`POSTGRES_TIMEOUT`] fails with [`RegistryError::Timeout`]. What to do while
//! the database is away (keep serving, answer with the last snapshot marked
//! stale) is the instance's decision, not the registry's.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::endpoint::Endpoint;
use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::workload::{InstanceId, Role, Workload};

/// How long an SQLite call waits for another process's write lock before it
/// fails with "database is locked".
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a PostgreSQL connection attempt or query may take before the call
/// fails with [`RegistryError::Timeout`].
pub const POSTGRES_TIMEOUT: Duration = Duration::from_secs(5);

/// Two concurrent first starts must not race to create the table: PostgreSQL's
/// `CREATE TABLE IF NOT EXISTS` is not safe against itself, so creation holds
/// this transaction-scoped advisory lock ("aos_reg" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x61_6f73_5f72_6567;

const SQLITE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS instances (
        id            INTEGER PRIMARY KEY,
        endpoint      TEXT    NOT NULL,
        cluster       TEXT,
        role          TEXT    NOT NULL,
        accepting     BOOLEAN NOT NULL,
        max_sessions  INTEGER NOT NULL,
        connected     INTEGER NOT NULL,
        heartbeat_at  INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS instances_cluster ON instances (cluster);";

const POSTGRES_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS instances (
        id            BIGINT      PRIMARY KEY,
        endpoint      TEXT        NOT NULL,
        cluster       TEXT,
        role          TEXT        NOT NULL,
        accepting     BOOLEAN     NOT NULL,
        max_sessions  BIGINT      NOT NULL,
        connected     BIGINT      NOT NULL,
        heartbeat_at  TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX IF NOT EXISTS instances_cluster ON instances (cluster);";

/// SQLite's clock in whole milliseconds since the Unix epoch.
const SQLITE_NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a registry call failed. Every variant names the registry's URL, with
/// any password replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The URL is not one of the supported forms.
    #[error(
        "unsupported registry URL `{0}`: expected `sqlite://PATH`, `sqlite::memory:` \
         or `postgres://USER@HOST:PORT/DB`"
    )]
    BadUrl(String),
    /// The database could not be opened or its table created (start-up, or a
    /// PostgreSQL reconnection).
    #[error("cannot open registry {url}: {source}")]
    Open {
        /// The registry's URL.
        url: String,
        /// What the database or the network said.
        #[source]
        source: BoxError,
    },
    /// A publish, snapshot or remove failed.
    #[error("registry {url}: {source}")]
    Query {
        /// The registry's URL.
        url: String,
        /// What the database said.
        #[source]
        source: BoxError,
    },
    /// PostgreSQL did not answer within [`POSTGRES_TIMEOUT`].
    #[error("registry {url} did not answer within {timeout:?}")]
    Timeout {
        /// The registry's URL.
        url: String,
        /// How long the call waited.
        timeout: Duration,
    },
}

/// A row left out of a snapshot because it does not describe a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// The row's `id` column as stored (it may not fit an [`InstanceId`]).
    pub id: i64,
    /// Why the row was left out.
    pub reason: String,
}

impl std::fmt::Display for SkippedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registry row id {} skipped: {}", self.id, self.reason)
    }
}

/// The members of one cluster as read at one moment, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The members whose rows parsed, ordered by id.
    pub members: Vec<MemberRecord>,
    /// The rows of that cluster that did not parse, ordered by id.
    pub skipped: Vec<SkippedRow>,
}

/// The registry database, shared by the instances of one or more clusters.
pub struct Registry {
    shown_url: String,
    backend: Backend,
}

enum Backend {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Box<Postgres>),
}

enum SqliteTarget {
    File(PathBuf),
    Memory,
}

impl Registry {
    /// Opens the registry at `url`, creating the table if it is missing.
    ///
    /// Fails with [`RegistryError::BadUrl`] for an unsupported URL and with
    /// [`RegistryError::Open`] when the database cannot be reached, opened or
    /// given its table.
    pub async fn connect(url: &str) -> Result<Registry, RegistryError> {
        let shown_url = redact_password(url);
        let open_error = |source: BoxError| RegistryError::Open { url: shown_url.clone(), source };
        let backend = if url == "sqlite::memory:" {
            Backend::Sqlite(open_sqlite(SqliteTarget::Memory).await.map_err(open_error)?)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(RegistryError::BadUrl(shown_url));
            }
            Backend::Sqlite(open_sqlite(SqliteTarget::File(path.into())).await.map_err(open_error)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config = tokio_postgres::Config::from_str(url).map_err(|e| open_error(e.into()))?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(POSTGRES_TIMEOUT);
            }
            if config.get_application_name().is_none() {
                config.application_name("aos-cluster registry");
            }
            let client = match tokio::time::timeout(POSTGRES_TIMEOUT, connect_postgres(&config)).await {
                Ok(client) => client.map_err(open_error)?,
                Err(_) => return Err(open_error(format!("no answer within {POSTGRES_TIMEOUT:?}").into())),
            };
            Backend::Postgres(Box::new(Postgres {
                config,
                client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            }))
        } else {
            return Err(RegistryError::BadUrl(shown_url));
        };
        Ok(Registry { shown_url, backend })
    }

    /// The URL this registry was opened with, password hidden.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Upserts the heartbeat's row by id, stamping `heartbeat_at` with the
    /// database's clock.
    pub async fn publish(&self, hb: &Heartbeat) -> Result<(), RegistryError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let hb = hb.clone();
                self.sqlite(conn, move |c| {
                    c.execute(
                        &format!(
                            "INSERT INTO instances
                                 (id, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {SQLITE_NOW_MS})
                             ON CONFLICT (id) DO UPDATE SET
                                 endpoint = excluded.endpoint, cluster = excluded.cluster,
                                 role = excluded.role, accepting = excluded.accepting,
                                 max_sessions = excluded.max_sessions, connected = excluded.connected,
                                 heartbeat_at = excluded.heartbeat_at"
                        ),
                        rusqlite::params![
                            hb.id.0,
                            hb.endpoint.to_string(),
                            hb.cluster,
                            role_text(hb.role),
                            hb.accepting,
                            hb.workload.max_sessions,
                            hb.workload.connected,
                        ],
                    )
                    .map(drop)
                })
                .await
            }
            Backend::Postgres(pg) => {
                let client = self.pg_client(pg).await?;
                let endpoint = hb.endpoint.to_string();
                self.pg_answer(
                    pg,
                    client.execute(
                        "INSERT INTO instances
                         (id, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                     ON CONFLICT (id) DO UPDATE SET
                         endpoint = EXCLUDED.endpoint, cluster = EXCLUDED.cluster,
                         role = EXCLUDED.role, accepting = EXCLUDED.accepting,
                         max_sessions = EXCLUDED.max_sessions, connected = EXCLUDED.connected,
                         heartbeat_at = EXCLUDED.heartbeat_at",
                        &[
                            &i64::from(hb.id.0),
                            &endpoint,
                            &hb.cluster,
                            &role_text(hb.role),
                            &hb.accepting,
                            &i64::from(hb.workload.max_sessions),
                            &i64::from(hb.workload.connected),
                        ],
                    ),
                )
                .await
                .map(drop)
            }
        }
    }

    /// The members whose `cluster` equals `cluster` (`None`: the rows with no
    /// cluster), ordered by id, each with its heartbeat's age by the database's
    /// clock now. Rows that do not parse are listed in [`Snapshot::skipped`].
    pub async fn snapshot(&self, cluster: Option<&str>) -> Result<Snapshot, RegistryError> {
        let rows = match &self.backend {
            Backend::Sqlite(conn) => {
                let cluster = cluster.map(str::to_owned);
                self.sqlite(conn, move |c| {
                    let mut statement = c.prepare(&format!(
                        "SELECT id, endpoint, role, accepting, max_sessions, connected,
                                MAX(0, {SQLITE_NOW_MS} - heartbeat_at) * 1000
                         FROM instances WHERE cluster IS ?1 ORDER BY id"
                    ))?;
                    let rows = statement.query_map([cluster], |row| {
                        Ok(StoredRow {
                            id: row.get(0)?,
                            endpoint: row.get(1)?,
                            role: row.get(2)?,
                            accepting: row.get(3)?,
                            max_sessions: row.get(4)?,
                            connected: row.get(5)?,
                            age_micros: row.get(6)?,
                        })
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let client = self.pg_client(pg).await?;
                let rows = self
                    .pg_answer(
                        pg,
                        client.query(
                            "SELECT id, endpoint, role, accepting, max_sessions, connected,
                            GREATEST(0, (EXTRACT(EPOCH FROM now() - heartbeat_at) * 1000000))::BIGINT
                     FROM instances WHERE cluster IS NOT DISTINCT FROM $1 ORDER BY id",
                            &[&cluster],
                        ),
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StoredRow {
                            id: row.try_get(0)?,
                            endpoint: row.try_get(1)?,
                            role: row.try_get(2)?,
                            accepting: row.try_get(3)?,
                            max_sessions: row.try_get(4)?,
                            connected: row.try_get(5)?,
                            age_micros: row.try_get(6)?,
                        })
                    })
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                    .map_err(|e| self.query_error(e.into()))?
            }
        };
        let mut snapshot = Snapshot::default();
        for row in rows {
            let id = row.id;
            match row.into_member() {
                Ok(member) => snapshot.members.push(member),
                Err(reason) => snapshot.skipped.push(SkippedRow { id, reason }),
            }
        }
        Ok(snapshot)
    }

    /// Deletes the instance's row (a clean shutdown). Returns whether there was
    /// one.
    pub async fn remove(&self, id: InstanceId) -> Result<bool, RegistryError> {
        match &self.backend {
            Backend::Sqlite(conn) => self
                .sqlite(conn, move |c| c.execute("DELETE FROM instances WHERE id = ?1", [id.0]))
                .await
                .map(|deleted| deleted > 0),
            Backend::Postgres(pg) => {
                let client = self.pg_client(pg).await?;
                self.pg_answer(pg, client.execute("DELETE FROM instances WHERE id = $1", &[&i64::from(id.0)]))
                    .await
                    .map(|deleted| deleted > 0)
            }
        }
    }

    /// Makes the instance's last heartbeat look `age` old by the database's
    /// clock, as if the instance had stopped publishing then. For tests and
    /// tooling that need an old row without waiting. Returns whether the row
    /// exists.
    pub async fn set_heartbeat_age(&self, id: InstanceId, age: Duration) -> Result<bool, RegistryError> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        match &self.backend {
            Backend::Sqlite(conn) => self
                .sqlite(conn, move |c| {
                    c.execute(
                        &format!("UPDATE instances SET heartbeat_at = {SQLITE_NOW_MS} - ?2 WHERE id = ?1"),
                        rusqlite::params![id.0, age_ms],
                    )
                })
                .await
                .map(|updated| updated > 0),
            Backend::Postgres(pg) => {
                let client = self.pg_client(pg).await?;
                self.pg_answer(pg, client.execute(
                    "UPDATE instances SET heartbeat_at = now() - $2 * INTERVAL '1 millisecond' WHERE id = $1",
                    &[&i64::from(id.0), &(age_ms as f64)],
                )).await.map(|updated| updated > 0)
            }
        }
    }

    fn query_error(&self, source: BoxError) -> RegistryError {
        RegistryError::Query { url: self.shown_url.clone(), source }
    }

    /// Runs `op` on the connection in the blocking pool: SQLite calls block,
    /// up to [`SQLITE_BUSY_TIMEOUT`] while another process holds the write lock.
    async fn sqlite<T, F>(&self, conn: &Arc<Mutex<rusqlite::Connection>>, op: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(conn);
        let answer = tokio::task::spawn_blocking(move || {
            // A panic inside an earlier call cannot leave the connection
            // half-written: SQLite rolls back an unfinished statement itself.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn)
        })
        .await;
        match answer {
            Ok(result) => result.map_err(|e| self.query_error(e.into())),
            Err(join_error) => Err(self.query_error(join_error.into())),
        }
    }

    /// The live PostgreSQL client, reconnecting first if the last one's
    /// connection has closed (server restart, network loss, idle kill).
    async fn pg_client(&self, pg: &Postgres) -> Result<Arc<tokio_postgres::Client>, RegistryError> {
        let mut slot = pg.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|client| !client.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        let client = match tokio::time::timeout(POSTGRES_TIMEOUT, connect_postgres(&pg.config)).await {
            Ok(client) => Arc::new(
                client.map_err(|source| RegistryError::Open { url: self.shown_url.clone(), source })?,
            ),
            Err(_) => return Err(self.timeout()),
        };
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Awaits a PostgreSQL call with [`POSTGRES_TIMEOUT`]. A call that times out
    /// drops the client, so a hung connection is replaced on the next call.
    async fn pg_answer<T>(
        &self,
        pg: &Postgres,
        call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(POSTGRES_TIMEOUT, call).await {
            Ok(answer) => answer.map_err(|e| self.query_error(e.into())),
            Err(_) => {
                *pg.client.lock().await = None;
                Err(self.timeout())
            }
        }
    }

    fn timeout(&self) -> RegistryError {
        RegistryError::Timeout { url: self.shown_url.clone(), timeout: POSTGRES_TIMEOUT }
    }
}

struct Postgres {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
}

async fn open_sqlite(target: SqliteTarget) -> Result<Arc<Mutex<rusqlite::Connection>>, BoxError> {
    let conn = tokio::task::spawn_blocking(move || -> Result<rusqlite::Connection, BoxError> {
        let conn = match &target {
            SqliteTarget::File(path) => rusqlite::Connection::open(path)?,
            SqliteTarget::Memory => rusqlite::Connection::open_in_memory()?,
        };
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
        if let SqliteTarget::File(_) = target {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(format!("cannot switch the file to WAL mode (it stays in `{mode}` mode)").into());
            }
            // WAL makes NORMAL durable across application crashes; only a power
            // loss can drop the last heartbeats, which the next ones replace.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        conn.execute_batch(SQLITE_SCHEMA)?;
        Ok(conn)
    })
    .await??;
    Ok(Arc::new(Mutex::new(conn)))
}

async fn connect_postgres(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    // The connection's end (and its error) shows up as `Client::is_closed` and
    // as the error of the call in flight; the next call then reconnects.
    tokio::spawn(async move { drop(connection.await) });
    client
        .batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {POSTGRES_SCHEMA}"))
        .await?;
    Ok(client)
}

/// A row as stored, before it is checked.
struct StoredRow {
    id: i64,
    endpoint: String,
    role: String,
    accepting: bool,
    max_sessions: i64,
    connected: i64,
    age_micros: i64,
}

impl StoredRow {
    fn into_member(self) -> Result<MemberRecord, String> {
        let id = u32::try_from(self.id).map_err(|_| format!("id {} is not a u32", self.id))?;
        let endpoint = Endpoint::from_str(&self.endpoint)
            .map_err(|e| format!("bad endpoint `{}`: {e}", self.endpoint))?;
        let role = parse_role(&self.role).ok_or_else(|| format!("unknown role `{}`", self.role))?;
        let max_sessions = u32::try_from(self.max_sessions)
            .map_err(|_| format!("max_sessions {} is not a u32", self.max_sessions))?;
        let connected = u32::try_from(self.connected)
            .map_err(|_| format!("connected {} is not a u32", self.connected))?;
        Ok(MemberRecord {
            id: InstanceId(id),
            endpoint,
            role,
            accepting: self.accepting,
            workload: Workload::new(connected, max_sessions),
            heartbeat_age: Duration::from_micros(u64::try_from(self.age_micros).unwrap_or(0)),
        })
    }
}

/// How a role is stored: the same snake_case names as its serde form.
pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Serving => "serving",
        Role::LoadBalancerOnly => "load_balancer_only",
        Role::Standalone => "standalone",
        _ => "unknown",
    }
}

/// The role stored as `text`, if it is one.
pub fn parse_role(text: &str) -> Option<Role> {
    [Role::Serving, Role::LoadBalancerOnly, Role::Standalone]
        .into_iter()
        .find(|&role| role_text(role) == text)
}

/// `url` with the password of `user:password@` and of a `password=` query
/// parameter replaced by `***`, so errors and logs can name the registry.
pub fn redact_password(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://").map(|i| i + 3) {
        let authority_end = shown[scheme_end..].find(['/', '?']).map_or(shown.len(), |i| scheme_end + i);
        if let Some(at) = shown[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) {
            if let Some(colon) = shown[scheme_end..at].find(':').map(|i| scheme_end + i) {
                shown.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(query_start) = shown.find('?') {
        let (head, query) = shown.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{head}{}", query.join("&"));
    }
    shown
}
