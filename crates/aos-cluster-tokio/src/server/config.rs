//! The server's settings: the instance's own ([`InstanceConfig`]) plus the
//! driver's limits (SPEC "Drivers: limits" and its defaults table).

use std::net::SocketAddr;
use std::time::Duration;

use aos_cluster::config::{duration, MAX_DURATION};
use aos_cluster::InstanceConfig;
use serde::{Deserialize, Serialize};

use super::{AdmissionPolicy, ServerError};

/// What a server adds to its [`ServerConfig`] beyond the protocol: TLS
/// (feature `tls`) and an admission hook. The default is plain TCP and no
/// hook, exactly [`Server::bind`](super::Server::bind).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Every inbound connection over TLS; mutual TLS between instances.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ServerTls>,
    /// The application's say on each session request, before it counts.
    pub admission: Option<AdmissionPolicy>,
}

impl ServerOptions {
    /// Plain TCP.
    pub fn new() -> Self {
        ServerOptions::default()
    }

    /// Every inbound connection over TLS, peer links with mutual TLS.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Asks `policy`'s hook about every session request (see
    /// [`AdmissionPolicy`]): a request it refuses, or does not answer in
    /// time, is rejected `Unauthorized` and never counts.
    pub fn with_admission(mut self, policy: AdmissionPolicy) -> Self {
        self.admission = Some(policy);
        self
    }
}

/// Everything [`Server::bind`](super::Server::bind) needs. Reads from TOML or
/// JSON; durations are human strings (`"300ms"`, `"5s"`); only `listen` and
/// `instance` are required.
///
/// If `listen` has port 0 the system picks a free port, and the instance's
/// advertised endpoint takes that port (its host is kept): handy for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The instance: id, advertised endpoint, cluster, `max_sessions`, timers.
    pub instance: InstanceConfig,
    /// A connection must deliver a complete frame within this of opening
    /// (and any frame within this of its first byte), or it is closed.
    /// Default 5 s.
    #[serde(default = "defaults::first_frame_timeout", with = "duration")]
    pub first_frame_timeout: Duration,
    /// A connection that holds no session and sends nothing for this long
    /// after its last reply is closed. Default 60 s.
    #[serde(default = "defaults::idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Most connections open at once (protocol connections and sessions).
    /// At the limit new connections are refused at once and the instance
    /// advertises `accepting = false`. Default 10 000.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one IP address. Default 1 000.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Most sessions open at once from one IP address (SPEC "Drivers:
    /// admission policy"): the next session request from an address at its
    /// cap is rejected with `AddressLimit` before it counts. Off (`None`,
    /// the setting left out) by default: offices behind NAT share one
    /// address. Zero is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_ip: Option<usize>,
    /// A reply the peer does not take within this closes the connection
    /// (a client that never reads). Default 5 s.
    #[serde(default = "defaults::write_timeout", with = "duration")]
    pub write_timeout: Duration,
    /// TCP keepalive idle time on sessions handed to the application
    /// (`None`, written `"off"`: none), so a vanished client's session ends.
    /// Default 60 s.
    #[serde(default = "defaults::tcp_keepalive", with = "opt_duration")]
    pub tcp_keepalive: Option<Duration>,
    /// The first pause after a failed `accept` (out of file descriptors and
    /// the like); doubled on each further failure up to
    /// `accept_error_backoff_max`. Default 100 ms.
    #[serde(default = "defaults::accept_error_backoff", with = "duration")]
    pub accept_error_backoff: Duration,
    /// The longest pause after failed accepts. Default 1 s.
    #[serde(default = "defaults::accept_error_backoff_max", with = "duration")]
    pub accept_error_backoff_max: Duration,
    /// Admitted sessions waiting for [`Server::accept`](super::Server::accept);
    /// beyond it a new session's connection is closed. Default 1 024.
    #[serde(default = "defaults::accept_queue")]
    pub accept_queue: usize,
    /// Workload queries waiting on one peer link. Default 8.
    #[serde(default = "defaults::peer_queue")]
    pub peer_queue: usize,
    /// How long a graceful stop (SIGTERM, Ctrl-C or `POST /shutdown` in
    /// `aos-instance`; [`ServerHandle::shutdown_graceful`](super::ServerHandle::shutdown_graceful))
    /// waits for open sessions to end after it stops admitting new ones,
    /// before it closes them. Default 30 s; zero closes them at once.
    #[serde(default = "defaults::shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
}

/// The documented defaults, one function per field (serde needs them so).
mod defaults {
    use std::time::Duration;

    pub fn first_frame_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn max_connections_per_ip() -> usize {
        1_000
    }
    pub fn write_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn tcp_keepalive() -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
    pub fn accept_error_backoff() -> Duration {
        Duration::from_millis(100)
    }
    pub fn accept_error_backoff_max() -> Duration {
        Duration::from_secs(1)
    }
    pub fn accept_queue() -> usize {
        1024
    }
    pub fn peer_queue() -> usize {
        8
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
}

impl ServerConfig {
    /// `instance` listening on `listen`, every limit at its default.
    pub fn new(listen: SocketAddr, instance: InstanceConfig) -> Self {
        ServerConfig {
            listen,
            instance,
            first_frame_timeout: defaults::first_frame_timeout(),
            idle_timeout: defaults::idle_timeout(),
            max_connections: defaults::max_connections(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
            max_sessions_per_ip: None,
            write_timeout: defaults::write_timeout(),
            tcp_keepalive: defaults::tcp_keepalive(),
            accept_error_backoff: defaults::accept_error_backoff(),
            accept_error_backoff_max: defaults::accept_error_backoff_max(),
            accept_queue: defaults::accept_queue(),
            peer_queue: defaults::peer_queue(),
            shutdown_grace: defaults::shutdown_grace(),
        }
    }

    /// Every problem with this configuration (the instance's included).
    pub fn validate(&self) -> Result<(), ServerError> {
        let mut problems: Vec<String> = Vec::new();
        if let Err(e) = self.instance.validate() {
            problems.extend(e.problems.iter().map(|p| format!("instance: {p}")));
        }
        for (name, d) in [
            ("first_frame_timeout", self.first_frame_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("accept_error_backoff", self.accept_error_backoff),
        ] {
            if d.is_zero() {
                problems.push(format!("`{name}` must not be zero"));
            }
        }
        for (name, d) in [
            ("first_frame_timeout", self.first_frame_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("accept_error_backoff", self.accept_error_backoff),
            ("accept_error_backoff_max", self.accept_error_backoff_max),
            ("tcp_keepalive", self.tcp_keepalive.unwrap_or_default()),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if d > MAX_DURATION {
                problems.push(format!("`{name}` ({}) is longer than a year", duration::format(d)));
            }
        }
        if self.accept_error_backoff_max < self.accept_error_backoff {
            problems.push("`accept_error_backoff_max` must not be below `accept_error_backoff`".into());
        }
        if self.tcp_keepalive.is_some_and(|d| d.is_zero()) {
            problems.push("`tcp_keepalive` must not be zero (leave it out to switch it off)".into());
        }
        for (name, n) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("accept_queue", self.accept_queue),
            ("peer_queue", self.peer_queue),
        ] {
            if n == 0 {
                problems.push(format!("`{name}` must not be zero"));
            }
        }
        if self.max_sessions_per_ip == Some(0) {
            problems.push("`max_sessions_per_ip` must not be zero (leave it out to switch it off)".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ServerError::Config(problems.join("; ")))
        }
    }
}

/// serde for `Option<Duration>` as a human string or `"off"` (TOML has no null).
mod opt_duration {
    use std::time::Duration;

    use aos_cluster::config::duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&duration::format(*d)),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = <Option<String> as serde::Deserialize>::deserialize(d)?;
        match text.as_deref().map(str::trim) {
            None | Some("off") => Ok(None),
            Some(t) => duration::parse(t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_cluster::{Endpoint, InstanceId};

    fn valid() -> ServerConfig {
        let instance = InstanceConfig {
            cluster: Some("c".into()),
            ..InstanceConfig::new(InstanceId(1), Endpoint::new("h", 2712).unwrap(), 10)
        };
        ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), instance)
    }

    #[test]
    fn defaults_are_the_spec_table() {
        let c = valid();
        assert_eq!(c.first_frame_timeout, Duration::from_secs(5));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!((c.max_connections, c.max_connections_per_ip), (10_000, 1_000));
        assert!(c.tcp_keepalive.is_some());
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.max_sessions_per_ip, None, "off: offices share one address behind NAT");
        assert!(c.validate().is_ok());
    }

    #[test]
    #[cfg(feature = "admin")]
    fn max_sessions_per_ip_reads_from_toml_and_zero_is_refused() {
        let text = r#"
listen = "127.0.0.1:0"
max_sessions_per_ip = 3
[instance]
id = 1
endpoint = "h:2712"
cluster = "c"
max_sessions = 10
"#;
        let mut c: ServerConfig = toml::from_str(text).unwrap();
        assert_eq!(c.max_sessions_per_ip, Some(3));
        assert!(c.validate().is_ok());
        let off: ServerConfig = toml::from_str(&text.replace("max_sessions_per_ip = 3\n", "")).unwrap();
        assert_eq!(off.max_sessions_per_ip, None);
        c.max_sessions_per_ip = Some(0);
        let Err(ServerError::Config(text)) = c.validate() else { panic!("zero accepted") };
        assert!(text.contains("`max_sessions_per_ip` must not be zero"), "{text}");
    }

    #[test]
    fn every_problem_is_listed_including_the_instance_ones() {
        let mut c = valid();
        c.max_connections = 0;
        c.idle_timeout = Duration::ZERO;
        c.instance.max_sessions = 0;
        c.shutdown_grace = MAX_DURATION + Duration::from_secs(1);
        let Err(ServerError::Config(text)) = c.validate() else { panic!("accepted") };
        for needle in ["max_connections", "idle_timeout", "instance: `max_sessions`", "`shutdown_grace`"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
