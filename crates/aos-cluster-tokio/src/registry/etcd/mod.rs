//! The registry in etcd: see [`EtcdRegistry`].

mod follower;
mod lease;
mod replica;
mod url;
mod value;
mod writes;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use etcd_client::{Client, ConnectOptions, GetOptions};
use tokio::sync::watch;

use self::url::EtcdUrl;
use self::value::Parsed;
use super::row::RowChecker;
use super::{redact_password, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError, CALL_TIMEOUT};

/// The version of the key layout and value format, in the key's path.
const MEMBERS_DIR: &str = "members_v1";

/// The registry in etcd (v3 API): membership by lease, a watched local
/// replica, fencing by transactions. Opened by [`super::open`] for
/// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (see [`EtcdRegistry::connect`]).
///
/// # Keys and values
///
/// One key per instance id, under the URL's prefix:
/// `<prefix>/members_v1/<id as 10 zero-padded digits>` (so etcd's byte order is
/// the order of ids, and ids are unique across every cluster that shares the
/// prefix, as in the SQL backends). Its value is a small JSON object, versioned
/// by its `v` field:
///
/// ```json
/// {"v":1,"incarnation":"deadbeef00000001","endpoint":"AOS01@aos1:2712","cluster":"c",
///  "role":"serving","accepting":true,"max_sessions":100,"connected":3}
/// ```
///
/// A value that does not parse (not JSON, a field of the wrong type, an
/// unknown version, role or endpoint, a key that names no id) is input from
/// outside: it is skipped and counted ([`Registry::malformed_rows`]), never
/// fails a snapshot, and holds no id (`register` claims its key). So is a key
/// without a lease (written by hand): it would never expire.
///
/// # Membership by lease
///
/// [`register`](Registry::register) grants a lease whose TTL is `member_ttl`
/// (rounded up to whole seconds, at least one) and writes the key under it.
/// A [`heartbeat`](Registry::heartbeat) renews the lease (one keep-alive on a
/// stream kept open) unless three more beats, spaced as the last ones, still
/// fit in what its last renewal bought (every 20 s with the defaults), and,
/// when they changed, writes the figures (one transaction): a process that
/// stops heartbeating (crashed, hung, or cut off) loses its key when its
/// lease expires, by etcd's clock, with no purge ([`purge`](Registry::purge)
/// deletes nothing).
///
/// # Fencing
///
/// Every write is a transaction that compares before it writes: `register`
/// creates the key only if it is absent (or takes it over from its own
/// incarnation, or from a holder whose lease has not been renewed for
/// `member_ttl`, comparing the `mod_revision` it read); `take_over` writes only
/// while the key still has the `mod_revision` read with the `previous`
/// incarnation in it; `heartbeat` and `remove` write only while the key still
/// has the `mod_revision` of this incarnation's last write (read again once when
/// this handle has not written it, or when an answer was lost).
///
/// # The replica
///
/// A registry whose snapshots are asked for keeps a replica of every key
/// under `<prefix>/members_v1/`: one prefix read (at revision R), then a watch
/// from R + 1 that applies every change. A snapshot is answered from it with
/// no round trip, once it has caught up with the newest revision this
/// registry has itself written or read (so a registry always sees its own
/// writes at once; other processes' writes arrive through the watch,
/// milliseconds later; [`EtcdRegistry::sync`] waits for everything committed
/// so far). The replica follows from the open for as long as snapshots use
/// it: one that no snapshot has used for the last snapshot's `member_ttl`
/// (2 s before the first snapshot) stops following (its watch cancelled,
/// its keys dropped), and the next snapshot, which reads the prefix itself,
/// starts it again. An instance that only serves, never balancing, soon
/// watches nothing. When the watch breaks (etcd restarted, the
/// connection lost, the history compacted) the replica reads everything again
/// and watches anew, with a growing pause between tries; meanwhile snapshots
/// read the prefix directly, and fail with [`RegistryError::Backend`] while
/// etcd is unreachable.
///
/// etcd keeps no time of a write, so a snapshot reports every live key one
/// `heartbeat_interval` old ([`MemberTiming`]): the most a member's figures
/// may be while it beats on time (it writes them at the beat that changes
/// them, and renewals do not reach the watch). A member that stops renewing
/// looks alive until its lease expires, `member_ttl` later, when its key goes.
///
/// # Cost
///
/// Per instance: a lease renewal per `member_ttl` less three beats, and per
/// heartbeat interval one transaction when the figures changed (the
/// server's writer publishes figures that move at every beat in steps:
/// [`FigureSteps`](super::FigureSteps)), whatever the cluster's size;
/// snapshots cost etcd nothing once the replica follows.
/// Each balancing instance's watch receives every member's writes (with
/// steady figures, none); a serving-only instance's, none.
///
/// TLS (feature `tls`, rustls) when the URL names etcd's CA:
/// `etcd://HOST:PORT/PREFIX?cacert=CA.pem`, plus `&cert=CLIENT.pem&key=CLIENT.key`
/// where etcd checks client certificates (`--client-cert-auth`); etcd's
/// certificate must name the host as the URL does. Without `cacert` the
/// connection is plain HTTP/2: keep etcd on a private network. etcd's own
/// authentication is used when the URL names a user
/// (`etcd://USER:PASSWORD@HOST:PORT/PREFIX`).
pub struct EtcdRegistry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry").field("url", &self.shared.shown_url).finish_non_exhaustive()
    }
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        // The leases are left to expire: a registry dropped without
        // `remove` is a process gone without a goodbye.
        let follower = self.shared.follower().take_task();
        if let Some(task) = follower {
            task.abort();
        }
    }
}

struct Shared {
    shown_url: String,
    client: Client,
    /// `<prefix>/members_v1/`.
    members: String,
    /// The replica's state: `Some(revision)` while the watch follows etcd
    /// (the revision everything up to which it has applied), `None` while
    /// broken.
    replica_state: watch::Sender<Option<i64>>,
    replica: Mutex<BTreeMap<Vec<u8>, Entry>>,
    /// The task that keeps the replica, while snapshots want it.
    follower: Mutex<follower::Follower>,
    /// Whole-prefix reads so far (replica loads and snapshots that read).
    prefix_reads: AtomicU64,
    /// The newest revision of a key under the prefix that this registry has
    /// written or read: a snapshot from the replica waits until the replica
    /// has applied it.
    seen: AtomicI64,
    /// This registry's own last writes, by id.
    owned: Mutex<BTreeMap<InstanceId, Owned>>,
    /// Each renewed lease's keep-alive stream.
    keepers: tokio::sync::Mutex<BTreeMap<i64, lease::Kept>>,
    /// The last `member_ttl` passed to `register`, for `take_over`'s lease.
    member_ttl: Mutex<Option<Duration>>,
    rows: RowChecker,
}

/// A key as the replica holds it: parsed once, when it changes.
struct Entry {
    mod_revision: i64,
    parsed: Parsed,
}

/// A write of this registry that later writes compare against.
#[derive(Debug, Clone, Copy)]
struct Owned {
    incarnation: Incarnation,
    mod_revision: i64,
    lease: i64,
    /// A digest of the value written: a heartbeat that would write the same
    /// value again only renews the lease.
    value_digest: u64,
}

fn error_text(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// `options` with TLS as `tls` names it: the files read now, so a missing or
/// unreadable one is a bad URL, not a failing connection.
#[cfg(feature = "tls")]
fn with_tls(options: ConnectOptions, tls: &url::EtcdTls) -> Result<ConnectOptions, String> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read =
        |what: &str, path: &str| std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"));
    let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read("the CA", &tls.cacert)?));
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read("the certificate", cert)?, read("the key", key)?));
    }
    Ok(options.with_tls(config))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_options: ConnectOptions, _tls: &url::EtcdTls) -> Result<ConnectOptions, String> {
    Err("`cacert` asks for TLS to etcd: build aos-cluster-tokio with the `tls` feature".to_owned())
}

impl EtcdRegistry {
    /// Connects to etcd at `url` (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`,
    /// optionally `etcd://USER:PASSWORD@HOST:PORT/PREFIX` for etcd's own
    /// authentication; no prefix means `aos-cluster`), checks that it answers,
    /// and starts following its member keys (for as long as the type's docs
    /// say: "The replica").
    pub async fn connect(url: &str) -> Result<EtcdRegistry, RegistryError> {
        let shown_url = redact_password(url);
        let parsed =
            EtcdUrl::parse(url).map_err(|reason| RegistryError::BadUrl { url: shown_url.clone(), reason })?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            // A connection that dies silently (no reset) breaks the watch
            // within these 15 s instead of leaving the replica stale.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some((name, password)) = &parsed.user {
            options = options.with_user(name.clone(), password.clone());
        }
        if let Some(tls) = &parsed.tls {
            options = with_tls(options, tls)
                .map_err(|reason| RegistryError::BadUrl { url: shown_url.clone(), reason })?;
        }
        let cannot_open =
            |message: String| RegistryError::backend(&shown_url, format!("cannot open: {message}"));
        let client =
            match tokio::time::timeout(CALL_TIMEOUT, Client::connect(&parsed.endpoints, Some(options))).await
            {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(cannot_open(error_text(&e))),
                Err(_) => return Err(cannot_open(format!("no answer within {CALL_TIMEOUT:?}"))),
            };
        let (replica_state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            shown_url: shown_url.clone(),
            client,
            members: format!("{}/{MEMBERS_DIR}/", parsed.prefix),
            replica_state,
            replica: Mutex::new(BTreeMap::new()),
            follower: Mutex::new(follower::Follower::new()),
            prefix_reads: AtomicU64::new(0),
            seen: AtomicI64::new(0),
            owned: Mutex::new(BTreeMap::new()),
            keepers: tokio::sync::Mutex::new(BTreeMap::new()),
            member_ttl: Mutex::new(None),
            rows: RowChecker::default(),
        });
        // One read proves etcd answers (the client connects lazily).
        let mut kv = shared.client.kv_client();
        let probe = kv.get(shared.members.clone(), Some(GetOptions::new().with_keys_only().with_limit(1)));
        match tokio::time::timeout(CALL_TIMEOUT, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(cannot_open(error_text(&e))),
            Err(_) => return Err(cannot_open(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
        shared.want_replica(None);
        Ok(EtcdRegistry { shared })
    }

    /// The URL this registry was opened with, password hidden.
    pub fn url(&self) -> &str {
        &self.shared.shown_url
    }

    /// Whether the replica follows etcd right now (snapshots then cost no
    /// round trip): from shortly after the open, for as long as snapshots
    /// use it (see "The replica" in the type's docs).
    pub fn replica_is_live(&self) -> bool {
        self.shared.replica_state.borrow().is_some()
    }

    /// The key of `id`'s member record.
    pub fn key_of(&self, id: InstanceId) -> String {
        self.shared.key(id)
    }

    /// How many times this registry has read its whole prefix: each load of
    /// the replica (at start and after a broken watch) and each snapshot that
    /// could not be answered from the replica.
    pub fn prefix_reads(&self) -> u64 {
        self.shared.prefix_reads.load(Ordering::Relaxed)
    }

    /// Waits until the replica has applied every change committed in etcd
    /// before this call: one read of the prefix's keys and revisions (no
    /// values), then a wait until the replica holds exactly those keys, or
    /// later versions. A snapshot alone sees this registry's own writes and
    /// reads at once and other processes' writes as soon as the watch brings
    /// them (milliseconds); after `sync`, it sees everything committed before.
    /// Waits for a replica still loading (just opened, or reloading after a
    /// broken watch); fails with [`RegistryError::Backend`] when etcd does not
    /// answer or the replica does not follow within [`CALL_TIMEOUT`].
    pub async fn sync(&self) -> Result<(), RegistryError> {
        self.shared.want_replica(None);
        self.shared.within(self.shared.sync()).await
    }
}

impl Shared {
    fn key(&self, id: InstanceId) -> String {
        format!("{}{:010}", self.members, id.0)
    }

    fn owned(&self) -> MutexGuard<'_, BTreeMap<InstanceId, Owned>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn replica(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        self.replica.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn saw(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::AcqRel);
    }

    fn backend(&self, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::backend(&self.shown_url, message)
    }

    /// Runs `work` within [`CALL_TIMEOUT`], its etcd errors as
    /// [`RegistryError::Backend`].
    async fn within<T>(
        &self,
        work: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(answer) => answer,
            Err(_) => Err(self.backend(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    fn failed(&self, what: &str, e: &etcd_client::Error) -> RegistryError {
        self.backend(format!("{what}: {}", error_text(e)))
    }
}

impl Registry for EtcdRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(self.shared.within(self.shared.register(heartbeat, incarnation, member_ttl)))
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(self.shared.within(self.shared.take_over(heartbeat, incarnation, previous)))
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(self.shared.within(self.shared.heartbeat(heartbeat, incarnation)))
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            self.shared.want_replica(Some(timing.member_ttl));
            self.shared.within(self.shared.snapshot(cluster, timing)).await
        })
    }

    /// Leases delete a member's key when its owner stops renewing it:
    /// nothing to purge.
    fn purge<'a>(
        &'a self,
        _cluster: Option<&'a str>,
        _older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async { Ok(0) })
    }

    fn malformed_rows(&self) -> u64 {
        self.shared.rows.skipped()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(self.shared.within(self.shared.remove(id, incarnation)))
    }
}
