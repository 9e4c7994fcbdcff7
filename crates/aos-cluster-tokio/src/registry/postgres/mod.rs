//! The registry in PostgreSQL, for clusters that span machines.
//!
//! One connection per registry, opened at [`PostgresRegistry::connect`] and
//! reopened by the first call after it is lost (server restart, network cut,
//! idle kill). Every call, reconnection included, has a deadline
//! ([`CALL_TIMEOUT`]); a call that misses it drops the connection, so a hung
//! one is replaced on the next call. Each rule is one statement, so two
//! processes racing for one id are decided by the database's row lock.
//!
//! What a member costs the database per `heartbeat_interval`, whatever the
//! cluster's size: at most one heartbeat (a heartbeat whose figures this
//! handle last wrote is written only once per
//! [`MemberTiming::quiet_renewal`](super::MemberTiming::quiet_renewal)) and,
//! while it balances, one read of what changed; a purge per `member_ttl`
//! only when its last read saw a row old enough. Finding late rows scans the
//! cluster's rows, so members take turns: the cluster sweeps for them about
//! [`SWEEPS_PER_INTERVAL`](sweep::SWEEPS_PER_INTERVAL) times per interval
//! whatever its size, and marks what it finds, which every reader then reads
//! as a change.

mod replica;
mod schema;
mod sweep;
mod url;
mod writes;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Config};

use self::replica::Replica;
use self::url::{needs_tls, SslParams};
use self::writes::RowValues;
use super::row::RowChecker;
use super::{redact_password, BoxFuture, RegistryError, CALL_TIMEOUT};

/// The member table: the layout of the registry module docs, plus the
/// columns incremental reads need (`changed_xid`, set by a trigger whenever a
/// write changes anything but a heartbeat's time moving on, hand-made writes
/// included; `removed`, a graceful stop's mark, so other readers see it, which
/// a deletion by hand also becomes; `late`, set by the members' sweeps on a
/// row whose heartbeat is late and cleared by the row's next heartbeat, each
/// a change). The name carries the layout's version, so tables of older,
/// incompatible layouts are left alone; this layout's table from before
/// `late` existed is brought up to date in place at connection.
pub const TABLE: &str = "aos_members_v3";

/// How a connection is made: without TLS, or with rustls as the URL's
/// `sslmode` says (feature `tls`).
type Connector = Arc<dyn Fn(Config) -> BoxFuture<'static, Result<Client, String>> + Send + Sync>;

/// The registry in a PostgreSQL database.
pub struct PostgresRegistry {
    shown_url: String,
    config: Config,
    connector: Connector,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    rows: RowChecker,
    /// Each cluster's rows as last read (incremental reads).
    replicas: tokio::sync::Mutex<std::collections::BTreeMap<Option<String>, Replica>>,
    /// The `member_ttl` of the last register: how often a quiet heartbeat
    /// is written.
    member_ttl: std::sync::Mutex<Option<Duration>>,
    /// The row each member of this handle last wrote, and when.
    written: std::sync::Mutex<std::collections::BTreeMap<i64, (RowValues, tokio::time::Instant)>>,
    /// When this handle next sweeps each cluster for late rows.
    sweeps: std::sync::Mutex<std::collections::BTreeMap<Option<String>, tokio::time::Instant>>,
}

impl std::fmt::Debug for PostgresRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRegistry").field("url", &self.shown_url).finish_non_exhaustive()
    }
}

/// Seconds as PostgreSQL's `float8`, for `$n * INTERVAL '1 second'`; capped at
/// a century so the interval stays valid.
fn sql_seconds(duration: Duration) -> f64 {
    duration.min(Duration::from_secs(100 * 365 * 24 * 3600)).as_secs_f64()
}

/// A heartbeat's age by the database's clock, in microseconds.
const AGE_MICROS: &str = "(EXTRACT(EPOCH FROM now() - heartbeat_at) * 1000000)::BIGINT";

impl PostgresRegistry {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`,
    /// with the usual parameters, or `key=value` pairs), creating the table if
    /// missing.
    ///
    /// TLS (feature `tls`, rustls) as libpq's `sslmode` says: `require`
    /// (encrypted; the chain checked only when `sslrootcert` is given),
    /// `verify-ca` (chain checked) or `verify-full` (chain and host name
    /// checked). `sslrootcert=PATH` names the CA (PEM); `sslrootcert=system`,
    /// or no `sslrootcert` and no `~/.postgresql/root.crt`, uses the platform
    /// store. `disable`, `allow`, `prefer` and no `sslmode` connect without
    /// TLS. Without feature `tls`, a mode that needs TLS is
    /// [`RegistryError::BadUrl`].
    pub async fn connect(url: &str) -> Result<PostgresRegistry, RegistryError> {
        let shown_url = redact_password(url);
        let bad_url = |reason: String| RegistryError::BadUrl { url: shown_url.clone(), reason };
        let ssl = SslParams::split(url).map_err(bad_url)?;
        if let Some(mode) = ssl.mode.as_deref().filter(|m| needs_tls(m)) {
            return PostgresRegistry::connect_tls(&ssl.url, mode, ssl.rootcert.as_deref()).await;
        }
        let connector: Connector = Arc::new(|config: Config| {
            Box::pin(async move {
                let (client, connection) =
                    config.connect(tokio_postgres::NoTls).await.map_err(|e| error_text(&e))?;
                // The connection's end (and its error) shows up as
                // `Client::is_closed` and as the error of the call in flight;
                // the next call then reconnects.
                tokio::spawn(async move { drop(connection.await) });
                Ok(client)
            })
        });
        PostgresRegistry::connect_with(&ssl.url, connector).await
    }

    #[cfg(feature = "tls")]
    async fn connect_tls(
        url: &str,
        mode: &str,
        rootcert: Option<&str>,
    ) -> Result<PostgresRegistry, RegistryError> {
        use crate::tls::postgres::{client_config, PgSslMode};
        let mode = match mode {
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            _ => PgSslMode::VerifyFull,
        };
        let tls = client_config(mode, rootcert)
            .map_err(|reason| RegistryError::BadUrl { url: redact_password(url), reason })?;
        let make_tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let connector: Connector = Arc::new(move |config: Config| {
            let make_tls = make_tls.clone();
            Box::pin(async move {
                let (client, connection) = config.connect(make_tls).await.map_err(|e| error_text(&e))?;
                tokio::spawn(async move { drop(connection.await) });
                Ok(client)
            })
        });
        PostgresRegistry::connect_with(url, connector).await
    }

    #[cfg(not(feature = "tls"))]
    async fn connect_tls(
        url: &str,
        mode: &str,
        _rootcert: Option<&str>,
    ) -> Result<PostgresRegistry, RegistryError> {
        Err(RegistryError::BadUrl {
            url: redact_password(url),
            reason: format!("sslmode={mode} needs TLS: build aos-cluster-tokio with the `tls` feature"),
        })
    }

    async fn connect_with(url: &str, connector: Connector) -> Result<PostgresRegistry, RegistryError> {
        let shown_url = redact_password(url);
        let mut config = Config::from_str(url).map_err(|e| RegistryError::BadUrl {
            url: shown_url.clone(),
            reason: format!("not a PostgreSQL connection URL: {}", error_text(&e)),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CALL_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("aos-cluster registry");
        }
        let registry = PostgresRegistry {
            shown_url,
            config,
            connector,
            client: tokio::sync::Mutex::new(None),
            rows: RowChecker::default(),
            replicas: Default::default(),
            member_ttl: std::sync::Mutex::new(None),
            written: Default::default(),
            sweeps: Default::default(),
        };
        registry.call(|_| async { Ok(()) }).await.map_err(|e| match e {
            RegistryError::Backend { url, message } => {
                RegistryError::Backend { url, message: format!("cannot open: {message}") }
            }
            other => other,
        })?;
        Ok(registry)
    }

    /// The URL this registry was opened with, password hidden.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// The live client, reconnecting first if the last one's connection has
    /// closed.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|client| !client.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        let client = (self.connector)(self.config.clone()).await?;
        // One simple-protocol batch, one implicit transaction: the lock
        // holds until the end, so racing first starts create things once.
        client
            .batch_execute(&schema::create_or_upgrade())
            .await
            .map_err(|e| format!("cannot create the table {TABLE}: {}", error_text(&e)))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs `op` with a live client within [`CALL_TIMEOUT`] (reconnection
    /// included).
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let work = async {
            let client = self.client().await?;
            op(client).await.map_err(|e| error_text(&e))
        };
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(answer) => answer.map_err(|message| RegistryError::backend(&self.shown_url, message)),
            Err(_) => {
                *self.client.lock().await = None;
                Err(RegistryError::backend(&self.shown_url, format!("no answer within {CALL_TIMEOUT:?}")))
            }
        }
    }

    fn malformed(&self, e: &tokio_postgres::Error) -> RegistryError {
        RegistryError::backend(&self.shown_url, format!("the table {TABLE} has an unexpected layout: {e}"))
    }
}

/// A PostgreSQL error with the server's own message when there is one
/// (`tokio_postgres::Error`'s `Display` says only "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        // Each instance holds a connection of its own, so a cluster larger
        // than the server's limit fails here at every start past it: say
        // what lifts the limit.
        Some(db) if *db.code() == tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS => format!(
            "{e}: {} (every instance holds one connection: past the server's limit, \
             connect the instances through PgBouncer in `pool_mode = transaction`)",
            db.message()
        ),
        Some(db) => format!("{e}: {}", db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}
