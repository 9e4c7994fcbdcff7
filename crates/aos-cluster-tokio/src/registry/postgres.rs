//! The registry in PostgreSQL, for clusters that span machines.
//!
//! One connection per registry, opened at [`PostgresRegistry::connect`] and
//! reopened by the first call after it is lost (server restart, network cut,
//! idle kill). Every call, reconnection included, has a deadline
//! ([`CALL_TIMEOUT`]); a call that misses it drops the connection, so a hung
//! one is replaced on the next call. Each rule is one statement, so two
//! processes racing for one id are decided by the database's row lock.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config};

use super::row::{RowChecker, StoredRow};
use super::{
    redact_password, role_text, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError, CALL_TIMEOUT,
};

/// The member table: the layout of the registry module docs, plus the
/// columns incremental reads need (`changed_xid`, set by a trigger whenever a
/// write changes anything but a heartbeat's time moving on, hand-made writes
/// included; `removed`, a graceful stop's mark, so other readers see it). Its
/// own version: older builds' tables are left alone. Beside it,
/// `{TABLE}_gone` holds a tombstone per deleted row (a trigger writes it),
/// so readers learn of deletions too; the purge clears old tombstones.
pub const TABLE: &str = "aos_members_v3";

/// Two concurrent first starts must not race to create the table: PostgreSQL's
/// `CREATE TABLE IF NOT EXISTS` is not safe against itself, so creation holds
/// this transaction-scoped advisory lock ("aos_reg" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x61_6f73_5f72_6567;

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
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY});
                 DO $$ BEGIN
                 IF to_regclass('{TABLE}') IS NULL THEN
                     CREATE TABLE {TABLE} (
                         id            BIGINT      PRIMARY KEY,
                         incarnation   BIGINT      NOT NULL,
                         endpoint      TEXT        NOT NULL,
                         cluster       TEXT,
                         role          TEXT        NOT NULL,
                         accepting     BOOLEAN     NOT NULL,
                         max_sessions  BIGINT      NOT NULL,
                         connected     BIGINT      NOT NULL,
                         heartbeat_at  TIMESTAMPTZ NOT NULL,
                         removed       BOOLEAN     NOT NULL DEFAULT false,
                         changed_xid   xid8        NOT NULL DEFAULT pg_current_xact_id()
                     );
                     CREATE INDEX {TABLE}_changed ON {TABLE} (changed_xid);
                     CREATE INDEX {TABLE}_heartbeat ON {TABLE} (heartbeat_at);
                     CREATE TABLE {TABLE}_gone (
                         id            BIGINT      NOT NULL,
                         cluster       TEXT,
                         changed_xid   xid8        NOT NULL DEFAULT pg_current_xact_id(),
                         gone_at       TIMESTAMPTZ NOT NULL DEFAULT now()
                     );
                     CREATE INDEX {TABLE}_gone_changed ON {TABLE}_gone (changed_xid);
                     CREATE FUNCTION {TABLE}_gone() RETURNS trigger LANGUAGE plpgsql AS $f$
                     BEGIN
                         INSERT INTO {TABLE}_gone (id, cluster) VALUES (OLD.id, OLD.cluster);
                         RETURN OLD;
                     END $f$;
                     CREATE TRIGGER {TABLE}_gone AFTER DELETE ON {TABLE}
                         FOR EACH ROW EXECUTE FUNCTION {TABLE}_gone();
                     CREATE FUNCTION {TABLE}_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
                     BEGIN
                         IF TG_OP = 'UPDATE' AND NEW.changed_xid = OLD.changed_xid
                            AND (NEW.id, NEW.incarnation, NEW.endpoint, NEW.cluster, NEW.role,
                                 NEW.accepting, NEW.max_sessions, NEW.connected, NEW.removed)
                                IS NOT DISTINCT FROM
                                (OLD.id, OLD.incarnation, OLD.endpoint, OLD.cluster, OLD.role,
                                 OLD.accepting, OLD.max_sessions, OLD.connected, OLD.removed)
                            AND NEW.heartbeat_at >= OLD.heartbeat_at AND NEW.heartbeat_at <= now()
                         THEN
                             RETURN NEW;
                         END IF;
                         NEW.changed_xid := pg_current_xact_id();
                         RETURN NEW;
                     END $f$;
                     CREATE TRIGGER {TABLE}_changed BEFORE INSERT OR UPDATE ON {TABLE}
                         FOR EACH ROW EXECUTE FUNCTION {TABLE}_changed();
                 END IF;
                 END $$;"
            ))
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
}

fn needs_tls(mode: &str) -> bool {
    matches!(mode, "require" | "verify-ca" | "verify-full")
}

/// The URL's TLS parameters, taken out: tokio-postgres refuses `verify-ca`,
/// `verify-full` and `sslrootcert`, so a mode that needs TLS reaches it as
/// `require` and the verification is ours.
#[derive(Debug, PartialEq, Eq)]
struct SslParams {
    /// The URL for tokio-postgres.
    url: String,
    mode: Option<String>,
    rootcert: Option<String>,
}

impl SslParams {
    fn split(url: &str) -> Result<SslParams, String> {
        let mut mode = None;
        let mut rootcert = None;
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (base, params, separator) = if is_url {
            match url.split_once('?') {
                Some((base, query)) => (base, query, '&'),
                None => (url, "", '&'),
            }
        } else {
            ("", url, ' ')
        };
        let mut kept = Vec::new();
        for param in params.split(separator).filter(|p| !p.trim().is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let (key, value) = (key.trim(), value.trim());
            let value = if is_url { percent_decode(value) } else { value.trim_matches('\'').to_owned() };
            match key {
                "sslmode" => {
                    if !matches!(
                        value.as_str(),
                        "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
                    ) {
                        return Err(format!("sslmode={value} is not a libpq sslmode"));
                    }
                    if needs_tls(&value) {
                        kept.push("sslmode=require".to_owned());
                    } else {
                        // Without TLS support in the connector, tokio-postgres's `prefer`
                        // and `allow` connect in plain text; `disable` says so.
                        kept.push("sslmode=disable".to_owned());
                    }
                    mode = Some(value);
                }
                "sslrootcert" => rootcert = Some(value),
                _ => kept.push(param.trim().to_owned()),
            }
        }
        let url = if is_url {
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else {
            kept.join(" ")
        };
        Ok(SslParams { url, mode, rootcert })
    }
}

/// `%XX` escapes of a URL query value (a path in `sslrootcert`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PostgreSQL error with the server's own message when there is one
/// (`tokio_postgres::Error`'s `Display` says only "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// The columns a heartbeat writes, bound as `$1..$8` by [`row_params`].
const ROW_COLUMNS: &str = "id, incarnation, endpoint, cluster, role, accepting, max_sessions, connected";

/// A heartbeat's row as `$1..$8` (see [`ROW_COLUMNS`]).
struct RowValues {
    id: i64,
    incarnation: i64,
    endpoint: String,
    cluster: Option<String>,
    role: &'static str,
    accepting: bool,
    max_sessions: i64,
    connected: i64,
}

impl RowValues {
    fn new(hb: &Heartbeat, incarnation: Incarnation) -> RowValues {
        RowValues {
            id: i64::from(hb.id.0),
            incarnation: incarnation.to_i64(),
            endpoint: hb.endpoint.to_string(),
            cluster: hb.cluster.clone(),
            role: role_text(hb.role),
            accepting: hb.accepting,
            max_sessions: i64::from(hb.workload.max_sessions),
            connected: i64::from(hb.workload.connected),
        }
    }

    /// Every statement here goes out with its parameters' types, unnamed, in
    /// one round trip (`query_typed`): nothing prepared lives on a
    /// connection, which PgBouncer in transaction mode may hand to another
    /// client between two statements.
    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        vec![
            (&self.id, Type::INT8),
            (&self.incarnation, Type::INT8),
            (&self.endpoint, Type::TEXT),
            (&self.cluster, Type::TEXT),
            (&self.role, Type::TEXT),
            (&self.accepting, Type::BOOL),
            (&self.max_sessions, Type::INT8),
            (&self.connected, Type::INT8),
        ]
    }
}

/// Claims the row `$1..$8` when the stored one passes `{when}` (about `m`,
/// the stored row, and `EXCLUDED`, ours); then says whether it did and who
/// holds the row. The CTE's outer SELECT reads the table as it was when the
/// statement began: the row that refused the claim. A row committed by a
/// racing claim after that moment is not in that view (it comes back empty);
/// the next try sees it.
fn claim_statement(when: &str) -> String {
    format!(
        "WITH claim AS (
             INSERT INTO {TABLE} AS m ({ROW_COLUMNS}, heartbeat_at, removed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), false)
             ON CONFLICT (id) DO UPDATE SET
                 incarnation = EXCLUDED.incarnation, endpoint = EXCLUDED.endpoint,
                 cluster = EXCLUDED.cluster, role = EXCLUDED.role,
                 accepting = EXCLUDED.accepting, max_sessions = EXCLUDED.max_sessions,
                 connected = EXCLUDED.connected, heartbeat_at = EXCLUDED.heartbeat_at,
                 removed = false
             WHERE m.removed OR m.incarnation = EXCLUDED.incarnation OR {when}
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM claim), h.age, h.incarnation, h.endpoint
         FROM (SELECT 1) one
         LEFT JOIN (SELECT {AGE_MICROS} AS age, incarnation, endpoint FROM {TABLE} WHERE id = $1) h ON true"
    )
}

impl PostgresRegistry {
    /// Runs a claim ([`claim_statement`]) with `extra` as `$9`, retrying the
    /// race described there.
    async fn claim(
        &self,
        statement: &str,
        hb: &Heartbeat,
        incarnation: Incarnation,
        extra: (&(dyn ToSql + Sync), Type),
    ) -> Result<(), RegistryError> {
        let values = RowValues::new(hb, incarnation);
        for _ in 0..3 {
            let mut params = values.params();
            params.push(extra.clone());
            let row =
                self.call(|client| async move { client.query_typed_one(statement, &params).await }).await?;
            let claimed: i64 = row.try_get(0).map_err(|e| self.malformed(&e))?;
            if claimed > 0 {
                return Ok(());
            }
            let age: Option<i64> = row.try_get(1).map_err(|e| self.malformed(&e))?;
            if let Some(age_micros) = age {
                let holder: i64 = row.try_get(2).map_err(|e| self.malformed(&e))?;
                let endpoint: String = row.try_get(3).map_err(|e| self.malformed(&e))?;
                return Err(RegistryError::IdInUse {
                    id: hb.id,
                    age: Duration::from_micros(u64::try_from(age_micros).unwrap_or(0)),
                    holder: Incarnation::from_i64(holder),
                    endpoint,
                });
            }
        }
        // Three racing claims in a row: someone else holds it right now.
        Err(RegistryError::IdInUse {
            id: hb.id,
            age: Duration::ZERO,
            holder: incarnation,
            endpoint: String::new(),
        })
    }

    /// This process reads its own writes: the next snapshot reads what
    /// changed, whatever the replica's age (writes other than heartbeats are
    /// rare: a start, a stop, a purge that found something).
    async fn wrote(&self) {
        for replica in self.replicas.lock().await.values_mut() {
            replica.refreshed_at = None;
        }
    }

    /// A heartbeat rewrites this process's own row: patched into the
    /// replica in place (its time by the database clock as the replica
    /// reckons it), so the figures read back are the ones just written
    /// without a read per heartbeat.
    async fn wrote_own_row(&self, heartbeat: &Heartbeat) {
        let mut replicas = self.replicas.lock().await;
        let Some(replica) = replicas.get_mut(&heartbeat.cluster) else { return };
        let id = i64::from(heartbeat.id.0);
        let now_us = replica.refreshed_at.map(|at| replica.db_now_us(at));
        let (Some(now_us), Some((row, heartbeat_us))) = (now_us, replica.rows.get_mut(&id)) else {
            replica.refreshed_at = None;
            return;
        };
        row.endpoint = heartbeat.endpoint.to_string();
        row.role = role_text(heartbeat.role).to_owned();
        row.accepting = heartbeat.accepting;
        row.max_sessions = i64::from(heartbeat.workload.max_sessions);
        row.connected = i64::from(heartbeat.workload.connected);
        *heartbeat_us = now_us;
    }

    fn malformed(&self, e: &tokio_postgres::Error) -> RegistryError {
        RegistryError::backend(&self.shown_url, format!("the table {TABLE} has an unexpected layout: {e}"))
    }

    /// The cluster's rows from its replica, brought up to date first when
    /// its last read is older than [`refresh_interval`], in one statement:
    /// the rows changed since that read, the rows deleted since (their
    /// tombstones), and the rows whose heartbeat is late (older than
    /// `heartbeat_interval`: a member that stopped, or beats slowly). Every
    /// other row beat within the last `heartbeat_interval` and reads as that
    /// old ([`MemberTiming`]).
    async fn refresh(
        &self,
        cluster: Option<&str>,
        timing: MemberTiming,
    ) -> Result<Vec<StoredRow>, RegistryError> {
        let mut replicas = self.replicas.lock().await;
        let replica = replicas.entry(cluster.map(str::to_owned)).or_default();
        if let Some(at) = replica.refreshed_at.filter(|at| at.elapsed() < refresh_interval(timing)) {
            return Ok(replica.rows_at(replica.db_now_us(at), timing.member_ttl));
        }
        // Tombstones live `10 x member_ttl` (the purge's horizon): a replica
        // not read for half that reads everything rather than miss one.
        let fresh_enough =
            replica.read_at.is_some_and(|at| at.elapsed() < timing.member_ttl.saturating_mul(5));
        let horizon = if fresh_enough { replica.horizon } else { 0 };
        let read = self.read_changes(cluster, horizon, timing).await?;
        replica.apply(read, timing);
        Ok(replica.rows_at(replica.now_us, timing.member_ttl))
    }

    /// One read: the rows changed since `horizon` (every row when it is 0)
    /// and the cluster's late rows, with the figures that frame them.
    async fn read_changes(
        &self,
        cluster: Option<&str>,
        horizon: i64,
        timing: MemberTiming,
    ) -> Result<ChangeRead, RegistryError> {
        let cluster_param = cluster.map(str::to_owned);
        let late = sql_seconds(timing.heartbeat_interval);
        let rows = self
            .call(|client| async move {
                client
                    .query_typed(
                        &format!(
                            "SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT,
                                    (pg_snapshot_xmin(pg_current_snapshot())::text)::BIGINT,
                                    (SELECT array_agg(g.id) FROM {TABLE}_gone g
                                     WHERE g.changed_xid >= ($2::BIGINT)::text::xid8
                                       AND g.cluster IS NOT DISTINCT FROM $1),
                                    m.changed_xid >= ($2::BIGINT)::text::xid8,
                                    m.id, m.endpoint, m.role, m.accepting, m.max_sessions, m.connected,
                                    (EXTRACT(EPOCH FROM m.heartbeat_at) * 1000000)::BIGINT, m.removed,
                                    m.heartbeat_at < now() - $3::float8 * INTERVAL '1 second'
                             FROM (SELECT 1) one
                             LEFT JOIN {TABLE} m
                               ON m.cluster IS NOT DISTINCT FROM $1
                              AND (m.changed_xid >= ($2::BIGINT)::text::xid8
                                   OR m.heartbeat_at < now() - $3::float8 * INTERVAL '1 second' AND NOT m.removed)"
                        ),
                        &[(&cluster_param, Type::TEXT), (&horizon, Type::INT8), (&late, Type::FLOAT8)],
                    )
                    .await
            })
            .await?;
        let mut read = ChangeRead { full: horizon == 0, ..ChangeRead::default() };
        for row in &rows {
            read.now_us = row.try_get(0).map_err(|e| self.malformed(&e))?;
            read.horizon = row.try_get(1).map_err(|e| self.malformed(&e))?;
            read.gone =
                row.try_get::<_, Option<Vec<i64>>>(2).map_err(|e| self.malformed(&e))?.unwrap_or_default();
            // The empty side of the LEFT JOIN: nothing changed, nothing late.
            let Ok(Some(id)) = row.try_get::<_, Option<i64>>(4) else { continue };
            let changed: bool = row.try_get(3).map_err(|e| self.malformed(&e))?;
            let mut stored = StoredRow::empty();
            stored.id = Some(id);
            let heartbeat_us: i64 = stored.read("heartbeat_at", row.try_get(10)).unwrap_or(0);
            if row.try_get::<_, Option<bool>>(12).map_err(|e| self.malformed(&e))? == Some(true) {
                read.late.push((id, heartbeat_us));
            }
            if !changed {
                continue;
            }
            stored.endpoint = stored.read("endpoint", row.try_get(5)).unwrap_or_default();
            stored.role = stored.read("role", row.try_get(6)).unwrap_or_default();
            stored.accepting = stored.read("accepting", row.try_get(7)).unwrap_or(false);
            stored.max_sessions = stored.read("max_sessions", row.try_get(8)).unwrap_or(0);
            stored.connected = stored.read("connected", row.try_get(9)).unwrap_or(0);
            let removed: bool = stored.read("removed", row.try_get(11)).unwrap_or(false);
            read.changed.push((id, (!removed).then_some((stored, heartbeat_us))));
        }
        Ok(read)
    }
}

/// How old a replica may be before a snapshot reads again: half a
/// heartbeat interval, so a row that beats on time is never reported older
/// than one and a half (plus the snapshot's own age), below the default
/// `max_figure_age` of two. A read returns only what changed and what is
/// late, so reading this often costs the engine little.
fn refresh_interval(timing: MemberTiming) -> Duration {
    timing.heartbeat_interval / 2
}

/// What one read found.
#[derive(Debug, Default)]
struct ChangeRead {
    /// Whether it read every row (horizon 0).
    full: bool,
    /// The database's clock, microseconds since the epoch.
    now_us: i64,
    /// The oldest transaction still running: the next read's horizon.
    horizon: i64,
    /// Rows deleted since the horizon.
    gone: Vec<i64>,
    /// Rows changed since the horizon, `None` for removed ones.
    changed: Vec<(i64, Option<(StoredRow, i64)>)>,
    /// Rows whose heartbeat is late, with its time.
    late: Vec<(i64, i64)>,
}

impl Replica {
    /// The database's clock now, reckoned from the last read made `at`.
    fn db_now_us(&self, at: tokio::time::Instant) -> i64 {
        self.now_us.saturating_add(i64::try_from(at.elapsed().as_micros()).unwrap_or(i64::MAX))
    }

    /// Takes `read` in: changed rows as read, late rows at their time, and
    /// every other row as `heartbeat_interval` old unless known younger.
    fn apply(&mut self, read: ChangeRead, timing: MemberTiming) {
        if read.full {
            self.rows.clear();
        }
        for id in &read.gone {
            self.rows.remove(id);
        }
        for (id, row) in read.changed {
            match row {
                Some(row) => self.rows.insert(id, row),
                None => self.rows.remove(&id),
            };
        }
        let on_time_us = read
            .now_us
            .saturating_sub(i64::try_from(timing.heartbeat_interval.as_micros()).unwrap_or(i64::MAX));
        let late: std::collections::BTreeMap<i64, i64> = read.late.into_iter().collect();
        for (id, (_, heartbeat_us)) in self.rows.iter_mut() {
            *heartbeat_us = match late.get(id) {
                Some(&at) => at,
                None => (*heartbeat_us).max(on_time_us),
            };
        }
        self.horizon = read.horizon;
        self.now_us = read.now_us;
        let now = tokio::time::Instant::now();
        self.refreshed_at = Some(now);
        self.read_at = Some(now);
    }

    /// The rows with their ages at `now_us` (database clock), leaving out
    /// those older than `10 x member_ttl`.
    fn rows_at(&self, now_us: i64, member_ttl: Duration) -> Vec<StoredRow> {
        let kept = i64::try_from(member_ttl.saturating_mul(10).as_micros()).unwrap_or(i64::MAX);
        self.rows
            .values()
            .map(|(stored, heartbeat_us)| StoredRow {
                age_micros: now_us.saturating_sub(*heartbeat_us),
                ..stored.clone()
            })
            .filter(|row| row.age_micros <= kept)
            .collect()
    }
}

/// One cluster's rows as last read, kept up to date by incremental reads.
#[derive(Debug, Default)]
struct Replica {
    /// Rows by id, each with its heartbeat time (database clock, microseconds
    /// since the epoch; for a row that beats on time, an upper bound on its
    /// age); removed rows are dropped.
    rows: std::collections::BTreeMap<i64, (StoredRow, i64)>,
    /// The oldest transaction that was still running at the last read: every
    /// change by it or later is read next time (those before it were all
    /// committed, and read).
    horizon: i64,
    /// The database's clock at the last read, microseconds since the epoch.
    now_us: i64,
    /// When the last read was made (this process's clock).
    read_at: Option<tokio::time::Instant>,
    /// The same, but `None` after this process's own writes, so that the
    /// next snapshot reads at once.
    refreshed_at: Option<tokio::time::Instant>,
}

impl Registry for PostgresRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let ttl = sql_seconds(member_ttl);
            let statement = claim_statement("m.heartbeat_at <= now() - $9::float8 * INTERVAL '1 second'");
            self.claim(&statement, heartbeat, incarnation, (&ttl, Type::FLOAT8)).await?;
            self.wrote().await;
            Ok(())
        })
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let previous = previous.to_i64();
            let statement = claim_statement("m.incarnation = $9::BIGINT");
            self.claim(&statement, heartbeat, incarnation, (&previous, Type::INT8)).await?;
            self.wrote().await;
            Ok(())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let values = RowValues::new(heartbeat, incarnation);
            let params = values.params();
            let updated = self
                .call(|client| async move {
                    client
                        .execute_typed(
                            &format!(
                                "UPDATE {TABLE} SET
                                     endpoint = $3, cluster = $4, role = $5, accepting = $6,
                                     max_sessions = $7, connected = $8, heartbeat_at = now()
                                 WHERE id = $1 AND incarnation = $2 AND NOT removed"
                            ),
                            &params,
                        )
                        .await
                })
                .await?;
            if updated == 0 {
                return Err(RegistryError::Superseded { id: heartbeat.id });
            }
            self.wrote_own_row(heartbeat).await;
            Ok(())
        })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            let rows = self.refresh(cluster, timing).await?;
            Ok(self.rows.members(&self.shown_url, rows, timing.member_ttl))
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            let older = sql_seconds(older_than);
            let cluster = cluster.map(str::to_owned);
            let purged = self
                .call(|client| async move {
                    client
                        .execute_typed(
                            &format!(
                                "WITH tombstones AS (
                                     DELETE FROM {TABLE}_gone
                                     WHERE gone_at < now() - $2::float8 * INTERVAL '1 second'
                                 )
                                 DELETE FROM {TABLE}
                                 WHERE heartbeat_at < now() - $2::float8 * INTERVAL '1 second'
                                   AND cluster IS NOT DISTINCT FROM $1"
                            ),
                            &[(&cluster, Type::TEXT), (&older, Type::FLOAT8)],
                        )
                        .await
                })
                .await?;
            if purged > 0 {
                self.wrote().await;
            }
            Ok(purged)
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
            let (id, incarnation) = (i64::from(id.0), incarnation.to_i64());
            // Marked, not deleted: other instances' incremental reads see
            // the mark; the purge deletes it later.
            let removed = self
                .call(|client| async move {
                    client
                        .execute_typed(
                            &format!(
                                "UPDATE {TABLE} SET removed = true
                             WHERE id = $1 AND incarnation = $2 AND NOT removed"
                            ),
                            &[(&id, Type::INT8), (&incarnation, Type::INT8)],
                        )
                        .await
                })
                .await?;
            if removed > 0 {
                self.wrote().await;
            }
            Ok(removed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let got = SslParams::split(
            "postgres://u@127.0.0.1:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(got.url, "postgres://u@127.0.0.1:5432/db?application_name=x&sslmode=require");
        assert_eq!(got.mode.as_deref(), Some("verify-full"));
        assert_eq!(got.rootcert.as_deref(), Some("/tmp/ca.pem"));

        let plain = SslParams::split("postgres://u@h/db").unwrap();
        assert_eq!((plain.url.as_str(), plain.mode, plain.rootcert), ("postgres://u@h/db", None, None));

        let prefer = SslParams::split("postgresql://u@h/db?sslmode=prefer").unwrap();
        assert_eq!(prefer.url, "postgresql://u@h/db?sslmode=disable");

        let pairs = SslParams::split("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(pairs.url, "host=h user=u sslmode=require");
        assert_eq!(pairs.mode.as_deref(), Some("verify-ca"));
        assert_eq!(pairs.rootcert.as_deref(), Some("/ca.pem"));

        assert!(SslParams::split("postgres://h/db?sslmode=sometimes").is_err());
    }
}
