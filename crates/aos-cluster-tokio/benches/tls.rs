//! What TLS costs a session, measured against plain TCP in the same run.
//!
//! One instance serving plain TCP and one serving TLS (a certificate from a
//! throwaway CA, ECDSA P-256), both standalone on 127.0.0.1, so a session is
//! exactly what a client pays in production: a handshake connection and a
//! session connection, each with its own TLS handshake under TLS.
//!
//! - `time_to_session/{plain,tls}`: wall time of `Client::connect` until the
//!   session is accepted; criterion's throughput line is sessions/s (one
//!   client at a time).
//! - `cpu_per_session/{plain,tls}`: CPU time of the whole process (client and
//!   server; Linux `/proc/self/task/*/schedstat`) per session, reported by
//!   criterion as if it were time.
//!
//! `cargo bench -p aos-cluster-tokio --features dev-certs --bench tls`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use aos_cluster::config::RetryPolicy;
use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, Role};
use aos_cluster_tokio::registry::{MemoryRegistry, Registry};
use aos_cluster_tokio::tls::dev_certs::DevPki;
use aos_cluster_tokio::{Client, ClientOptions, Server, ServerConfig, ServerOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

/// Nanoseconds every thread of this process has run, from the scheduler's
/// own accounting (`None` off Linux).
fn process_cpu() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may end between the listing and the read: it no longer counts.
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

async fn instance(id: u32, options: ServerOptions) -> Endpoint {
    let mut instance =
        InstanceConfig::new(InstanceId(id), Endpoint::new("127.0.0.1", 1).expect("endpoint"), 1_000_000);
    instance.role = Role::Standalone;
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("address"), instance);
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let mut server = Server::bind_with(config, registry, options).await.expect("server starts");
    let endpoint = server.endpoint().clone();
    tokio::spawn(async move {
        // Sessions end as soon as they are handed over: only their setup is measured.
        while let Some(accepted) = server.accept().await {
            drop(accepted);
        }
    });
    endpoint
}

fn client(endpoint: Endpoint) -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy { base: Duration::from_millis(1), cap: Duration::from_millis(1), max_rounds: 1 },
        ..ClientConfig::with_seeds(vec![endpoint])
    }
}

fn bench(c: &mut Criterion) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pki = DevPki::new().expect("throwaway CA");
    let server_tls = pki.server_tls(&["127.0.0.1"]).expect("instance certificate");
    let (plain, tls) = runtime.block_on(async {
        (
            instance(1, ServerOptions::new()).await,
            instance(2, ServerOptions::new().with_tls(server_tls)).await,
        )
    });
    let cases = [
        ("plain", client(plain), ClientOptions::new()),
        ("tls", client(tls), ClientOptions::new().with_tls(pki.client_tls().expect("client TLS"))),
    ];

    let mut group = c.benchmark_group("time_to_session");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for (name, config, options) in &cases {
        group.bench_function(*name, |b| b.to_async(&runtime).iter(|| one_session(config, options)));
    }
    group.finish();

    if process_cpu().is_none() {
        eprintln!("cpu_per_session: /proc/self/task/*/schedstat is not readable here; skipped");
        return;
    }
    let mut group = c.benchmark_group("cpu_per_session");
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for (name, config, options) in &cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| cpu_of_sessions(&runtime, config, options, iters));
        });
    }
    group.finish();
}

async fn one_session(config: &ClientConfig, options: &ClientOptions) {
    let session = Client::with_options(config.clone(), options.clone()).connect().await.expect("a session");
    drop(session);
}

fn cpu_of_sessions(
    runtime: &Runtime,
    config: &ClientConfig,
    options: &ClientOptions,
    iters: u64,
) -> Duration {
    let before = process_cpu().unwrap_or_default();
    runtime.block_on(async {
        for _ in 0..iters {
            one_session(config, options).await;
        }
    });
    process_cpu().unwrap_or_default().saturating_sub(before)
}

criterion_group!(benches, bench);
criterion_main!(benches);
