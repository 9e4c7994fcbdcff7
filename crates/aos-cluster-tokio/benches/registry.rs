//! What a balancing instance's snapshot costs at M members with the
//! PostgreSQL backend (answered from its replica, which reads only the rows
//! changed since its last read, at most once per `heartbeat_interval`) against a
//! full read of the cluster's rows, side by side in the same run, on the same
//! table.
//!
//! Between two snapshots a fifth of the members heartbeat (one
//! `heartbeat_interval` of 5 s seen through a `snapshot_ttl` of 1 s); those
//! writes are not timed. PostgreSQL, named by `AOS_TEST_POSTGRES_URL`
//! (`.ci/postgres.sh` starts one); without it the bench says so and measures
//! nothing.
//!
//! `cargo bench -p aos-cluster-tokio --features postgres --bench registry`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]
#![allow(clippy::disallowed_methods)] // a bench owns its clock

use aos_cluster_tokio::registry::MemberTiming;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aos_cluster::registry::Heartbeat;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
use aos_cluster_tokio::registry::{self, Incarnation, Registry, POSTGRES_MEMBERS_TABLE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

const MEMBER_TTL: Duration = Duration::from_secs(30);

fn heartbeat(cluster: &str, i: u32, connected: u32) -> Heartbeat {
    Heartbeat {
        id: InstanceId(3_000_000_000 + i),
        endpoint: format!("AOS{i}@10.1.{}.{}:2712", i / 250, i % 250).parse::<Endpoint>().expect("endpoint"),
        cluster: Some(cluster.to_owned()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(connected, 100),
    }
}

/// A fifth of the members heartbeat (untimed) between two reads.
async fn churn(writer: &dyn Registry, cluster: &str, m: u32, round: u32, incarnation: Incarnation) {
    for i in (0..m).filter(|i| (i + round).is_multiple_of(5)) {
        writer.heartbeat(&heartbeat(cluster, i, round % 100), incarnation).await.expect("heartbeat");
    }
}

fn snapshot(c: &mut Criterion) {
    let Ok(url) = std::env::var("AOS_TEST_POSTGRES_URL") else {
        eprintln!("registry bench: AOS_TEST_POSTGRES_URL is not set; nothing measured");
        return;
    };
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("registry_snapshot_postgres");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    for m in [10u32, 100, 1_000] {
        let cluster = format!("bench-{}-{m}", std::process::id());
        let incarnation = Incarnation::random();
        let (writer, reader, raw) = rt.block_on(async {
            let writer = registry::open(&url).await.expect("open");
            for i in 0..m {
                writer.register(&heartbeat(&cluster, i, 0), incarnation, MEMBER_TTL).await.expect("register");
            }
            let reader = registry::open(&url).await.expect("open");
            let (raw, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            (writer, reader, raw)
        });
        let rounds = AtomicU32::new(0);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("replica", m), |b| {
            b.to_async(&rt).iter_custom(|iterations| {
                let (writer, reader) = (writer.clone(), reader.clone());
                let cluster = cluster.clone();
                let first = rounds.fetch_add(iterations as u32, Ordering::Relaxed);
                async move {
                    let mut timed = Duration::ZERO;
                    for k in 0..iterations as u32 {
                        churn(&*writer, &cluster, m, first + k, incarnation).await;
                        let started = Instant::now();
                        let read = reader
                            .snapshot(Some(&cluster), MemberTiming::with_ttl(MEMBER_TTL))
                            .await
                            .expect("snapshot");
                        timed += started.elapsed();
                        assert_eq!(read.len(), m as usize);
                    }
                    timed
                }
            })
        });
        let full_read = format!(
            "SELECT id, endpoint, role, accepting, max_sessions, connected,
                    (EXTRACT(EPOCH FROM now() - heartbeat_at) * 1000000)::BIGINT
             FROM {POSTGRES_MEMBERS_TABLE} WHERE cluster = $1 AND NOT removed ORDER BY id"
        );
        group.bench_function(BenchmarkId::new("full_read", m), |b| {
            b.to_async(&rt).iter_custom(|iterations| {
                let writer = writer.clone();
                let (raw, full_read, cluster) = (&raw, &full_read, cluster.clone());
                let first = rounds.fetch_add(iterations as u32, Ordering::Relaxed);
                async move {
                    let mut timed = Duration::ZERO;
                    for k in 0..iterations as u32 {
                        churn(&*writer, &cluster, m, first + k, incarnation).await;
                        let started = Instant::now();
                        let rows = raw
                            .query_typed(full_read, &[(&cluster, tokio_postgres::types::Type::TEXT)])
                            .await
                            .expect("full read");
                        timed += started.elapsed();
                        assert_eq!(rows.len(), m as usize);
                    }
                    timed
                }
            })
        });
        rt.block_on(async {
            for i in 0..m {
                let _ = writer.remove(heartbeat(&cluster, i, 0).id, incarnation).await;
            }
            let _ = writer.purge(Some(&cluster), Duration::ZERO).await;
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
