//! The writes: register, take over, heartbeat and remove, each a
//! transaction that compares before it writes.

use std::sync::PoisonError;
use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use aos_cluster::InstanceId;
use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::value::{check, digest, encode};
use super::{Incarnation, Owned, RegistryError, Shared};

impl Shared {
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

    pub(super) async fn register(
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

    pub(super) async fn take_over(
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

    pub(super) async fn heartbeat(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
    ) -> Result<(), RegistryError> {
        let id = heartbeat.id;
        let superseded = || {
            self.owned().remove(&id);
            RegistryError::Superseded { id }
        };
        let Some(mut owned) = self.ours(id, incarnation).await? else {
            return Err(superseded());
        };
        // The lease, not the value, says the member lives.
        let member_ttl = self.member_ttl.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or_default();
        if owned.lease != 0 && !self.renew(owned.lease, member_ttl).await? {
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

    pub(super) async fn remove(
        &self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> Result<bool, RegistryError> {
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
}
