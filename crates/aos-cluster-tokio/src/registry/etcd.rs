//! The registry in etcd: see [`EtcdRegistry`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponseStream,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::row::{RowChecker, StoredRow};
use super::{
    redact_password, role_text, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError, CALL_TIMEOUT,
};

/// The version of the key layout and value format, in the key's path.
const MEMBERS_DIR: &str = "members_v1";

/// The value format's version, in its `v` field.
const VALUE_VERSION: u32 = 1;

/// Values longer than this are not parsed (a member's value is about 200
/// bytes): skipped as malformed.
const MAX_VALUE_LEN: usize = 4096;

/// The largest answer to a read of the whole prefix, or one watch message
/// (gRPC's default is 4 MiB, some 20 000 members).
const MAX_PREFIX_READ: usize = 64 << 20;

/// The prefix when the URL names none.
const DEFAULT_PREFIX: &str = "aos-cluster";

/// etcd's largest lease TTL, in seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How long a snapshot waits for the replica to catch up with this registry's
/// own writes before it reads the prefix directly instead.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The replica's pauses between tries while etcd cannot be followed.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The TTL of a lease for `member_ttl`: whole seconds, rounded up, at least
/// one (etcd's unit; etcd itself may raise a very short TTL to its minimum).
pub(crate) fn lease_ttl(member_ttl: Duration) -> i64 {
    let seconds = member_ttl.as_secs().saturating_add(u64::from(member_ttl.subsec_nanos() > 0));
    i64::try_from(seconds).unwrap_or(MAX_LEASE_TTL).clamp(1, MAX_LEASE_TTL)
}

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
/// Each [`heartbeat`](Registry::heartbeat) renews the lease (one keep-alive on
/// a stream kept open) and, when they changed, writes the figures (one
/// transaction): a process that stops heartbeating
/// (crashed, hung, or cut off) loses its key when its lease expires, by
/// etcd's clock, with no purge ([`purge`](Registry::purge) deletes nothing).
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
/// Each registry keeps a replica of every key under `<prefix>/members_v1/`: one
/// prefix read (at revision R), then a watch from R + 1 that applies every
/// change. A snapshot is answered from it with no round trip, once it has
/// caught up with the newest revision this registry has itself written or
/// read (so a registry always sees its own writes at once; other processes'
/// writes arrive through the watch, milliseconds later; [`EtcdRegistry::sync`]
/// waits for everything committed so far). When the watch breaks
/// (etcd restarted, the connection lost, the history compacted) the replica
/// reads everything again and watches anew, with a growing pause between tries;
/// meanwhile snapshots read the prefix directly, and fail with
/// [`RegistryError::Backend`] while etcd is unreachable.
///
/// Heartbeat ages in a snapshot are by this process's clock (tokio's): the time
/// since the replica last saw the key written, at most `heartbeat_interval`
/// ([`MemberTiming`]: renewals do not reach the watch, so a key that is
/// still there reads as renewed on time). Keys found by a (re)read count as
/// written at that moment. A member that stops renewing looks alive until its
/// lease expires, `member_ttl` later, when its key goes.
///
/// # Cost
///
/// Per instance and heartbeat interval: one lease renewal, and one
/// transaction when the figures changed, whatever the cluster's size;
/// snapshots cost etcd nothing. Each instance's watch receives every member's
/// writes: with steady figures, none.
///
/// The connection is plain HTTP/2 (no TLS in this build): keep etcd on a
/// private network. etcd's own authentication is used when the URL names a
/// user (`etcd://USER:PASSWORD@HOST:PORT/PREFIX`).
pub struct EtcdRegistry {
    shared: Arc<Shared>,
    follower: JoinHandle<()>,
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
        self.follower.abort();
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
    /// Whole-prefix reads so far (replica loads and snapshots that read).
    prefix_reads: AtomicU64,
    /// The newest revision of a key under the prefix that this registry has
    /// written or read: a snapshot from the replica waits until the replica
    /// has applied it.
    seen: AtomicI64,
    /// This registry's own last writes, by id.
    owned: Mutex<BTreeMap<InstanceId, Owned>>,
    /// Each renewed lease's keep-alive stream.
    keepers: tokio::sync::Mutex<BTreeMap<i64, (LeaseKeeper, LeaseKeepAliveStream)>>,
    /// The last `member_ttl` passed to `register`, for `take_over`'s lease.
    member_ttl: Mutex<Option<Duration>>,
    rows: RowChecker,
}

/// A key as the replica holds it: parsed once, when it changes.
struct Entry {
    mod_revision: i64,
    seen_at: Instant,
    parsed: Parsed,
}

/// What one key holds, checked as far as this layer can (the rest is
/// [`RowChecker`]'s).
#[derive(Debug, Clone)]
struct Parsed {
    id: Option<i64>,
    /// Why the key or value cannot be read, if it cannot.
    unreadable: Option<String>,
    value: Option<Value>,
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

/// A digest of a key's value, to tell whether a heartbeat changes it.
fn digest(value: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same value always has the same digest.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The value's fields as written.
#[derive(Serialize)]
struct ValueOut<'a> {
    v: u32,
    incarnation: String,
    endpoint: String,
    cluster: Option<&'a str>,
    role: &'static str,
    accepting: bool,
    max_sessions: u32,
    connected: u32,
}

/// The value's fields as read: wide types, checked by [`RowChecker`] like a
/// SQL row's columns.
#[derive(Debug, Clone, Deserialize)]
struct Value {
    v: u32,
    incarnation: String,
    endpoint: String,
    cluster: Option<String>,
    role: String,
    accepting: bool,
    max_sessions: i64,
    connected: i64,
}

impl Value {
    fn incarnation(&self) -> Option<Incarnation> {
        (self.incarnation.len() == 16)
            .then(|| u64::from_str_radix(&self.incarnation, 16).ok().map(Incarnation))
            .flatten()
    }
}

fn encode(heartbeat: &Heartbeat, incarnation: Incarnation) -> Vec<u8> {
    let value = ValueOut {
        v: VALUE_VERSION,
        incarnation: incarnation.to_string(),
        endpoint: heartbeat.endpoint.to_string(),
        cluster: heartbeat.cluster.as_deref(),
        role: role_text(heartbeat.role),
        accepting: heartbeat.accepting,
        max_sessions: heartbeat.workload.max_sessions,
        connected: heartbeat.workload.connected,
    };
    // Serializing strings, numbers and booleans into memory cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A key and value from etcd, checked: the id from the key, the fields from
/// the value.
fn parse(members: &str, key: &[u8], value: &[u8]) -> Parsed {
    let suffix = key.strip_prefix(members.as_bytes()).unwrap_or(key);
    let id = std::str::from_utf8(suffix)
        .ok()
        .filter(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i64>().ok());
    let Some(id) = id else {
        let shown: String = String::from_utf8_lossy(suffix).chars().take(40).collect();
        return Parsed {
            id: None,
            unreadable: Some(format!("key `{shown}` names no instance id")),
            value: None,
        };
    };
    let unreadable = |reason: String| Parsed { id: Some(id), unreadable: Some(reason), value: None };
    if value.len() > MAX_VALUE_LEN {
        return unreadable(format!("value of {} bytes (at most {MAX_VALUE_LEN})", value.len()));
    }
    let value: Value = match serde_json::from_slice(value) {
        Ok(value) => value,
        Err(e) => return unreadable(format!("value is not a member record: {e}")),
    };
    if value.v != VALUE_VERSION {
        return unreadable(format!("value version {} (this build reads {VALUE_VERSION})", value.v));
    }
    if value.incarnation().is_none() {
        return unreadable(format!("incarnation `{}` is not 16 hex digits", value.incarnation));
    }
    Parsed { id: Some(id), unreadable: None, value: Some(value) }
}

/// A key as etcd holds it, checked: [`parse`], and a lease, without which
/// the key would never expire (written by hand).
fn check(members: &str, found: &KeyValue) -> Parsed {
    let parsed = parse(members, found.key(), found.value());
    if parsed.unreadable.is_none() && found.lease() == 0 {
        return Parsed {
            id: parsed.id,
            unreadable: Some("the key has no lease: it would never expire".to_owned()),
            value: None,
        };
    }
    parsed
}

impl Parsed {
    fn incarnation(&self) -> Option<Incarnation> {
        self.value.as_ref().and_then(Value::incarnation)
    }

    fn cluster(&self) -> Option<Option<&str>> {
        self.value.as_ref().map(|value| value.cluster.as_deref())
    }

    fn stored_row(&self, age: Duration) -> StoredRow {
        let mut row = StoredRow::empty();
        row.id = self.id;
        row.unreadable.clone_from(&self.unreadable);
        if let Some(value) = &self.value {
            row.endpoint.clone_from(&value.endpoint);
            row.role.clone_from(&value.role);
            row.accepting = value.accepting;
            row.max_sessions = value.max_sessions;
            row.connected = value.connected;
        }
        row.age_micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        row
    }
}

/// The parts of an `etcd://` URL.
#[derive(Debug, PartialEq, Eq)]
struct EtcdUrl {
    endpoints: Vec<String>,
    user: Option<(String, String)>,
    prefix: String,
}

impl EtcdUrl {
    fn parse(url: &str) -> Result<EtcdUrl, String> {
        let rest = url.strip_prefix("etcd://").ok_or("expected `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => {
                let (name, password) = user.split_once(':').unwrap_or((user, ""));
                if name.is_empty() {
                    return Err("empty user name before `@`".to_owned());
                }
                (Some((name.to_owned(), password.to_owned())), hosts)
            }
            None => (None, authority),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("`{host}` is not HOST:PORT (etcd's client port is usually 2379)"))?;
            if name.is_empty() || name.contains(['/', '?', '#', ' ']) {
                return Err(format!("`{host}` is not HOST:PORT"));
            }
            port.parse::<u16>().map_err(|_| format!("`{port}` in `{host}` is not a port number"))?;
            endpoints.push(format!("http://{name}:{port}"));
        }
        if path.contains(['?', '#']) {
            return Err("the prefix may not contain `?` or `#` (no parameters are read)".to_owned());
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        Ok(EtcdUrl { endpoints, user, prefix: prefix.to_owned() })
    }
}

fn error_text(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// Whether `e` says the lease is gone (expired or revoked).
fn lease_gone(e: &etcd_client::Error) -> bool {
    let text = error_text(e);
    text.contains("lease not found")
}

impl EtcdRegistry {
    /// Connects to etcd at `url` (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`,
    /// optionally `etcd://USER:PASSWORD@HOST:PORT/PREFIX` for etcd's own
    /// authentication; no prefix means `aos-cluster`), checks that it answers,
    /// and starts following its member keys.
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
        let follower = tokio::spawn(Arc::clone(&shared).follow());
        Ok(EtcdRegistry { shared, follower })
    }

    /// The URL this registry was opened with, password hidden.
    pub fn url(&self) -> &str {
        &self.shared.shown_url
    }

    /// Whether the replica follows etcd right now (snapshots then cost no
    /// round trip).
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

    /// The key of `id` as etcd holds it now.
    async fn read(&self, id: InstanceId) -> Result<Option<KeyValue>, RegistryError> {
        let mut kv = self.client.kv_client();
        let mut answer = kv.get(self.key(id), None).await.map_err(|e| self.failed("read", &e))?;
        let found = answer.take_kvs().into_iter().next();
        if let Some(found) = &found {
            self.saw(found.mod_revision());
        }
        Ok(found)
    }

    /// Runs `txn`; on success the revision it wrote at, else the key as the
    /// `or_else` branch read it.
    async fn txn(&self, txn: Txn) -> Result<Result<i64, Option<KeyValue>>, RegistryError> {
        let mut kv = self.client.kv_client();
        let answer = kv.txn(txn).await.map_err(|e| self.failed("transaction", &e))?;
        let revision = answer.header().map_or(0, |header| header.revision());
        if answer.succeeded() {
            self.saw(revision);
            return Ok(Ok(revision));
        }
        let found = answer.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        if let Some(found) = &found {
            self.saw(found.mod_revision());
        }
        Ok(Err(found))
    }

    /// Writes `value` to `id`'s key under `lease` iff the key's
    /// `mod_revision` is `expected` (0: iff it is absent).
    async fn put_if(
        &self,
        id: InstanceId,
        expected: i64,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Result<i64, Option<KeyValue>>, RegistryError> {
        let key = self.key(id);
        let compare = if expected == 0 {
            Compare::create_revision(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, expected)
        };
        let put = TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new().when([compare]).and_then([put]).or_else([TxnOp::get(key, None)]);
        match self.txn(txn).await {
            Err(RegistryError::Backend { message, .. }) if message.contains("lease not found") => {
                // The lease expired between its grant or renewal and this
                // write: the key it held is gone with it.
                Err(RegistryError::Superseded { id })
            }
            other => other,
        }
    }

    async fn grant(&self, member_ttl: Duration) -> Result<i64, RegistryError> {
        let mut lease = self.client.lease_client();
        let granted =
            lease.grant(lease_ttl(member_ttl), None).await.map_err(|e| self.failed("lease grant", &e))?;
        Ok(granted.id())
    }

    /// Best effort: a lease nobody renews expires anyway.
    async fn revoke(&self, lease: i64) {
        if lease != 0 {
            let mut leases = self.client.lease_client();
            drop(tokio::time::timeout(CALL_TIMEOUT, leases.revoke(lease)).await);
        }
    }

    /// How long ago the holder of `lease` last renewed it, by etcd's clock
    /// (whole seconds: the lease's TTL less what remains of it). A key
    /// without a lease reads as renewed just now.
    async fn lease_age(&self, lease: i64) -> Result<Option<Duration>, RegistryError> {
        if lease == 0 {
            return Ok(Some(Duration::ZERO));
        }
        let mut leases = self.client.lease_client();
        let answer = leases.time_to_live(lease, None).await.map_err(|e| self.failed("lease TTL", &e))?;
        if answer.ttl() < 0 {
            return Ok(None);
        }
        let age = answer.granted_ttl().saturating_sub(answer.ttl()).max(0);
        Ok(Some(Duration::from_secs(u64::try_from(age).unwrap_or(0))))
    }

    fn in_use(&self, id: InstanceId, found: &KeyValue, age: Duration) -> RegistryError {
        let parsed = check(&self.members, found);
        RegistryError::IdInUse {
            id,
            age,
            holder: parsed.incarnation().unwrap_or(Incarnation(0)),
            endpoint: parsed.value.map(|v| v.endpoint).unwrap_or_default(),
        }
    }

    fn remember(
        &self,
        id: InstanceId,
        incarnation: Incarnation,
        mod_revision: i64,
        lease: i64,
        value: &[u8],
    ) {
        self.owned().insert(id, Owned { incarnation, mod_revision, lease, value_digest: digest(value) });
    }

    async fn register(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> Result<(), RegistryError> {
        *self.member_ttl.lock().unwrap_or_else(PoisonError::into_inner) = Some(member_ttl);
        let id = heartbeat.id;
        let value = encode(heartbeat, incarnation);
        let lease = self.grant(member_ttl).await?;
        let mut expected = 0;
        for _ in 0..3 {
            let found = match self.put_if(id, expected, value.clone(), lease).await? {
                Ok(revision) => {
                    self.remember(id, incarnation, revision, lease, &value);
                    return Ok(());
                }
                Err(None) => {
                    expected = 0;
                    continue;
                }
                Err(Some(found)) => found,
            };
            expected = found.mod_revision();
            let parsed = check(&self.members, &found);
            match parsed.incarnation() {
                // Our own (a retried start) or a value nobody can read: ours.
                Some(holder) if holder == incarnation => {}
                None => {
                    tracing::warn!(
                        registry = %self.shown_url,
                        "registry key of id {id} holds no readable member record; claiming it"
                    );
                }
                Some(_) => match self.lease_age(found.lease()).await? {
                    Some(age) if age < member_ttl => {
                        self.revoke(lease).await;
                        return Err(self.in_use(id, &found, age));
                    }
                    // Not renewed for member_ttl (its holder's lease is longer
                    // than ours), or expired as we looked: taken over.
                    _ => {}
                },
            }
        }
        // Three races lost in a row: someone else holds it right now.
        self.revoke(lease).await;
        match self.read(id).await? {
            Some(found) => Err(self.in_use(id, &found, Duration::ZERO)),
            None => Err(RegistryError::IdInUse {
                id,
                age: Duration::ZERO,
                holder: Incarnation(0),
                endpoint: String::new(),
            }),
        }
    }

    async fn take_over(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> Result<(), RegistryError> {
        let id = heartbeat.id;
        let found = self.read(id).await?;
        let expected = match &found {
            None => 0,
            Some(found) => match check(&self.members, found).incarnation() {
                // The named holder, ourselves, or a key nobody can read (it
                // holds no id, as for `register`).
                Some(holder) if holder == previous || holder == incarnation => found.mod_revision(),
                None => found.mod_revision(),
                Some(_) => {
                    let age = self.lease_age(found.lease()).await?.unwrap_or(Duration::ZERO);
                    return Err(self.in_use(id, found, age));
                }
            },
        };
        // The lease's TTL: this registry's last `member_ttl`, else that of the
        // lease being taken over, else the default.
        let remembered = *self.member_ttl.lock().unwrap_or_else(PoisonError::into_inner);
        let ttl = match (remembered, &found) {
            (Some(ttl), _) => ttl,
            (None, Some(found)) if found.lease() != 0 => {
                let mut leases = self.client.lease_client();
                match leases.time_to_live(found.lease(), None).await {
                    Ok(answer) if answer.granted_ttl() > 0 => {
                        Duration::from_secs(u64::try_from(answer.granted_ttl()).unwrap_or(30))
                    }
                    _ => Duration::from_secs(30),
                }
            }
            _ => Duration::from_secs(30),
        };
        let lease = self.grant(ttl).await?;
        let value = encode(heartbeat, incarnation);
        match self.put_if(id, expected, value.clone(), lease).await? {
            Ok(revision) => {
                // The predecessor's lease is left to expire: nobody renews
                // it, and it may hold other keys (one written by hand).
                self.remember(id, incarnation, revision, lease, &value);
                Ok(())
            }
            Err(now) => {
                self.revoke(lease).await;
                match now {
                    Some(now) => {
                        let age = self.lease_age(now.lease()).await?.unwrap_or(Duration::ZERO);
                        Err(self.in_use(id, &now, age))
                    }
                    // Removed since we read it: no holder to name; the caller
                    // may register afresh.
                    None => Err(RegistryError::IdInUse {
                        id,
                        age: Duration::ZERO,
                        holder: Incarnation(0),
                        endpoint: String::new(),
                    }),
                }
            }
        }
    }

    /// The `mod_revision` and lease of this incarnation's key: remembered from
    /// this registry's last write, or read.
    async fn ours(&self, id: InstanceId, incarnation: Incarnation) -> Result<Option<Owned>, RegistryError> {
        let remembered = self.owned().get(&id).copied().filter(|owned| owned.incarnation == incarnation);
        if remembered.is_some() {
            return Ok(remembered);
        }
        Ok(self.read(id).await?.and_then(|found| self.owned_by(&found, incarnation)))
    }

    fn owned_by(&self, found: &KeyValue, incarnation: Incarnation) -> Option<Owned> {
        (check(&self.members, found).incarnation() == Some(incarnation)).then(|| Owned {
            incarnation,
            mod_revision: found.mod_revision(),
            lease: found.lease(),
            value_digest: digest(found.value()),
        })
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat, incarnation: Incarnation) -> Result<(), RegistryError> {
        let id = heartbeat.id;
        let superseded = || {
            self.owned().remove(&id);
            RegistryError::Superseded { id }
        };
        let Some(mut owned) = self.ours(id, incarnation).await? else {
            return Err(superseded());
        };
        if owned.lease != 0 && !self.renew(owned.lease).await? {
            return Err(superseded());
        }
        let value = encode(heartbeat, incarnation);
        if digest(&value) == owned.value_digest {
            return Ok(());
        }
        for _ in 0..2 {
            match self.put_if(id, owned.mod_revision, value.clone(), owned.lease).await {
                Ok(Ok(revision)) => {
                    self.remember(id, incarnation, revision, owned.lease, &value);
                    return Ok(());
                }
                // Our last answer was lost, or another handle of this
                // incarnation wrote: still ours, at its new revision.
                Ok(Err(Some(found))) => match self.owned_by(&found, incarnation) {
                    Some(now) => owned = now,
                    None => return Err(superseded()),
                },
                Ok(Err(None)) | Err(RegistryError::Superseded { .. }) => return Err(superseded()),
                Err(e) => return Err(e),
            }
        }
        Err(self.backend(format!("the key of id {id} kept changing under this incarnation's heartbeat")))
    }

    /// Renews `lease` once on its keep-alive stream (opened on first use and
    /// kept: a stream per renewal would cost etcd a stream set-up per member
    /// and heartbeat); whether the lease still lives.
    async fn renew(&self, lease: i64) -> Result<bool, RegistryError> {
        let mut keepers = self.keepers.lock().await;
        for _ in 0..2 {
            let answer = match keepers.get_mut(&lease) {
                Some((keeper, stream)) => match keeper.keep_alive().await {
                    Ok(()) => stream.message().await,
                    Err(e) => Err(e),
                },
                None => {
                    let mut leases = self.client.lease_client();
                    // Opening the stream renews once and reads the answer
                    // (a lease that is gone is an error here).
                    match leases.keep_alive(lease).await {
                        Ok(opened) => {
                            keepers.insert(lease, opened);
                            return Ok(true);
                        }
                        Err(e) if lease_gone(&e) => return Ok(false),
                        Err(e) => return Err(self.failed("lease keep-alive", &e)),
                    }
                }
            };
            match answer {
                Ok(Some(renewed)) => {
                    if renewed.ttl() <= 0 {
                        keepers.remove(&lease);
                    }
                    return Ok(renewed.ttl() > 0);
                }
                Err(e) if lease_gone(&e) => {
                    keepers.remove(&lease);
                    return Ok(false);
                }
                // The stream broke (etcd restarted, the connection was
                // lost): once more on a new one.
                Ok(None) | Err(_) => {
                    keepers.remove(&lease);
                }
            }
        }
        Err(self.backend(format!("lease keep-alive: the stream of lease {lease} broke twice")))
    }

    async fn remove(&self, id: InstanceId, incarnation: Incarnation) -> Result<bool, RegistryError> {
        let Some(mut owned) = self.ours(id, incarnation).await? else {
            return Ok(false);
        };
        for _ in 0..2 {
            let key = self.key(id);
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, owned.mod_revision)])
                .and_then([TxnOp::delete(key.clone(), None)])
                .or_else([TxnOp::get(key, None)]);
            match self.txn(txn).await? {
                Ok(_) => {
                    self.owned().remove(&id);
                    self.revoke(owned.lease).await;
                    return Ok(true);
                }
                Err(Some(found)) => match self.owned_by(&found, incarnation) {
                    Some(now) => owned = now,
                    None => break,
                },
                Err(None) => break,
            }
        }
        self.owned().remove(&id);
        Ok(false)
    }

    // ---- the replica ---------------------------------------------------------------

    /// Follows etcd for as long as the registry lives: read, watch, and
    /// again after every break.
    async fn follow(self: Arc<Self>) {
        let mut pause = RETRY_FIRST;
        let mut last_error = String::new();
        loop {
            let started = Instant::now();
            let error = self.follow_once().await;
            self.replica_state.send_replace(None);
            if error != last_error {
                tracing::warn!(registry = %self.shown_url, "registry watch broken, reading again: {error}");
                last_error = error;
            }
            if started.elapsed() > RETRY_MAX * 5 {
                // It followed for a while: a new break is news, and is retried soon.
                pause = RETRY_FIRST;
                last_error.clear();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// One read and the watch that follows it, until it breaks (the reason).
    async fn follow_once(&self) -> String {
        let mut kv = self.client.kv_client().max_decoding_message_size(MAX_PREFIX_READ);
        self.prefix_reads.fetch_add(1, Ordering::Relaxed);
        let read = kv.get(self.members.clone(), Some(GetOptions::new().with_prefix()));
        let mut answer = match tokio::time::timeout(CALL_TIMEOUT, read).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return format!("read: {}", error_text(&e)),
            Err(_) => return format!("read: no answer within {CALL_TIMEOUT:?}"),
        };
        let revision = answer.header().map_or(0, |header| header.revision());
        let now = Instant::now();
        {
            let mut replica = self.replica();
            let mut fresh = BTreeMap::new();
            for found in answer.take_kvs() {
                let key = found.key().to_vec();
                // A key unchanged since the last read keeps the time it was
                // seen written.
                let entry = match replica.remove(&key) {
                    Some(entry) if entry.mod_revision == found.mod_revision() => entry,
                    _ => Entry {
                        mod_revision: found.mod_revision(),
                        seen_at: now,
                        parsed: check(&self.members, &found),
                    },
                };
                fresh.insert(key, entry);
            }
            *replica = fresh;
        }
        let mut watcher = self.client.watch_client().max_decoding_message_size(MAX_PREFIX_READ);
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let (_requests, mut stream) = match tokio::time::timeout(
            CALL_TIMEOUT,
            watcher.watch(self.members.clone(), Some(options)),
        )
        .await
        {
            Ok(Ok(stream)) => stream.split(),
            Ok(Err(e)) => return format!("watch: {}", error_text(&e)),
            Err(_) => return format!("watch: no answer within {CALL_TIMEOUT:?}"),
        };
        self.apply(&mut stream, revision).await
    }

    /// Applies the watch's changes to the replica until the watch breaks
    /// (the reason).
    async fn apply(&self, stream: &mut WatchResponseStream, revision: i64) -> String {
        let mut applied = revision;
        let mut created = false;
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return "the watch stream ended".to_owned(),
                Err(e) => return format!("watch: {}", error_text(&e)),
            };
            if message.canceled() || message.compact_revision() != 0 {
                return format!(
                    "watch cancelled by etcd (compacted at revision {}): {}",
                    message.compact_revision(),
                    message.cancel_reason()
                );
            }
            if !created {
                // The watch exists: the replica follows from here on.
                created = true;
                self.replica_state.send_replace(Some(applied));
                if message.created() {
                    continue;
                }
            }
            if message.events().is_empty() {
                continue;
            }
            let now = Instant::now();
            {
                let mut replica = self.replica();
                for event in message.events() {
                    let Some(found) = event.kv() else { continue };
                    applied = applied.max(found.mod_revision());
                    match event.event_type() {
                        etcd_client::EventType::Put => {
                            let parsed = check(&self.members, found);
                            let entry = Entry { mod_revision: found.mod_revision(), seen_at: now, parsed };
                            replica.insert(found.key().to_vec(), entry);
                        }
                        etcd_client::EventType::Delete => {
                            replica.remove(found.key());
                        }
                    }
                }
            }
            // Only the events' own revisions count: a response's header may
            // name a later revision whose events are still to come.
            self.replica_state.send_replace(Some(applied));
        }
    }

    /// (etcd 3.4's watch progress requests are answered ahead of pending
    /// events, so they cannot tell when the replica has caught up: a read of
    /// the keys can.)
    async fn sync(&self) -> Result<(), RegistryError> {
        let mut kv = self.client.kv_client().max_decoding_message_size(MAX_PREFIX_READ);
        let keys_only = GetOptions::new().with_prefix().with_keys_only();
        let answer =
            kv.get(self.members.clone(), Some(keys_only)).await.map_err(|e| self.failed("read", &e))?;
        let read_at = answer.header().map_or(0, |header| header.revision());
        let expected: BTreeMap<&[u8], i64> =
            answer.kvs().iter().map(|found| (found.key(), found.mod_revision())).collect();
        let mut state = self.replica_state.subscribe();
        loop {
            // While the replica is (re)loading, its next load covers the read
            // or the watch brings the rest; `within` bounds the wait.
            if state.borrow_and_update().is_some() && self.covers(&expected, read_at) {
                return Ok(());
            }
            state.changed().await.map_err(|_| self.backend("the registry is closing"))?;
        }
    }

    /// Whether the replica holds every key of a read at revision `read_at`
    /// (`expected`: key and `mod_revision`), at that version or a later one,
    /// and no key that the read no longer had, unless written since.
    fn covers(&self, expected: &BTreeMap<&[u8], i64>, read_at: i64) -> bool {
        let replica = self.replica();
        expected
            .iter()
            .all(|(key, &revision)| replica.get(*key).is_some_and(|entry| entry.mod_revision >= revision))
            && replica
                .iter()
                .all(|(key, entry)| expected.contains_key(key.as_slice()) || entry.mod_revision > read_at)
    }

    /// Whether the replica has applied everything this registry has seen,
    /// waiting up to [`CATCH_UP`] for it while it follows etcd.
    async fn replica_caught_up(&self) -> bool {
        let target = self.seen.load(Ordering::Acquire);
        let mut state = self.replica_state.subscribe();
        if state.borrow().is_none() {
            return false;
        }
        let caught_up = state.wait_for(|state| state.is_none_or(|applied| applied >= target));
        let live = match tokio::time::timeout(CATCH_UP, caught_up).await {
            Ok(Ok(state)) => state.is_some(),
            _ => false,
        };
        live
    }

    async fn snapshot(
        &self,
        cluster: Option<&str>,
        timing: MemberTiming,
    ) -> Result<Vec<MemberRecord>, RegistryError> {
        let member_ttl = timing.member_ttl;
        let kept = member_ttl.saturating_mul(10);
        let rows: Vec<StoredRow> = if self.replica_caught_up().await {
            let now = Instant::now();
            // A key lives while its member renews its lease, and its value is
            // rewritten whenever it changes: a key unchanged for longer than a
            // heartbeat interval belongs to a member that beats on time, as
            // far as etcd can tell before the lease expires.
            let age =
                |entry: &Entry| now.saturating_duration_since(entry.seen_at).min(timing.heartbeat_interval);
            self.replica()
                .values()
                .filter(|entry| entry.parsed.cluster().is_none_or(|of| of == cluster))
                .map(|entry| entry.parsed.stored_row(age(entry)))
                .filter(|row| u128::try_from(row.age_micros).unwrap_or(0) <= kept.as_micros())
                .collect()
        } else {
            let mut kv = self.client.kv_client().max_decoding_message_size(MAX_PREFIX_READ);
            self.prefix_reads.fetch_add(1, Ordering::Relaxed);
            let read = kv.get(self.members.clone(), Some(GetOptions::new().with_prefix()));
            let answer = match tokio::time::timeout(CALL_TIMEOUT, read).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(self.failed("read", &e)),
                Err(_) => return Err(self.backend(format!("read: no answer within {CALL_TIMEOUT:?}"))),
            };
            answer
                .kvs()
                .iter()
                .map(|found| check(&self.members, found))
                .filter(|parsed| parsed.cluster().is_none_or(|of| of == cluster))
                .map(|parsed| parsed.stored_row(Duration::ZERO))
                .collect()
        };
        Ok(self.rows.members(&self.shown_url, rows, member_ttl))
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
        Box::pin(self.shared.within(self.shared.snapshot(cluster, timing)))
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use aos_cluster::Endpoint;

    use super::*;

    #[test]
    fn urls_name_endpoints_user_and_prefix() {
        let url = EtcdUrl::parse("etcd://10.0.0.1:2379,[::1]:2380,etcd.example:2379/clusters/eu").unwrap();
        assert_eq!(
            url,
            EtcdUrl {
                endpoints: vec![
                    "http://10.0.0.1:2379".to_owned(),
                    "http://[::1]:2380".to_owned(),
                    "http://etcd.example:2379".to_owned()
                ],
                user: None,
                prefix: "clusters/eu".to_owned(),
            }
        );
        let url = EtcdUrl::parse("etcd://aos:s3cret@h:2379").unwrap();
        assert_eq!(url.user, Some(("aos".to_owned(), "s3cret".to_owned())));
        assert_eq!(url.prefix, DEFAULT_PREFIX);
        assert_eq!(EtcdUrl::parse("etcd://h:2379/p/").unwrap().prefix, "p");
        for bad in [
            "etcd://",
            "etcd://h",
            "etcd://h:port/p",
            "etcd://h:2379,/p",
            "etcd://:2379/p",
            "etcd://h:1/p?x=1",
        ] {
            assert!(EtcdUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_ttls_are_whole_seconds_rounded_up_at_least_one() {
        assert_eq!(lease_ttl(Duration::ZERO), 1);
        assert_eq!(lease_ttl(Duration::from_millis(1)), 1);
        assert_eq!(lease_ttl(Duration::from_secs(30)), 30);
        assert_eq!(lease_ttl(Duration::from_millis(30_001)), 31);
        assert_eq!(lease_ttl(Duration::MAX), MAX_LEASE_TTL);
    }

    #[test]
    fn values_round_trip_and_bad_ones_say_why() {
        use aos_cluster::{Role, Workload};
        let members = "p/members_v1/";
        let heartbeat = Heartbeat {
            id: InstanceId(42),
            endpoint: Endpoint::from_str("AOS42@h:2712").unwrap(),
            cluster: Some("c".to_owned()),
            role: Role::LoadBalancerOnly,
            accepting: false,
            workload: Workload::new(3, u32::MAX),
        };
        let value = encode(&heartbeat, Incarnation(u64::MAX - 6));
        let parsed = parse(members, b"p/members_v1/0000000042", &value);
        assert_eq!(parsed.id, Some(42));
        assert_eq!(parsed.unreadable, None);
        assert_eq!(parsed.incarnation(), Some(Incarnation(u64::MAX - 6)));
        assert_eq!(parsed.cluster(), Some(Some("c")));
        let row = parsed.stored_row(Duration::from_millis(1500));
        assert_eq!(
            (row.endpoint.as_str(), row.role.as_str(), row.accepting, row.max_sessions, row.connected),
            ("AOS42@h:2712", "load_balancer_only", false, i64::from(u32::MAX), 3)
        );
        assert_eq!(row.age_micros, 1_500_000);

        let reason = |key: &[u8], value: &[u8]| parse(members, key, value).unreadable.unwrap_or_default();
        assert!(reason(b"p/members_v1/42", &value).contains("names no instance id"));
        assert!(reason(b"p/members_v1/00000000x2", &value).contains("names no instance id"));
        assert!(reason(b"p/members_v1/0000000042", b"not json").contains("not a member record"));
        let wrong_type =
            String::from_utf8(value.clone()).unwrap().replace("\"accepting\":false", "\"accepting\":\"no\"");
        assert!(reason(b"p/members_v1/0000000042", wrong_type.as_bytes()).contains("not a member record"));
        let newer = String::from_utf8(value.clone()).unwrap().replace("\"v\":1", "\"v\":2");
        assert!(reason(b"p/members_v1/0000000042", newer.as_bytes()).contains("version 2"));
        let short = String::from_utf8(value).unwrap().replace("fffffffffffffff9", "f9");
        assert!(reason(b"p/members_v1/0000000042", short.as_bytes()).contains("16 hex digits"));
        assert!(reason(b"p/members_v1/0000000042", &vec![b' '; MAX_VALUE_LEN + 1]).contains("at most"));
    }
}
