//! The replica: a prefix read, then a watch that applies every change;
//! snapshots are answered from it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::MemberRecord;
use etcd_client::{GetOptions, WatchOptions, WatchResponseStream};
use tokio::time::Instant;

use super::value::check;
use super::{error_text, Entry, MemberTiming, RegistryError, Shared, CALL_TIMEOUT};
use crate::registry::row::StoredRow;

/// The largest answer to a read of the whole prefix, or one watch message
/// (gRPC's default is 4 MiB, some 20 000 members).
const MAX_PREFIX_READ: usize = 64 << 20;

/// How long a snapshot waits for the replica to catch up with this registry's
/// own writes before it reads the prefix directly instead.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The replica's pauses between tries while etcd cannot be followed.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl Shared {
    /// Follows etcd while snapshots want the replica (`follower.rs`): read,
    /// watch, and again after every break.
    pub(super) async fn follow(self: Arc<Self>) {
        let mut pause = RETRY_FIRST;
        let mut last_error = String::new();
        loop {
            let started = Instant::now();
            let Err(error) = self.follow_once().await else { return };
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
            if self.unwanted() {
                return;
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// One read and the watch that follows it, until it breaks (`Err`, the
    /// reason) or the replica is no longer wanted (`Ok`: stopped, the
    /// replica emptied).
    async fn follow_once(&self) -> Result<(), String> {
        let mut kv = self.client.kv_client().max_decoding_message_size(MAX_PREFIX_READ);
        self.prefix_reads.fetch_add(1, Ordering::Relaxed);
        let read = kv.get(self.members.clone(), Some(GetOptions::new().with_prefix()));
        let mut answer = match tokio::time::timeout(CALL_TIMEOUT, read).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(format!("read: {}", error_text(&e))),
            Err(_) => return Err(format!("read: no answer within {CALL_TIMEOUT:?}")),
        };
        let revision = answer.header().map_or(0, |header| header.revision());
        {
            let mut replica = self.replica();
            let mut fresh = BTreeMap::new();
            for found in answer.take_kvs() {
                let key = found.key().to_vec();
                // A key unchanged since the last read is not parsed again.
                let entry = match replica.remove(&key) {
                    Some(entry) if entry.mod_revision == found.mod_revision() => entry,
                    _ => Entry { mod_revision: found.mod_revision(), parsed: check(&self.members, &found) },
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
            Ok(Err(e)) => return Err(format!("watch: {}", error_text(&e))),
            Err(_) => return Err(format!("watch: no answer within {CALL_TIMEOUT:?}")),
        };
        self.apply(&mut stream, revision).await
    }

    /// Applies the watch's changes to the replica until the watch breaks
    /// (`Err`, the reason) or the replica is no longer wanted (`Ok`; the
    /// stream, dropped, cancels the watch).
    async fn apply(&self, stream: &mut WatchResponseStream, revision: i64) -> Result<(), String> {
        let mut applied = revision;
        let mut created = false;
        loop {
            // A timeout loses no message: `message` polls the stream's own
            // buffer, so the next call takes up where this one stopped. A
            // stream that always has a message ready never times out, so the
            // deadline is checked after a message too.
            let until = self.wanted_until();
            let next = tokio::time::timeout_at(until, stream.message()).await;
            if Instant::now() >= until && self.unwanted() {
                return Ok(());
            }
            let message = match next {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return Err("the watch stream ended".to_owned()),
                Ok(Err(e)) => return Err(format!("watch: {}", error_text(&e))),
                Err(_) => continue,
            };
            if message.canceled() || message.compact_revision() != 0 {
                return Err(format!(
                    "watch cancelled by etcd (compacted at revision {}): {}",
                    message.compact_revision(),
                    message.cancel_reason()
                ));
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
            {
                let mut replica = self.replica();
                for event in message.events() {
                    let Some(found) = event.kv() else { continue };
                    applied = applied.max(found.mod_revision());
                    match event.event_type() {
                        etcd_client::EventType::Put => {
                            let parsed = check(&self.members, found);
                            let entry = Entry { mod_revision: found.mod_revision(), parsed };
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
    pub(super) async fn sync(&self) -> Result<(), RegistryError> {
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

    pub(super) async fn snapshot(
        &self,
        cluster: Option<&str>,
        timing: MemberTiming,
    ) -> Result<Vec<MemberRecord>, RegistryError> {
        let member_ttl = timing.member_ttl;
        // etcd keeps no time of a write, and when a value arrived says when
        // its figures were measured only up to the delivery's delay. A key
        // lives while its member renews its lease, and the member rewrites
        // it at the beat that changes its figures, so the figures held were
        // its own one interval ago at the latest: read as younger, they could
        // outrank an instance's newer live report of the member.
        let age = timing.heartbeat_interval;
        let rows: Vec<StoredRow> = if self.replica_caught_up().await {
            self.replica()
                .values()
                .filter(|entry| entry.parsed.cluster().is_none_or(|of| of == cluster))
                .map(|entry| entry.parsed.stored_row(age))
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
                .map(|parsed| parsed.stored_row(age))
                .collect()
        };
        Ok(self.rows.members(&self.shown_url, rows, member_ttl))
    }
}
