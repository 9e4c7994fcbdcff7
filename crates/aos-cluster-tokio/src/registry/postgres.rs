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
use tokio_postgres::{Client, Config};

use super::{
    redact_password, role_text, BoxFuture, Incarnation, Registry, RegistryError, RowChecker, StoredRow,
    CALL_TIMEOUT, MEMBERS_TABLE,
};

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
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY});
                 CREATE TABLE IF NOT EXISTS {MEMBERS_TABLE} (
                     id            BIGINT      PRIMARY KEY,
                     incarnation   BIGINT      NOT NULL,
                     endpoint      TEXT        NOT NULL,
                     cluster       TEXT,
                     role          TEXT        NOT NULL,
                     accepting     BOOLEAN     NOT NULL,
                     max_sessions  BIGINT      NOT NULL,
                     connected     BIGINT      NOT NULL,
                     heartbeat_at  TIMESTAMPTZ NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {MEMBERS_TABLE}_cluster ON {MEMBERS_TABLE} (cluster);"
            ))
            .await
            .map_err(|e| format!("cannot create the table {MEMBERS_TABLE}: {}", error_text(&e)))?;
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

    /// Makes the row of `id` look `age` old by the database's clock, as if
    /// its owner had stopped heartbeating then. For tests that need an old
    /// row without waiting. Returns whether the row exists.
    #[doc(hidden)]
    pub async fn age_row_for_tests(&self, id: InstanceId, age: Duration) -> Result<bool, RegistryError> {
        let seconds = sql_seconds(age);
        self.call(|client| async move {
            client
                .execute(
                    &format!(
                        "UPDATE {MEMBERS_TABLE} SET heartbeat_at = now() - $2::float8 * INTERVAL '1 second'
                         WHERE id = $1"
                    ),
                    &[&i64::from(id.0), &seconds],
                )
                .await
        })
        .await
        .map(|updated| updated > 0)
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

impl Registry for PostgresRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat;
            let endpoint = hb.endpoint.to_string();
            let ttl = sql_seconds(member_ttl);
            // The CTE's outer SELECT reads the table as it was when the
            // statement began: the row that refused the claim, with its age.
            // A row committed by a racing claim after that moment is not in
            // that view (the age comes back NULL); the next try sees it.
            for _ in 0..3 {
                let endpoint = &endpoint;
                let row = self
                    .call(|client| async move {
                        client
                            .query_one(
                                &format!(
                                    "WITH claim AS (
                                         INSERT INTO {MEMBERS_TABLE} AS m
                                             (id, incarnation, endpoint, cluster, role, accepting,
                                              max_sessions, connected, heartbeat_at)
                                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
                                         ON CONFLICT (id) DO UPDATE SET
                                             incarnation = EXCLUDED.incarnation, endpoint = EXCLUDED.endpoint,
                                             cluster = EXCLUDED.cluster, role = EXCLUDED.role,
                                             accepting = EXCLUDED.accepting,
                                             max_sessions = EXCLUDED.max_sessions,
                                             connected = EXCLUDED.connected,
                                             heartbeat_at = EXCLUDED.heartbeat_at
                                         WHERE m.incarnation = EXCLUDED.incarnation
                                            OR m.heartbeat_at <= now() - $9::float8 * INTERVAL '1 second'
                                         RETURNING 1
                                     )
                                     SELECT (SELECT count(*) FROM claim),
                                            (SELECT {AGE_MICROS} FROM {MEMBERS_TABLE} WHERE id = $1)"
                                ),
                                &[
                                    &i64::from(hb.id.0),
                                    &incarnation.to_i64(),
                                    endpoint,
                                    &hb.cluster,
                                    &role_text(hb.role),
                                    &hb.accepting,
                                    &i64::from(hb.workload.max_sessions),
                                    &i64::from(hb.workload.connected),
                                    &ttl,
                                ],
                            )
                            .await
                    })
                    .await?;
                let claimed: i64 = row.get(0);
                let age_micros: Option<i64> = row.get(1);
                if claimed > 0 {
                    return Ok(());
                }
                if let Some(age_micros) = age_micros {
                    let age = Duration::from_micros(u64::try_from(age_micros).unwrap_or(0));
                    return Err(RegistryError::IdInUse { id: hb.id, age });
                }
            }
            // Three racing claims in a row: someone else holds it right now.
            Err(RegistryError::IdInUse { id: hb.id, age: Duration::ZERO })
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat;
            let endpoint = hb.endpoint.to_string();
            let updated = self
                .call(|client| async move {
                    client
                        .execute(
                            &format!(
                                "UPDATE {MEMBERS_TABLE} SET
                                     endpoint = $3, cluster = $4, role = $5, accepting = $6,
                                     max_sessions = $7, connected = $8, heartbeat_at = now()
                                 WHERE id = $1 AND incarnation = $2"
                            ),
                            &[
                                &i64::from(hb.id.0),
                                &incarnation.to_i64(),
                                &endpoint,
                                &hb.cluster,
                                &role_text(hb.role),
                                &hb.accepting,
                                &i64::from(hb.workload.max_sessions),
                                &i64::from(hb.workload.connected),
                            ],
                        )
                        .await
                })
                .await?;
            if updated == 0 {
                return Err(RegistryError::Superseded { id: hb.id });
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
            let purge = sql_seconds(purge_after);
            let rows = self
                .call(|client| async move {
                    let rows = client
                        .query(
                            &format!(
                                "WITH purged AS (
                                     DELETE FROM {MEMBERS_TABLE}
                                     WHERE cluster IS NOT DISTINCT FROM $1
                                       AND heartbeat_at < now() - $2::float8 * INTERVAL '1 second'
                                 )
                                 SELECT id, endpoint, role, accepting, max_sessions, connected, {AGE_MICROS}
                                 FROM {MEMBERS_TABLE}
                                 WHERE cluster IS NOT DISTINCT FROM $1
                                   AND heartbeat_at >= now() - $2::float8 * INTERVAL '1 second'
                                 ORDER BY id"
                            ),
                            &[&cluster, &purge],
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
                })
                .await?;
            Ok(self.rows.members(&self.shown_url, rows))
        })
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            self.call(|client| async move {
                client
                    .execute(
                        &format!("DELETE FROM {MEMBERS_TABLE} WHERE id = $1 AND incarnation = $2"),
                        &[&i64::from(id.0), &incarnation.to_i64()],
                    )
                    .await
            })
            .await
            .map(|deleted| deleted > 0)
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
