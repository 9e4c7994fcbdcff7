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

    /// A beat of the member holding `lease` (of TTL `member_ttl`; zero when
    /// not known): renews the lease on its keep-alive stream (opened on
    /// first use and kept: a stream per renewal would cost etcd a stream
    /// set-up per member and heartbeat) unless [`renewal_due`] says it can
    /// wait; whether the lease still lives (as of its last renewal).
    pub(super) async fn renew(&self, lease: i64, member_ttl: Duration) -> Result<bool, RegistryError> {
        let mut keepers = self.keepers.lock().await;
        if let Some(kept) = keepers.get_mut(&lease) {
            let now = Instant::now();
            let spacing = now.saturating_duration_since(kept.beat_at);
            // The longer of the last two spacings: one early beat (a drain,
            // a new capacity) does not make the next one look close.
            let expected = spacing.max(kept.spacing);
            (kept.beat_at, kept.spacing) = (now, spacing);
            if !renewal_due(now.saturating_duration_since(kept.renewed_at), expected, member_ttl) {
                return Ok(true);
            }
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
                            let now = Instant::now();
                            let kept = Kept {
                                keeper,
                                stream,
                                renewed_at: now,
                                beat_at: now,
                                spacing: Duration::ZERO,
                            };
                            keepers.insert(lease, kept);
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

/// Whether a beat `since_renewal` after the lease's last renewal renews
/// it, beats coming `beat_spacing` apart: unless three more beats still fit
/// in the `member_ttl` the renewal bought. The beat that skips leaves the
/// next beat to renew, and should that fail, the one after it, both before
/// the lease expires. With the defaults (30 s, a beat every 5 s) a lease is
/// renewed every 20 s; with beats a third of `member_ttl` apart or slower,
/// at every beat.
pub(super) fn renewal_due(since_renewal: Duration, beat_spacing: Duration, member_ttl: Duration) -> bool {
    since_renewal.saturating_add(beat_spacing.saturating_mul(3)) > member_ttl
}

/// A lease's kept keep-alive stream, when it last renewed the lease, and
/// when its member's last beat came and how long after the one before.
pub(super) struct Kept {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    renewed_at: Instant,
    beat_at: Instant,
    spacing: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_while_fewer_than_three_beats_fit_in_what_is_left() {
        let s = Duration::from_secs;
        // Defaults: a beat every 5 s, 30 s: renewed at the beat 20 s after.
        let due: Vec<u64> =
            (1..=6).map(|beat| beat * 5).filter(|&e| renewal_due(s(e), s(5), s(30))).collect();
        assert_eq!(due.first(), Some(&20));
        // Beats 12 s apart: at every beat, so a failed renewal is retried in time.
        assert!(renewal_due(s(12), s(12), s(30)));
        // An unknown TTL (zero): always.
        assert!(renewal_due(s(1), s(1), Duration::ZERO));
        // Just renewed, beats far apart within the TTL: not yet.
        assert!(!renewal_due(Duration::ZERO, s(10), s(30)));
        assert!(renewal_due(Duration::from_millis(1), s(10), s(30)));
    }

    #[test]
    fn lease_ttls_are_whole_seconds_rounded_up_at_least_one() {
        assert_eq!(lease_ttl(Duration::ZERO), 1);
        assert_eq!(lease_ttl(Duration::from_millis(1)), 1);
        assert_eq!(lease_ttl(Duration::from_secs(30)), 30);
        assert_eq!(lease_ttl(Duration::from_millis(30_001)), 31);
        assert_eq!(lease_ttl(Duration::MAX), MAX_LEASE_TTL);
    }
}
