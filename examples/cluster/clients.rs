//! The demo's clients: a stream of them at a rate, each a few PING/PONG exchanges over its balanced session.

use super::*;

pub(crate) fn client_config(seeds: Vec<Endpoint>) -> ClientConfig {
    // Loopback instances answer in microseconds or not at all.
    ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            max_rounds: 5,
        },
        ..ClientConfig::with_seeds(seeds)
    }
}

/// Starts `count` clients at `args.rate` per second; each exchanges its
/// requests, then keeps its session until `stop` (counting it lost if the
/// instance ends it). The task ends when every client has had its exchanges.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_clients(
    args: &Args,
    config: &ClientConfig,
    options: &ClientOptions,
    first_seed: u64,
    count: usize,
    counters: &Arc<Counters>,
    placed: &Arc<Mutex<Vec<Option<InstanceId>>>>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let requests = args.requests;
    let (config, options) = (config.clone(), options.clone());
    let (counters, placed, stop) = (counters.clone(), placed.clone(), stop.clone());
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(gap);
        let mut outcomes = JoinSet::new();
        for n in first_seed..first_seed + count as u64 {
            ticker.tick().await;
            counters.started.fetch_add(1, Ordering::Relaxed);
            let (config, options, counters, placed, mut stop) =
                (config.clone(), options.clone(), counters.clone(), placed.clone(), stop.clone());
            let (done_tx, done) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let session = match aos_cluster_tokio::Client::with_options(
                    config.clone(),
                    options.clone().with_rng_seed(n),
                )
                .connect()
                .await
                {
                    Ok(session) => session,
                    Err(e) => {
                        tracing::info!(error = %e, "client failed");
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        let _ = done_tx.send(());
                        return;
                    }
                };
                counters.connected.fetch_add(1, Ordering::Relaxed);
                placed.lock().expect("not poisoned").push(session.instance());
                let mut session = BufReader::new(session);
                match exchange(&mut session, n, requests).await {
                    Ok(()) => counters.exchanges.fetch_add(u64::from(requests), Ordering::Relaxed),
                    Err(e) => {
                        tracing::info!(error = %e, "exchange failed");
                        counters.app_errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                let _ = done_tx.send(());
                let mut rest = [0u8; 64];
                tokio::select! {
                    // The instance has nothing more to say: a read ending means the session ended.
                    _ = session.read(&mut rest) => { counters.lost.fetch_add(1, Ordering::Relaxed); }
                    _ = stop.changed() => {}
                }
            });
            outcomes.spawn(done);
        }
        while outcomes.join_next().await.is_some() {}
    })
}

/// `requests` PING/PONG exchanges on `session`, each reply checked.
pub(crate) async fn exchange(
    session: &mut BufReader<Session>,
    client: u64,
    requests: u32,
) -> std::io::Result<()> {
    let mut line = String::new();
    for n in 0..requests {
        session.get_mut().write_all(format!("PING {client} {n}\n").as_bytes()).await?;
        line.clear();
        tokio::time::timeout(Duration::from_secs(5), (&mut *session).take(MAX_LINE).read_line(&mut line))
            .await??;
        if !line.starts_with(&format!("PONG {client} {n} from ")) {
            return Err(std::io::Error::other(format!("unexpected reply {line:?}")));
        }
    }
    Ok(())
}
