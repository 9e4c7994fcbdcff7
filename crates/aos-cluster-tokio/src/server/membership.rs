//! This process's registry row: claimed at start (taking over the row of a
//! process that no longer answers), then kept fresh by the heartbeat writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use aos_cluster::Endpoint;
use tokio::sync::watch;
use tracing::{error, warn};

use super::limits::{Counters, RateLimitedWarning};
use super::{peer, ServerError, Shared};
use crate::registry::{FigureSteps, Incarnation, Registry, RegistryError};

/// A random `u64` for an incarnation or a machine's seed.
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is freshly keyed from the OS's randomness (per process,
    // then stepped per call): enough for an incarnation, no extra dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Claims this instance's registry row. A live row of another incarnation
/// whose endpoint no longer answers belongs to a process that is gone (a
/// crash, `kill -9`, a program that returned without stopping its server): it
/// is taken over at once instead of after `member_ttl`. One that answers is
/// another live process with this id: the start is refused.
pub(super) async fn register(
    registry: &Arc<dyn Registry>,
    shared: &Shared,
    heartbeat: Heartbeat,
) -> Result<(), ServerError> {
    let instance = &shared.config.instance;
    let timeout = instance.registry_timeout;
    let register = registry.register(&heartbeat, shared.incarnation, instance.member_ttl);
    let in_use =
        match tokio::time::timeout(timeout, register).await.map_err(|_| ServerError::RegistryTimeout)? {
            Ok(()) => return Ok(()),
            Err(in_use @ RegistryError::IdInUse { .. }) => in_use,
            Err(other) => return Err(other.into()),
        };
    let RegistryError::IdInUse { holder, endpoint: ref holder_endpoint, .. } = in_use else {
        return Err(in_use.into());
    };
    let Ok(old) = holder_endpoint.parse::<Endpoint>() else {
        // An endpoint nobody can dial: nothing would ever answer there.
        return take_over(registry, &heartbeat, shared, holder, holder_endpoint).await;
    };
    let deadline = tokio::time::Instant::now() + instance.peer_timeout;
    if peer::still_answers(&old, shared, deadline).await {
        return Err(in_use.into());
    }
    take_over(registry, &heartbeat, shared, holder, holder_endpoint).await
}

async fn take_over(
    registry: &Arc<dyn Registry>,
    heartbeat: &Heartbeat,
    shared: &Shared,
    holder: Incarnation,
    holder_endpoint: &str,
) -> Result<(), ServerError> {
    let take_over = registry.take_over(heartbeat, shared.incarnation, holder);
    tokio::time::timeout(shared.config.instance.registry_timeout, take_over)
        .await
        .map_err(|_| ServerError::RegistryTimeout)??;
    tracing::warn!(
        id = %heartbeat.id,
        previous = %holder,
        "took over the registry row of instance {}: its previous process at {holder_endpoint} does not answer",
        heartbeat.id
    );
    Ok(())
}

/// Keeps this incarnation's row fresh with the latest heartbeat, in order (a
/// slow write is never overtaken by an older one), and purges the cluster's
/// long-dead rows (older than the machine's `purge_horizon`) once per `member_ttl` (one statement, never in the read
/// path). A row found gone (a registry file replaced or emptied, a row
/// deleted by hand) is registered again; stops for good when the row turns
/// out to belong to another live process: it is theirs now.
pub(super) async fn publish_heartbeats(
    registry: Arc<dyn Registry>,
    shared: Arc<Shared>,
    mut latest: watch::Receiver<Option<Heartbeat>>,
    purge_horizon: Duration,
) {
    let timeout = shared.config.instance.registry_timeout;
    let member_ttl = shared.config.instance.member_ttl;
    let mut warning = RateLimitedWarning::new(std::time::Duration::from_secs(5));
    let mut purged_at: Option<tokio::time::Instant> = None;
    // What the row holds, as far as this writer knows: nothing yet (the
    // registration's figures may be older than the first beat's).
    let mut steps: Option<FigureSteps> = None;
    while latest.changed().await.is_ok() {
        let Some(heartbeat) = latest.borrow_and_update().clone() else { continue };
        let live = heartbeat.workload;
        let publishes = steps.is_none_or(|steps| steps.publishes(live));
        let shown = match steps {
            Some(steps) if !publishes => Heartbeat { workload: steps.published(), ..heartbeat.clone() },
            _ => heartbeat.clone(),
        };
        let mut result = tokio::time::timeout(timeout, registry.heartbeat(&shown, shared.incarnation)).await;
        let mut registered = false;
        if let Ok(Err(RegistryError::Superseded { .. })) = result {
            shared.counters.registry_error("heartbeat", "superseded");
            let register = registry.register(&heartbeat, shared.incarnation, member_ttl);
            result = tokio::time::timeout(timeout, register).await;
            registered = true;
            if let Ok(Ok(())) = result {
                warn!(id = %heartbeat.id, "registry row was gone (file replaced or row deleted); registered again");
            }
        }
        steps = match (steps, &result) {
            (Some(mut steps), Ok(Ok(()))) if !registered => {
                steps.beat(live, publishes);
                Some(steps)
            }
            (_, Ok(Ok(()))) => Some(FigureSteps::new(live)),
            // Failed or timed out: what the row holds is not known.
            _ => None,
        };
        match result {
            Ok(Ok(())) => {
                if purged_at.is_none_or(|at| at.elapsed() >= member_ttl) {
                    purged_at = Some(tokio::time::Instant::now());
                    let purge = registry.purge(heartbeat.cluster.as_deref(), purge_horizon);
                    match tokio::time::timeout(timeout, purge).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            shared.counters.registry_error("purge", e.kind());
                            warn!(error = %e, "purge of long-dead registry rows failed");
                        }
                        Err(_) => shared.counters.registry_error("purge", "timeout"),
                    }
                }
            }
            Ok(Err(RegistryError::IdInUse { id, endpoint, .. })) => {
                shared.counters.registry_error("heartbeat", "id_in_use");
                shared.counters.registration_lost.store(true, Ordering::Relaxed);
                error!(
                    %id,
                    "REGISTRY ROW TAKEN OVER: another process ({endpoint}) now holds instance id {id}; \
                     this one stops heartbeating and will not overwrite it. Peers will stop ranking this \
                     instance. Fix the duplicate id and restart."
                );
                return;
            }
            other => {
                Counters::bump(&shared.counters.heartbeat_failures);
                let reason = match other {
                    Ok(Err(e)) => {
                        shared.counters.registry_error("heartbeat", e.kind());
                        e.to_string()
                    }
                    _ => {
                        shared.counters.registry_error("heartbeat", "timeout");
                        "timed out".to_owned()
                    }
                };
                if let Some(count) = warning.hit() {
                    warn!(id = %heartbeat.id, %reason, count, "heartbeat not published");
                }
            }
        }
    }
}
