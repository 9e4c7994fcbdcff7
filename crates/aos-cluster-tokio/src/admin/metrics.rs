//! The Prometheus metrics of one instance. Counters mirror the server's own
//! (read at each scrape from [`ServerStats`]); the time-to-rank histogram is
//! fed by the server as handshakes are answered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use aos_cluster::wire::RejectReason;

use crate::server::{snake_case, RankObserver, ServerStats};

type Labels = Vec<(&'static str, String)>;

/// The metrics registry and its handles.
pub struct Metrics {
    registry: Registry,
    connected: Gauge,
    max_sessions: Gauge,
    accepting: Gauge,
    saturated: Gauge,
    connections_open: Gauge,
    peer_links: Gauge,
    handshakes: Counter,
    ranked_replies: Counter,
    sessions_admitted: Counter,
    sessions_rejected: Family<Labels, Counter>,
    sessions_ended: Counter,
    handshakes_refused: Family<Labels, Counter>,
    peer_timeouts: Counter,
    peer_unreachable: Counter,
    registry_errors: Family<Labels, Counter>,
    tls_handshake_failures: Counter,
    peer_queries_refused: Counter,
    registry_malformed_rows: Counter,
    snapshot_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    stale_replies: Counter,
    reservations: Counter,
    reservations_expired_unused: Counter,
    connections_refused: Family<Labels, Counter>,
    connections_closed: Family<Labels, Counter>,
    time_to_rank: Histogram,
}

fn set(counter: &Counter, value: u64) {
    // The server's counters are the truth; these mirror them at each scrape.
    counter.inner().store(value, Ordering::Relaxed);
}

fn set_in(family: &Family<Labels, Counter>, label: &'static str, value: &str, v: u64) {
    set(&family.get_or_create(&vec![(label, value.to_owned())]), v);
}

/// The reasons a session is refused for, shown (at 0) before any happens;
/// a reason the protocol adds shows up when first counted.
const KNOWN_REJECTIONS: [RejectReason; 5] = [
    RejectReason::Full,
    RejectReason::Draining,
    RejectReason::NotServing,
    RejectReason::Busy,
    RejectReason::AlreadyInSession,
];

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under the `aos_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aos");
        let m = Metrics {
            registry: Registry::default(),
            connected: Gauge::default(),
            max_sessions: Gauge::default(),
            accepting: Gauge::default(),
            saturated: Gauge::default(),
            connections_open: Gauge::default(),
            peer_links: Gauge::default(),
            handshakes: Counter::default(),
            ranked_replies: Counter::default(),
            sessions_admitted: Counter::default(),
            sessions_rejected: Family::default(),
            sessions_ended: Counter::default(),
            handshakes_refused: Family::default(),
            peer_timeouts: Counter::default(),
            peer_unreachable: Counter::default(),
            registry_errors: Family::default(),
            tls_handshake_failures: Counter::default(),
            peer_queries_refused: Counter::default(),
            registry_malformed_rows: Counter::default(),
            snapshot_age: Gauge::default(),
            stale_replies: Counter::default(),
            reservations: Counter::default(),
            reservations_expired_unused: Counter::default(),
            connections_refused: Family::default(),
            connections_closed: Family::default(),
            // 100 µs to ~3.3 s: a local ranking to a registry at its timeout.
            time_to_rank: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        registry.register("connected", "Sessions open on this instance", m.connected.clone());
        registry.register("max_sessions", "Max concurrent sessions", m.max_sessions.clone());
        registry.register("accepting", "1 while admitting new sessions (0: draining)", m.accepting.clone());
        registry.register(
            "saturated",
            "1 while at the connection cap or unable to accept (advertised as not accepting)",
            m.saturated.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open (protocol and sessions)",
            m.connections_open.clone(),
        );
        registry.register("peer_links", "Peer links open", m.peer_links.clone());
        registry.register("handshakes", "Handshake requests received", m.handshakes.clone());
        registry.register("ranked_replies", "Ranked replies sent", m.ranked_replies.clone());
        registry.register("sessions_admitted", "Sessions admitted", m.sessions_admitted.clone());
        registry.register(
            "sessions_rejected",
            "Session requests rejected, by reason (full, draining, not_serving, busy, already_in_session, ...)",
            m.sessions_rejected.clone(),
        );
        registry.register("sessions_ended", "Sessions ended", m.sessions_ended.clone());
        registry.register(
            "handshakes_refused",
            "Handshakes refused, by reason",
            m.handshakes_refused.clone(),
        );
        registry.register(
            "peer_timeouts",
            "Peers that did not answer within peer_timeout",
            m.peer_timeouts.clone(),
        );
        registry.register("peer_unreachable", "Peers declared unreachable", m.peer_unreachable.clone());
        registry.register(
            "registry_errors",
            "Registry calls that failed, by operation (heartbeat, snapshot, remove) and kind \
             (backend, superseded, id_in_use, timeout, ...)",
            m.registry_errors.clone(),
        );
        registry.register(
            "registry_malformed_rows",
            "Registry rows skipped as malformed, once per snapshot that skipped them",
            m.registry_malformed_rows.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Connections closed because their TLS handshake failed or did not finish in time",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "peer_queries_refused",
            "Connections closed for a workload query without a client certificate of the cluster",
            m.peer_queries_refused.clone(),
        );
        registry.register(
            "registry_snapshot_age_seconds",
            "Age of the last registry snapshot received (-1: none yet)",
            m.snapshot_age.clone(),
        );
        registry.register(
            "stale_replies",
            "Ranked replies built from an old snapshot",
            m.stale_replies.clone(),
        );
        registry.register("reservations", "Reservations counted by herd control", m.reservations.clone());
        registry.register(
            "reservations_expired_unused",
            "Reservations that reached reservation_ttl with no session and no report",
            m.reservations_expired_unused.clone(),
        );
        registry.register(
            "connections_refused",
            "New connections refused, by limit",
            m.connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed by the server, by reason",
            m.connections_closed.clone(),
        );
        registry.register(
            "time_to_rank_seconds",
            "Time from a handshake's arrival to its reply being queued",
            m.time_to_rank.clone(),
        );
        for reason in KNOWN_REJECTIONS {
            set_in(&m.sessions_rejected, "reason", &snake_case(&format!("{reason:?}")), 0);
        }
        Metrics { registry, ..m }
    }

    /// The observer to install with
    /// [`ServerHandle::set_rank_observer`](crate::ServerHandle::set_rank_observer).
    pub fn rank_observer(self: &Arc<Self>) -> RankObserver {
        let histogram = self.time_to_rank.clone();
        Arc::new(move |d: Duration| histogram.observe(d.as_secs_f64()))
    }

    /// The text exposition with `stats` as the current figures.
    pub fn render(&self, stats: &ServerStats) -> String {
        let i = &stats.instance;
        self.connected.set(i64::from(stats.workload.connected));
        self.max_sessions.set(i64::from(stats.workload.max_sessions));
        self.accepting.set(i64::from(stats.accepting));
        self.saturated.set(i64::from(stats.saturated));
        let (c, p, r) = (&stats.connections, &stats.peers, &stats.registry);
        self.connections_open.set(gauge(c.open as u64));
        self.peer_links.set(gauge(p.links as u64));
        set(&self.handshakes, i.round.handshakes);
        set(&self.ranked_replies, i.round.ranked_replies);
        set(&self.sessions_admitted, i.admission.sessions_accepted);
        for (reason, &count) in &stats.sessions.rejected {
            set_in(&self.sessions_rejected, "reason", reason, count);
        }
        set(&self.sessions_ended, i.admission.sessions_ended);
        set_in(&self.handshakes_refused, "reason", "busy", i.round.refused_busy);
        set_in(&self.handshakes_refused, "reason", "wrong_cluster", i.round.refused_wrong_cluster);
        set(&self.peer_timeouts, i.round.peer_silent);
        set(&self.peer_unreachable, i.round.peer_unreachable);
        for (operation, kinds) in &r.errors {
            for (kind, &count) in kinds {
                let labels = vec![("operation", operation.clone()), ("kind", kind.clone())];
                set(&self.registry_errors.get_or_create(&labels), count);
            }
        }
        set(&self.registry_malformed_rows, r.malformed_rows);
        set(&self.tls_handshake_failures, c.tls_handshake_failures);
        set(&self.peer_queries_refused, p.queries_refused);
        self.snapshot_age.set(r.snapshot_age.map_or(-1.0, |d| d.as_secs_f64()));
        set(&self.stale_replies, i.round.stale_replies);
        set(&self.reservations, i.herd.reservations_made);
        set(&self.reservations_expired_unused, i.herd.reservations_expired_unused);
        set_in(&self.connections_refused, "limit", "max_connections", c.refused_at_cap);
        set_in(&self.connections_refused, "limit", "max_connections_per_ip", c.refused_per_ip);
        for (reason, v) in [
            ("first_frame_timeout", c.closed_first_frame_timeout),
            ("idle_timeout", c.closed_idle_timeout),
            ("write_timeout", c.closed_write_timeout),
            ("malformed_frame", c.malformed_frames),
        ] {
            set_in(&self.connections_closed, "reason", reason, v);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
