//! The registry ("the database"): member rows, read and written by instances.
//!
//! SPEC "Membership": a member row carries an [`Incarnation`], random per
//! process start. [`Registry::register`] refuses while a live row with the
//! same id has another incarnation; heartbeats and removal touch only the row
//! of their own incarnation; rows older than `10 x member_ttl` are purged.
//!
//! # Backends, chosen by URL ([`open`])
//!
//! | URL                            | backend                                                       |
//! | ------------------------------ | ------------------------------------------------------------- |
//! | `sqlite://relative/path.db`    | [`SqliteRegistry`], a file relative to the working directory (feature `sqlite`, default) |
//! | `sqlite:///absolute/path.db`   | [`SqliteRegistry`], an absolute path                          |
//! | `sqlite::memory:`              | [`SqliteRegistry`] in memory, private to that one registry    |
//! | `postgres://user@host:port/db` | [`PostgresRegistry`] (also `postgresql://`; feature `postgres`) |
//! | `etcd://host:2379[,host:2379...]/prefix` | [`EtcdRegistry`]: keys under `prefix` (default `aos-cluster`), membership by lease, a watched replica (feature `etcd`); `?cacert=CA.pem[&cert=C.pem&key=C.key]` for TLS (feature `tls`) |
//!
//! [`MemoryRegistry`] (no database, no URL) follows the same rules for tests
//! and simulations of the runtime.
//!
//! # The table
//!
//! Both databases hold one row per instance id (ids are unique across every
//! cluster that shares the database) in a table whose name carries the schema
//! version, so a later incompatible layout gets a new table instead of
//! misreading this one. SQLite's ([`MEMBERS_TABLE`]):
//!
//! ```sql
//! CREATE TABLE aos_members_v1 (
//!     id            BIGINT  PRIMARY KEY, -- InstanceId (u32)
//!     incarnation   BIGINT  NOT NULL,    -- Incarnation (u64, stored as the i64 of the same bits)
//!     endpoint      TEXT    NOT NULL,    -- Endpoint's Display text, e.g. `AOS01@aos1:2712`
//!     cluster       TEXT,                -- NULL for an instance in no cluster
//!     role          TEXT    NOT NULL,    -- `serving`, `load_balancer_only` or `standalone`
//!     accepting     BOOLEAN NOT NULL,
//!     max_sessions  BIGINT  NOT NULL,    -- u32
//!     connected     BIGINT  NOT NULL,    -- u32
//!     heartbeat_at  TIMESTAMPTZ NOT NULL -- the database's clock (SQLite: INTEGER ms since the epoch)
//! );
//! ```
//!
//! PostgreSQL's (`POSTGRES_MEMBERS_TABLE`, `aos_members_v3`) adds what its
//! incremental reads need: `changed_xid`, the transaction that last changed
//! the row (set by a trigger; a heartbeat that moves only the time leaves
//! it), `removed`, a graceful stop's mark (a deletion by hand becomes one
//! too), and `late`, the mark members sweeping in turn set on a row whose
//! heartbeat is late. A snapshot there reads only the rows changed since its
//! last read, so a cluster of M instances reads what changed, not M rows per
//! instance per second.
//!
//! etcd holds one key per instance id under the URL's prefix, the same fields
//! as a versioned JSON value, and no heartbeat time: the key lives under a
//! lease that heartbeats renew (see `EtcdRegistry`).
//!
//! # Time
//!
//! `heartbeat_at` is always written by the database's own clock, never by the
//! instance, and every age (a snapshot's `heartbeat_age`, the staleness test of
//! [`Registry::register`], the purge) is computed by that same clock. So
//! instances whose clocks disagree still agree on ages. A heartbeat that looks
//! as if it came from the future (the database clock stepped back) reads as
//! age zero, never negative. etcd's leases expire by etcd's clock, and it
//! keeps no time of a write: its snapshots report every live key one
//! `heartbeat_interval` old, as old as a member's figures may be while it
//! beats on time.
//!
//! # Rows that do not parse
//!
//! The database is input from outside: anyone with access can write any row,
//! and the schema has no `CHECK`s (a newer writer with a new role must not
//! break an older one's inserts). So the reader checks each row. A row with a
//! column it cannot read as its type, an endpoint that does not parse, an
//! unknown role, numbers that do not fit a `u32`, or a heartbeat more than
//! `member_ttl` in the future is left out of the snapshot, counted
//! ([`Registry::malformed_rows`]) and logged once (`tracing::warn!`, naming
//! the row and the reason) until it changes or goes away. It never fails the
//! snapshot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;

#[cfg(all(feature = "etcd", aos_etcd))]
mod etcd;
mod incarnation;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
mod steps;
mod timing;
mod url;

#[cfg(all(feature = "etcd", aos_etcd))]
pub use etcd::EtcdRegistry;
pub use incarnation::Incarnation;
pub use memory::MemoryRegistry;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresRegistry, TABLE as POSTGRES_MEMBERS_TABLE};
pub use row::{parse_role, role_text};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteRegistry;
pub use steps::{figure_step, FigureSteps, FIGURE_STEPS};
pub use timing::MemberTiming;
pub use url::redact_password;

use self::url::{url_kind, UrlKind};

/// The SQLite member table's name: prefixed, with the schema version.
pub const MEMBERS_TABLE: &str = "aos_members_v1";

/// How long one registry call may take (connecting, waiting for another
/// writer's lock, the query itself) before it fails with
/// [`RegistryError::Backend`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed, sendable future: the registry trait stays object safe
/// (`Arc<dyn Registry>`) without an extra dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A registry backend. Every call has its own deadline inside the backend and
/// never panics.
pub trait Registry: Send + Sync + 'static {
    /// Claims the row for `heartbeat.id` under `incarnation` and writes it,
    /// atomically: when there is no row, or it is this incarnation's, or its
    /// heartbeat is at least `member_ttl` old (a crashed predecessor). Fails
    /// with [`RegistryError::IdInUse`] while a row with that id has another
    /// incarnation and is younger than `member_ttl`; of two processes racing
    /// for a free id, exactly one wins.
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Updates this incarnation's row (every field, and `heartbeat_at` by the
    /// database's clock). [`RegistryError::Superseded`] when the row now
    /// belongs to another incarnation or is gone (removed, or purged after a
    /// long outage): nothing is written. A caller that wants to carry on calls
    /// [`register`](Registry::register) again, which succeeds if the row is
    /// gone or stale and fails with [`RegistryError::IdInUse`] while another
    /// live process holds it.
    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Claims the row for `heartbeat.id` from the incarnation `previous`
    /// that [`register`](Registry::register) found holding it (and that the
    /// caller has found gone: its endpoint did not answer), atomically: the
    /// row is written when it still belongs to `previous`, or when there is
    /// none. Fails with [`RegistryError::IdInUse`] when another incarnation
    /// holds it by now (a third process won the race), so a row is never taken
    /// from a process nobody checked.
    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// The cluster's member rows (`None`: rows of no cluster), ordered by id,
    /// with ages by the database's clock. Leaves out rows older than
    /// `10 x member_ttl` (left for [`purge`](Registry::purge)) and skips, and
    /// counts in [`malformed_rows`](Registry::malformed_rows), rows that do
    /// not parse or whose heartbeat lies more than `member_ttl` in the
    /// future (such a row would never age out). Backends may answer from a
    /// replica brought up to date with what changed since their last read,
    /// and report a row whose member beats on time at most one
    /// `heartbeat_interval` old (see [`MemberTiming`]).
    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>>;

    /// Deletes the cluster's rows older than `older_than` (the server passes
    /// `10 x member_ttl`, once per `member_ttl`), in one idempotent statement;
    /// the number deleted. Backends whose rows expire by themselves (etcd
    /// leases) delete nothing; backends that keep a replica (PostgreSQL) run
    /// the statement only when their replica, read recently, knows a row
    /// that old, or, with no recent read to judge by (an instance that does
    /// not balance), at most once per half of `older_than`.
    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>>;

    /// How many malformed rows snapshots have skipped, counted once per
    /// snapshot that skipped them.
    fn malformed_rows(&self) -> u64;

    /// Removes this incarnation's row (graceful stop); `Ok(false)` when the row
    /// is not ours (another incarnation took it, or it is gone).
    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>>;
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another live process holds this id.
    #[error("instance id {id} is in use by another live process at {endpoint} (its heartbeat is {age:?} old); refusing to start")]
    IdInUse {
        /// The id.
        id: InstanceId,
        /// How old the other process's heartbeat is.
        age: Duration,
        /// The incarnation that holds the row.
        holder: Incarnation,
        /// The endpoint its row advertises (as stored), where a starting
        /// process asks whether it still answers.
        endpoint: String,
    },
    /// Our row was taken over by another incarnation or removed.
    #[error("the registry row of instance {id} no longer belongs to this process")]
    Superseded {
        /// The id.
        id: InstanceId,
    },
    /// The URL names no backend, or one this build does not include.
    #[error("unsupported registry URL `{url}`: {reason}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// Why, and what is expected.
        reason: String,
    },
    /// Anything else (unreachable, timeout, corrupt, replaced file...).
    #[error("registry {url}: {message}")]
    Backend {
        /// The registry's URL, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl RegistryError {
    /// The kind, as counted in the server's figures: `id_in_use`,
    /// `superseded`, `bad_url` or `backend`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::IdInUse { .. } => "id_in_use",
            RegistryError::Superseded { .. } => "superseded",
            RegistryError::BadUrl { .. } => "bad_url",
            RegistryError::Backend { .. } => "backend",
        }
    }

    #[allow(dead_code)] // a build without database backends has no use for it
    pub(crate) fn backend(url: &str, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Backend { url: url.to_owned(), message: message.to_string() }
    }
}

/// Opens the registry at `url` (see the [module docs](self) for the forms),
/// creating its table if missing, behind the trait.
///
/// Fails with [`RegistryError::BadUrl`] for a URL of no known form or of a
/// backend this build leaves out (its cargo feature is off), and with
/// [`RegistryError::Backend`] when the database cannot be opened or reached.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aos_cluster_tokio::registry::{self, MemberTiming};
/// use aos_cluster_tokio::{Endpoint, InstanceConfig, InstanceId, Server, ServerConfig};
///
/// // The embedded SQLite registry, here in memory; instances on one machine
/// // share a file (`sqlite:///var/lib/aos/registry.db`).
/// let registry = registry::open("sqlite::memory:").await?;
/// let instance = InstanceConfig {
///     cluster: Some("demo".into()),
///     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 10)
/// };
/// let timing = MemberTiming::of(&instance);
/// let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, instance), registry.clone()).await?;
///
/// // `bind` wrote the instance's row.
/// let members = registry.snapshot(Some("demo"), timing).await?;
/// assert_eq!(members.len(), 1);
/// assert_eq!(&members[0].endpoint, server.endpoint());
///
/// // A URL of no known form says which forms there are.
/// let error = registry::open("mysql://db/aos").await.err().expect("not a registry URL");
/// assert!(error.to_string().contains("sqlite::memory:"));
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    match url_kind(url) {
        Some(UrlKind::Sqlite) => open_sqlite(url).await,
        Some(UrlKind::Postgres) => open_postgres(url).await,
        Some(UrlKind::Etcd) => open_etcd(url).await,
        None => Err(RegistryError::BadUrl {
            url: redact_password(url),
            reason: "expected `sqlite://PATH`, `sqlite:///ABSOLUTE/PATH`, `sqlite::memory:`, \
                     `postgres://USER@HOST:PORT/DB` (also `postgresql://`) \
                     or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`"
                .to_owned(),
        }),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(SqliteRegistry::open(url).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Err(url::missing_feature(url, "sqlite"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(PostgresRegistry::connect(url).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Err(url::missing_feature(url, "postgres"))
}

#[cfg(all(feature = "etcd", aos_etcd))]
async fn open_etcd(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(EtcdRegistry::connect(url).await?))
}

#[cfg(not(all(feature = "etcd", aos_etcd)))]
async fn open_etcd(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    // The etcd client's build runs `protoc`, which a machine with only the
    // Rust toolchain lacks: so the backend needs the `aos_etcd` cfg beside its
    // feature, and a build with the feature alone (`--all-features` on such a
    // machine) still builds, without it.
    Err(RegistryError::BadUrl {
        url: redact_password(url),
        reason: "this build of aos-cluster-tokio has no etcd backend; enable its cargo feature `etcd` \
                 and build with RUSTFLAGS=\"--cfg aos_etcd\" (the etcd client's build needs `protoc`, \
                 Debian's protobuf-compiler)"
            .to_owned(),
    })
}
