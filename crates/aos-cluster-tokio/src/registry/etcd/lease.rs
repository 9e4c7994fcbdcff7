//! Leases: granted by `register` and `take_over`, renewed by heartbeats.

use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::time::Instant;

use super::{error_text, RegistryError, Shared, CALL_TIMEOUT};

/// etcd's largest lease TTL, in seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The TTL of a lease for `member_ttl`: whole seconds, rounded up, at least
/// one (etcd's unit; etcd itself may raise a very short TTL to its minimum).
pub(crate) fn lease_ttl(member_ttl: Duration) -> i64 {
    let seconds = member_ttl.as_secs().saturating_add(u64::from(member_ttl.subsec_nanos() > 0));
    i64::try_from(seconds).unwrap_or(MAX_LEASE_TTL).clamp(1, MAX_LEASE_TTL)
}

/// Whether `e` says the lease is gone (expired or revoked).
fn lease_gone(e: &etcd_client::Error) -> bool {
    let text = error_text(e);
    text.contains("lease not found")
}

impl Shared {
    pub(super) async fn grant(&self, member_ttl: Duration) -> Result<i64, RegistryError> {
        let mut lease = self.client.lease_client();
        let granted =
            lease.grant(lease_ttl(member_ttl), None).await.map_err(|e| self.failed("lease grant", &e))?;
        Ok(granted.id())
    }

    /// Best effort: a lease nobody renews expires anyway.
    pub(super) async fn revoke(&self, lease: i64) {
        if lease != 0 {
            let mut leases = self.client.lease_client();
            drop(tokio::time::timeout(CALL_TIMEOUT, leases.revoke(lease)).await);
        }
    }

    /// How long ago the holder of `lease` last renewed it, by etcd's clock
    /// (whole seconds: the lease's TTL less what remains of it). A key
    /// without a lease reads as renewed just now.
    pub(super) async fn lease_age(&self, lease: i64) -> Result<Option<Duration>, RegistryError> {
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

    /// Renews `lease` on its keep-alive stream (opened on first use and
    /// kept: a stream per renewal would cost etcd a stream set-up per member
    /// and heartbeat), unless it was renewed less than `every` ago; whether
    /// the lease still lives (as of its last renewal).
    pub(super) async fn renew(&self, lease: i64, every: Duration) -> Result<bool, RegistryError> {
        let mut keepers = self.keepers.lock().await;
        if keepers.get(&lease).is_some_and(|kept| kept.renewed_at.elapsed() < every) {
            return Ok(true);
        }
        for _ in 0..2 {
            let answer = match keepers.get_mut(&lease) {
                Some(kept) => match kept.keeper.keep_alive().await {
                    Ok(()) => kept.stream.message().await,
                    Err(e) => Err(e),
                },
                None => {
                    let mut leases = self.client.lease_client();
                    // Opening the stream renews once and reads the answer
                    // (a lease that is gone is an error here).
                    match leases.keep_alive(lease).await {
                        Ok((keeper, stream)) => {
                            keepers.insert(lease, Kept { keeper, stream, renewed_at: Instant::now() });
                            return Ok(true);
                        }
                        Err(e) if lease_gone(&e) => return Ok(false),
                        Err(e) => return Err(self.failed("lease keep-alive", &e)),
                    }
                }
            };
            match answer {
                Ok(Some(renewed)) => {
                    match keepers.get_mut(&lease) {
                        Some(kept) if renewed.ttl() > 0 => kept.renewed_at = Instant::now(),
                        _ => drop(keepers.remove(&lease)),
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
}

/// A lease's kept keep-alive stream and when it last renewed the lease.
pub(super) struct Kept {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    renewed_at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttls_are_whole_seconds_rounded_up_at_least_one() {
        assert_eq!(lease_ttl(Duration::ZERO), 1);
        assert_eq!(lease_ttl(Duration::from_millis(1)), 1);
        assert_eq!(lease_ttl(Duration::from_secs(30)), 30);
        assert_eq!(lease_ttl(Duration::from_millis(30_001)), 31);
        assert_eq!(lease_ttl(Duration::MAX), MAX_LEASE_TTL);
    }
}
