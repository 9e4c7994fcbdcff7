//! Real clients and hostile handshakes, scheduled from the scenario, and
//! the records the simulator's metrics are computed from.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::client::AttemptOutcome;
use aos_cluster::wire::{self, Decoder, HandshakeRequest, Message, RejectReason};
use aos_cluster::ClientConfig;
use aos_cluster_tokio::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::cluster::{start_of, Cluster, Return};
use super::{RealError, RealOptions};
use crate::metrics::{Admission, ClientOutcome, ClientRecord, InstanceLoad};
use crate::rng::Rng;
use crate::scenario::{FaultKind, Scenario, Seed};

/// What the clients saw, for [`RunMetrics`](crate::metrics::RunMetrics).
pub(super) struct Outcome {
    pub(super) records: Vec<ClientRecord>,
    pub(super) admissions: Vec<Admission>,
    pub(super) loads: Vec<InstanceLoad>,
    pub(super) end_of_arrivals: Duration,
    pub(super) over_capacity: u32,
    pub(super) hostile_handshakes: u64,
    pub(super) hostile_answered: u64,
}

/// How long a hostile handshake waits for its reply.
const HOSTILE_PATIENCE: Duration = Duration::from_secs(2);

struct Shared {
    t0: Instant,
    cluster: Arc<Cluster>,
    config: ClientConfig,
    rng_seed: u64,
    records: Mutex<Vec<ClientRecord>>,
    admissions: Mutex<Vec<Admission>>,
    /// Per instance: the clients holding a session there.
    holders: Mutex<Vec<BTreeSet<u32>>>,
    /// Connection efforts not yet ended (arrivals and returns).
    unsettled: watch::Sender<u64>,
    /// Set at the end of the run: every client closes its session.
    stop: watch::Sender<bool>,
    hostile_handshakes: AtomicU64,
    hostile_answered: AtomicU64,
}

/// Plays the scenario's clients, floods and faults against `cluster`.
pub(super) async fn drive(
    scenario: &Scenario,
    options: &RealOptions,
    cluster: &Arc<Cluster>,
) -> Result<Outcome, RealError> {
    let mut keep_alive = Vec::new();
    let seeds = seed_list(scenario, cluster, &mut keep_alive).await?;
    let config = ClientConfig { seeds, cluster: Some(scenario.cluster.clone()), ..scenario.client.clone() };
    config.validate().map_err(|e| RealError::Scenario(format!("client configuration: {e}")))?;
    let mut rng = Rng::new(options.rng_seed);
    let t0 = Instant::now();

    // Every arrival, in a stable order: group by group.
    let mut arrivals = Vec::new();
    for group in &scenario.arrivals {
        for offset in group.process.offsets(&mut rng) {
            let length = group.session.sample(&mut rng);
            arrivals.push((group.start + offset, length, group.measured));
        }
    }
    let records = arrivals
        .iter()
        .enumerate()
        .map(|(i, &(at, _, measured))| ClientRecord {
            client: i as u32,
            measured,
            arrived: at,
            outcome: ClientOutcome::Pending,
            full_rejections: 0,
            attempts: 0,
        })
        .collect();
    let shared = Arc::new(Shared {
        t0,
        cluster: cluster.clone(),
        config,
        rng_seed: rng.next_u64(),
        records: Mutex::new(records),
        admissions: Mutex::new(Vec::new()),
        holders: Mutex::new(vec![BTreeSet::new(); cluster.configs.len()]),
        unsettled: watch::Sender::new(arrivals.len() as u64),
        stop: watch::Sender::new(false),
        hostile_handshakes: AtomicU64::new(0),
        hostile_answered: AtomicU64::new(0),
    });

    let mut scheduled = tokio::task::JoinSet::new();
    for (client, (at, length, _)) in arrivals.into_iter().enumerate() {
        let shared = shared.clone();
        tokio::spawn(async move {
            sleep_until(shared.t0 + at).await;
            client_life(shared, client as u32, client, length).await;
        });
    }
    for index in 0..cluster.configs.len() as u32 {
        let at = start_of(scenario, index);
        if !at.is_zero() {
            let cluster = cluster.clone();
            scheduled.spawn(async move {
                sleep_until(t0 + at).await;
                cluster.start_node(index).await
            });
        }
    }
    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|f| f.at);
    for fault in faults {
        let shared = shared.clone();
        scheduled.spawn(async move {
            sleep_until(shared.t0 + fault.at).await;
            apply_fault(&shared, fault.instance, &fault.kind).await;
            Ok(())
        });
    }
    let default_targets: Vec<u32> = match scenario.seeds.iter().find_map(|s| match s {
        Seed::Instance(i) => Some(*i),
        _ => None,
    }) {
        Some(i) => vec![i],
        None => vec![0],
    };
    for flood in &scenario.floods {
        let targets = flood.targets_or(default_targets.clone());
        let mut at = flood.start;
        let end = flood.start + flood.duration;
        loop {
            at += Duration::from_secs_f64(crate::dist::exponential_unit(&mut rng) / flood.rate_per_sec);
            if at >= end {
                break;
            }
            let target = targets[rng.below_or_eq(targets.len() as u64 - 1) as usize];
            let salt = rng.next_u64();
            let shared = shared.clone();
            tokio::spawn(async move {
                sleep_until(shared.t0 + at).await;
                hostile_handshake(&shared, target, salt).await;
            });
        }
    }

    let horizon = scenario.run.horizon;
    let finished = tokio::time::timeout(horizon, async {
        while let Some(done) = scheduled.join_next().await {
            done.map_err(|e| RealError::Start(format!("a scheduled task failed: {e}")))??;
        }
        let mut unsettled = shared.unsettled.subscribe();
        let _ = unsettled.wait_for(|&n| n == 0).await;
        Ok::<(), RealError>(())
    })
    .await;
    if let Ok(result) = finished {
        result?;
    }
    let end_of_arrivals = t0.elapsed();
    let loads = loads(cluster).await;
    tokio::time::sleep(scenario.run.settle).await;
    shared.stop.send_replace(true);
    drop(keep_alive);

    let records = std::mem::take(&mut *shared.records.lock().unwrap_or_else(PoisonError::into_inner));
    let mut admissions =
        std::mem::take(&mut *shared.admissions.lock().unwrap_or_else(PoisonError::into_inner));
    admissions.sort_by_key(|a| a.at);
    let over_capacity = loads.iter().filter(|l| l.connected > l.max_sessions).count() as u32;
    Ok(Outcome {
        records,
        admissions,
        loads,
        end_of_arrivals,
        over_capacity,
        hostile_handshakes: shared.hostile_handshakes.load(Ordering::Relaxed),
        hostile_answered: shared.hostile_answered.load(Ordering::Relaxed),
    })
}

/// The clients' seed list: instances by their real endpoints; a blackhole is
/// a listener that never accepts (connections complete into its backlog and
/// hear nothing), a refused seed a port that was bound and closed.
async fn seed_list(
    scenario: &Scenario,
    cluster: &Cluster,
    keep_alive: &mut Vec<TcpListener>,
) -> Result<Vec<aos_cluster::Endpoint>, RealError> {
    let default: Vec<Seed> = (0..cluster.configs.len().min(3) as u32).map(Seed::Instance).collect();
    let specs = if scenario.seeds.is_empty() { &default } else { &scenario.seeds };
    let mut seeds = Vec::new();
    for spec in specs {
        let endpoint = match *spec {
            Seed::Instance(i) => {
                cluster.endpoint(i).ok_or_else(|| RealError::Start(format!("instance {i} is not up")))?
            }
            Seed::Blackhole | Seed::Refused => {
                let listener =
                    TcpListener::bind("127.0.0.1:0").await.map_err(|e| RealError::Start(e.to_string()))?;
                let port = listener.local_addr().map_err(|e| RealError::Start(e.to_string()))?.port();
                if *spec == Seed::Blackhole {
                    keep_alive.push(listener);
                }
                aos_cluster::Endpoint::new("127.0.0.1", port).map_err(|e| RealError::Start(e.to_string()))?
            }
        };
        seeds.push(endpoint);
    }
    Ok(seeds)
}

/// One client: connects at its arrival, holds its session for `length`
/// (`None`: until the run ends), and after a crash of its instance comes
/// back as the fault says.
async fn client_life(shared: Arc<Shared>, client: u32, record: usize, length: Option<Duration>) {
    let Some((instance, mut session)) = effort(&shared, client, record).await else { return };
    let mut stop = shared.stop.subscribe();
    let ends_at = length.map(|l| Instant::now() + l);
    let mut buf = [0u8; 64];
    tokio::select! {
        _ = async { while let Ok(1..) = session.read(&mut buf).await {} } => {}
        _ = async { if let Some(at) = ends_at { sleep_until(at).await } else { std::future::pending().await } } => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    let still_held =
        shared.holders.lock().unwrap_or_else(PoisonError::into_inner)[instance as usize].remove(&client);
    drop(session);
    if still_held {
        return;
    }
    // A crash took the session; the fault counted this client's return.
    let Some(back) = crash_return(&shared, instance) else { return };
    let wait = Duration::from_nanos(
        Rng::new(shared.rng_seed ^ u64::from(client)).below_or_eq(back.within.as_nanos() as u64),
    );
    tokio::time::sleep(wait).await;
    let record = {
        let mut records = shared.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.push(ClientRecord {
            client,
            measured: back.measured,
            arrived: shared.t0.elapsed(),
            outcome: ClientOutcome::Pending,
            full_rejections: 0,
            attempts: 0,
        });
        records.len() - 1
    };
    if let Some((instance, session)) = effort(&shared, client, record).await {
        let _ = stop.wait_for(|s| *s).await;
        shared.holders.lock().unwrap_or_else(PoisonError::into_inner)[instance as usize].remove(&client);
        drop(session);
    }
}

/// The return rule of the crash that hit `instance`, if its clients return.
fn crash_return(shared: &Shared, instance: u32) -> Option<Return> {
    let returns = shared.cluster.returns.lock().unwrap_or_else(PoisonError::into_inner);
    returns.get(instance as usize).copied().flatten()
}

/// One connection effort, recorded in `records[record]`; settles one
/// unsettled effort.
async fn effort(shared: &Shared, client: u32, record: usize) -> Option<(u32, aos_cluster_tokio::Session)> {
    let result = Client::with_options(
        shared.config.clone(),
        ClientOptions::new().with_rng_seed(shared.rng_seed.rotate_left(17) ^ u64::from(client)),
    )
    .connect()
    .await;
    let at = shared.t0.elapsed();
    let attempts = match &result {
        Ok(session) => session.attempts(),
        Err(e) => e.attempts(),
    };
    let full =
        attempts.iter().filter(|a| matches!(a.outcome, AttemptOutcome::Rejected(RejectReason::Full))).count();
    let count = attempts.len();
    let mut held = None;
    let outcome = match result {
        Ok(session) => match shared.cluster.index_of(session.endpoint()) {
            Some(instance) => {
                let measured = shared.records.lock().unwrap_or_else(PoisonError::into_inner)[record].measured;
                shared.admissions.lock().unwrap_or_else(PoisonError::into_inner).push(Admission {
                    at,
                    instance,
                    measured,
                });
                shared.holders.lock().unwrap_or_else(PoisonError::into_inner)[instance as usize]
                    .insert(client);
                held = Some((instance, session));
                ClientOutcome::Connected { instance, at }
            }
            None => ClientOutcome::Failed {
                at,
                attempt_log: format!("connected to {}, which is no instance of the run", session.endpoint()),
            },
        },
        Err(e) => ClientOutcome::Failed { at, attempt_log: e.to_string() },
    };
    {
        let mut records = shared.records.lock().unwrap_or_else(PoisonError::into_inner);
        let r = &mut records[record];
        r.outcome = outcome;
        r.attempts = count as u32;
        r.full_rejections = full as u32;
    }
    shared.unsettled.send_modify(|n| *n = n.saturating_sub(1));
    held
}

async fn apply_fault(shared: &Shared, instance: u32, kind: &FaultKind) {
    let cluster = &shared.cluster;
    match *kind {
        FaultKind::Crash { clients_return, return_within, measure_returns, .. } => {
            let victims = std::mem::take(
                &mut shared.holders.lock().unwrap_or_else(PoisonError::into_inner)[instance as usize],
            );
            if clients_return {
                cluster.returns.lock().unwrap_or_else(PoisonError::into_inner)[instance as usize] =
                    Some(Return { within: return_within, measured: measure_returns });
                shared.unsettled.send_modify(|n| *n += victims.len() as u64);
            }
            cluster.crash(instance).await;
        }
        FaultKind::Drain | FaultKind::Undrain => {
            cluster.set_accepting(instance, matches!(kind, FaultKind::Undrain)).await;
        }
        FaultKind::SetMaxSessions { max_sessions } => cluster.set_max_sessions(instance, max_sessions).await,
        // Refused up front by `check_supported`.
        _ => {}
    }
}

/// A hostile client: handshakes on a new connection, reads the reply, closes.
async fn hostile_handshake(shared: &Shared, target: u32, salt: u64) {
    let Some(endpoint) = shared.cluster.endpoint(target) else { return };
    shared.hostile_handshakes.fetch_add(1, Ordering::Relaxed);
    let request = Message::HandshakeRequest(HandshakeRequest {
        request_id: salt,
        salt,
        load_balance: true,
        cluster: shared.config.cluster.clone(),
    });
    let mut frame = Vec::new();
    if wire::encode(&request, &mut frame).is_err() {
        return;
    }
    let answered = tokio::time::timeout(HOSTILE_PATIENCE, async {
        let mut stream = TcpStream::connect((endpoint.host(), endpoint.port())).await.ok()?;
        stream.write_all(&frame).await.ok()?;
        let mut decoder = Decoder::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            decoder.feed(&buf[..n]);
            if let Ok(Some(Message::HandshakeReply(_))) = decoder.next() {
                return Some(());
            }
        }
    })
    .await;
    if let Ok(Some(())) = answered {
        shared.hostile_answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every instance's sessions now, and whether it counts as a survivor.
async fn loads(cluster: &Cluster) -> Vec<InstanceLoad> {
    let mut loads = Vec::with_capacity(cluster.configs.len());
    for index in 0..cluster.configs.len() as u32 {
        let (max_sessions, accepting) = cluster.admin_view(index);
        let load = match cluster.figures(index).await {
            Some(figures) => InstanceLoad {
                connected: figures.connected,
                max_sessions,
                survivor: cluster.configs[index as usize].role == aos_cluster::workload::Role::Serving
                    && accepting,
            },
            None => InstanceLoad { connected: 0, max_sessions, survivor: false },
        };
        loads.push(load);
    }
    loads
}
