//! The suite: every function runs once per backend.

use super::*;

async fn register_then_snapshot_round_trips(db: &TestDb) {
    let registry = db.connect().await;
    let hb = Heartbeat {
        role: Role::LoadBalancerOnly,
        accepting: false,
        workload: Workload::new(u32::MAX, u32::MAX),
        ..heartbeat(u32::MAX, "aos1.contoso.com", 0)
    };
    registry.register(&hb, A, TTL).await.expect("register");
    let other = Heartbeat { endpoint: endpoint("[fe80::1]:2713"), ..heartbeat(7, "x", 3) };
    registry.register(&other, B, TTL).await.expect("register another id");
    let lonely = Heartbeat { cluster: None, ..heartbeat(8, "y", 0) };
    registry.register(&lonely, B, TTL).await.expect("register one in no cluster");

    let read = members(&*registry, Some("c")).await;
    assert_eq!(ids(&read), [7, u32::MAX], "ordered by id, one cluster");
    let m = &read[1];
    assert_eq!(
        (m.id, &m.endpoint, m.role, m.accepting, m.workload),
        (hb.id, &hb.endpoint, hb.role, hb.accepting, hb.workload)
    );
    // At most one `heartbeat_interval` (5 s of 30): etcd, which keeps no
    // time of a write, reports every live key that old.
    assert!(m.heartbeat_age <= Duration::from_secs(5), "a fresh row is {:?} old", m.heartbeat_age);
    assert_eq!(read[0].endpoint, other.endpoint);
    assert_eq!(ids(&members(&*registry, None).await), [8], "None selects the rows of no cluster");
    assert!(members(&*registry, Some("C")).await.is_empty(), "cluster names compare exactly");

    // A heartbeat of the same incarnation rewrites the figures.
    let busier = Heartbeat { workload: Workload::new(5, 100), ..other.clone() };
    registry.heartbeat(&busier, B).await.expect("heartbeat");
    assert_eq!(members(&*registry, Some("c")).await[0].workload, Workload::new(5, 100));
    // Registering again with the same incarnation (a retried start) is fine.
    registry.register(&other, B, TTL).await.expect("same incarnation registers again");
}

async fn a_live_row_of_another_incarnation_is_refused(db: &TestDb) {
    let first = db.connect().await;
    let second = db.connect().await;
    first.register(&heartbeat(1, "first", 1), A, TTL).await.expect("first start");
    db.age(1, Duration::from_secs(10)).await;

    assert_in_use(
        second.register(&heartbeat(1, "second", 2), B, TTL).await,
        1,
        Duration::from_secs(10),
        Duration::from_secs(15),
    );
    let read = members(&*first, Some("c")).await;
    assert_eq!(read[0].endpoint, endpoint("AOS01@first:2712"), "the refused start wrote nothing");
    assert_eq!(read[0].workload, Workload::new(1, 100));
    first.heartbeat(&heartbeat(1, "first", 1), A).await.expect("the owner keeps heartbeating");
}

async fn a_stale_row_is_taken_over_and_its_owner_is_superseded(db: &TestDb) {
    let old = db.connect().await;
    let new = db.connect().await;
    old.register(&heartbeat(1, "old", 1), A, TTL).await.expect("first start");
    db.age(1, TTL + Duration::from_secs(1)).await;

    new.register(&heartbeat(1, "new", 2), B, TTL).await.expect("a stale row is taken over");
    let read = members(&*new, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    assert!(read[0].heartbeat_age <= Duration::from_secs(5), "{:?}", read[0].heartbeat_age);

    // The crashed predecessor comes back to life: it may not write.
    match old.heartbeat(&heartbeat(1, "old", 9), A).await {
        Err(RegistryError::Superseded { id }) => assert_eq!(id, InstanceId(1)),
        other => panic!("expected Superseded, got {other:?}"),
    }
    assert!(!old.remove(InstanceId(1), A).await.expect("remove"), "not its row any more");
    let read = members(&*new, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    new.heartbeat(&heartbeat(1, "new", 3), B).await.expect("the new owner heartbeats");
}

async fn remove_touches_only_its_own_incarnation(db: &TestDb) {
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "a", 0), A, TTL).await.expect("register");
    registry.register(&heartbeat(2, "b", 0), B, TTL).await.expect("register");
    assert!(!registry.remove(InstanceId(1), B).await.expect("remove"), "wrong incarnation");
    assert!(!registry.remove(InstanceId(99), A).await.expect("remove"), "no such row");
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1, 2]);

    assert!(registry.remove(InstanceId(1), A).await.expect("remove"));
    assert!(!registry.remove(InstanceId(1), A).await.expect("remove again"), "already gone");
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2]);
    match registry.heartbeat(&heartbeat(1, "a", 0), A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("a heartbeat after removal must not recreate the row: {other:?}"),
    }
    assert_eq!(ids(&members(&*registry, Some("c")).await), [2]);
}

async fn rows_older_than_ten_ttl_are_left_out_then_purged(db: &TestDb) {
    let registry = db.connect().await;
    for id in 1..=3 {
        registry.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    let elsewhere = Heartbeat { cluster: Some("d".to_owned()), ..heartbeat(4, "h", 0) };
    registry.register(&elsewhere, A, TTL).await.expect("register");
    db.age(2, PURGE + Duration::from_secs(1)).await;
    db.age(3, PURGE - Duration::from_secs(60)).await;
    db.age(4, PURGE + Duration::from_secs(1)).await;

    let read = members(&*registry, Some("c")).await;
    assert_eq!(ids(&read), [1, 3], "the row past 10 x member_ttl is left out, the merely stale one stays");
    let age = read[1].heartbeat_age;
    assert!(Duration::from_secs(240) <= age && age < Duration::from_secs(245), "stale row: {age:?}");
    // A snapshot only reads: the old row is still there, holding its id.
    let patient = Duration::from_secs(3600);
    assert_in_use(
        registry.register(&heartbeat(2, "h", 0), B, patient).await,
        2,
        PURGE,
        PURGE + Duration::from_secs(5),
    );

    assert_eq!(registry.purge(Some("c"), PURGE).await.expect("purge"), 1, "one statement deletes it");
    assert_eq!(registry.purge(Some("c"), PURGE).await.expect("purge again"), 0, "idempotent");
    // Deleted, not just hidden: any incarnation may claim the id now, even
    // with a TTL that would still count the old row as live.
    registry.register(&heartbeat(2, "h", 0), B, patient).await.expect("the purged id is free");
    // A purge deletes only its own cluster's rows.
    assert_in_use(registry.register(&elsewhere, B, patient).await, 4, PURGE, PURGE + Duration::from_secs(5));
    assert_eq!(ids(&members(&*registry, Some("c")).await), [1, 2, 3]);
}

/// A starting process that found the row's holder gone takes the row from
/// exactly that holder: not from a third process that claimed it meanwhile.
async fn take_over_replaces_only_the_named_holder(db: &TestDb) {
    let old = db.connect().await;
    let new = db.connect().await;
    const C: Incarnation = Incarnation(7);
    old.register(&heartbeat(1, "old", 1), A, TTL).await.expect("first start");
    match new.register(&heartbeat(1, "new", 2), B, TTL).await {
        Err(RegistryError::IdInUse { holder, endpoint, .. }) => {
            assert_eq!(holder, A, "names the holder");
            assert_eq!(endpoint, "AOS01@old:2712", "and where to ask it");
        }
        other => panic!("expected IdInUse, got {other:?}"),
    }
    // The wrong holder named: refused, nothing written.
    match new.take_over(&heartbeat(1, "new", 2), B, C).await {
        Err(RegistryError::IdInUse { holder, .. }) => assert_eq!(holder, A),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    assert_eq!(members(&*new, Some("c")).await[0].endpoint, endpoint("AOS01@old:2712"));

    new.take_over(&heartbeat(1, "new", 2), B, A).await.expect("the named holder's row is taken over");
    let read = members(&*old, Some("c")).await;
    assert_eq!(
        (read[0].endpoint.clone(), read[0].workload),
        (endpoint("AOS01@new:2712"), Workload::new(2, 100))
    );
    match old.heartbeat(&heartbeat(1, "old", 9), A).await {
        Err(RegistryError::Superseded { .. }) => {}
        other => panic!("the old holder is superseded, got {other:?}"),
    }
    new.heartbeat(&heartbeat(1, "new", 3), B).await.expect("the new holder heartbeats");
    // No row at all: taking over is a plain claim.
    new.take_over(&heartbeat(5, "new", 0), B, A).await.expect("a free id");
    assert_eq!(ids(&members(&*new, Some("c")).await), [1, 5]);
}

/// A member_ttl whose sixth, the age at which a PostgreSQL replica reads
/// what changed, is short enough to wait out in a test.
const SHORT_TTL: Duration = Duration::from_millis(1_200);

/// A snapshot that sees every change committed before it: past the replica's
/// refresh interval (`SHORT_TTL / 6`).
pub(crate) async fn settled_members(registry: &dyn Registry, cluster: Option<&str>) -> Vec<MemberRecord> {
    tokio::time::sleep(SHORT_TTL / 6 + Duration::from_millis(20)).await;
    registry.snapshot(cluster, MemberTiming::with_ttl(SHORT_TTL)).await.expect("snapshot")
}

/// Changes made through one handle show in another's next snapshot once its
/// replica is due a read: updates, new rows and removals (the incremental
/// read misses none of them).
async fn every_change_shows_in_the_next_snapshot(db: &TestDb) {
    let writer = db.connect().await;
    let reader = db.connect().await;
    for id in 1..=20 {
        writer.register(&heartbeat(id, "h", 0), A, TTL).await.expect("register");
    }
    assert_eq!(members(&*reader, Some("c")).await.len(), 20);
    for round in 1..=5u32 {
        for id in round..=20u32 {
            if (id + round) % 3 == 0 {
                writer.heartbeat(&heartbeat(id, "h", round * 100 + id), A).await.expect("heartbeat");
            }
        }
        writer.register(&heartbeat(100 + round, "h", 0), A, TTL).await.expect("a newcomer");
        assert!(writer.remove(InstanceId(round), A).await.expect("remove"));
        let read = settled_members(&*reader, Some("c")).await;
        let expected: Vec<u32> = (round + 1..=20).chain(101..=100 + round).collect();
        assert_eq!(ids(&read), expected, "round {round}");
        for m in read.iter().filter(|m| m.id.0 <= 20 && (m.id.0 + round) % 3 == 0) {
            assert_eq!(m.workload.connected, round * 100 + m.id.0, "round {round}, row {}", m.id);
        }
    }
}

async fn concurrent_registers_of_one_id_have_one_winner(db: &TestDb) {
    let a = db.connect().await;
    let b = db.connect().await;
    for round in 0..10u32 {
        let id = 100 + round;
        let (hb_a, hb_b) = (heartbeat(id, "a", 0), heartbeat(id, "b", 0));
        let (won_a, won_b) = tokio::join!(
            tokio::spawn({
                let (a, hb) = (Arc::clone(&a), hb_a.clone());
                async move { a.register(&hb, A, TTL).await }
            }),
            tokio::spawn({
                let (b, hb) = (Arc::clone(&b), hb_b.clone());
                async move { b.register(&hb, B, TTL).await }
            }),
        );
        let (won_a, won_b) = (won_a.expect("task a"), won_b.expect("task b"));
        let winner = match (&won_a, &won_b) {
            (Ok(()), Err(RegistryError::IdInUse { .. })) => &hb_a,
            (Err(RegistryError::IdInUse { .. }), Ok(())) => &hb_b,
            other => panic!("round {round}: exactly one must win, got {other:?}"),
        };
        // Read as a process starting now would (a replica may lag behind the other handle's win).
        let read = members(&*db.connect().await, Some("c")).await;
        let row = read.iter().find(|m| m.id.0 == id).expect("the winner's row");
        assert_eq!(row.endpoint, winner.endpoint, "round {round}");
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::TestDb::memory()).await;
                }
            )*
        }

        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::TestDb::sqlite()).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = super::TestDb::postgres(stringify!($test)).await else { return };
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_every_backend!(
    register_then_snapshot_round_trips,
    a_live_row_of_another_incarnation_is_refused,
    a_stale_row_is_taken_over_and_its_owner_is_superseded,
    remove_touches_only_its_own_incarnation,
    rows_older_than_ten_ttl_are_left_out_then_purged,
    take_over_replaces_only_the_named_holder,
    every_change_shows_in_the_next_snapshot,
    concurrent_registers_of_one_id_have_one_winner,
);

/// The suite on etcd: all of it but the purge of rows older than
/// `10 x member_ttl`, which etcd never holds (a key goes when its lease
/// expires: `etcd::a_member_that_stops_heartbeating_disappears_when_its_lease_expires`).
#[cfg(all(feature = "etcd", aos_etcd))]
mod etcd_suite {
    macro_rules! on_etcd {
        ($($test:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = super::TestDb::etcd(stringify!($test)).await else { return };
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        };
    }

    on_etcd!(
        register_then_snapshot_round_trips,
        a_live_row_of_another_incarnation_is_refused,
        a_stale_row_is_taken_over_and_its_owner_is_superseded,
        remove_touches_only_its_own_incarnation,
        take_over_replaces_only_the_named_holder,
        every_change_shows_in_the_next_snapshot,
        concurrent_registers_of_one_id_have_one_winner,
    );
}

/// An etcd registry whose snapshots first [`EtcdRegistry::sync`]: the suite
/// reads right after another handle wrote, and a replica learns of other
/// processes' writes through its watch, milliseconds later. `sync` (one
/// progress request on the watch) makes that wait exact; the etcd tests below
/// check the replica without it.
#[cfg(all(feature = "etcd", aos_etcd))]
pub(crate) struct Synced(pub(crate) EtcdRegistry);

#[cfg(all(feature = "etcd", aos_etcd))]
impl Registry for Synced {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.register(heartbeat, incarnation, member_ttl)
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.heartbeat(heartbeat, incarnation)
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.0.take_over(heartbeat, incarnation, previous)
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            self.0.sync().await?;
            self.0.snapshot(cluster, timing).await
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        self.0.purge(cluster, older_than)
    }

    fn malformed_rows(&self) -> u64 {
        self.0.malformed_rows()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        self.0.remove(id, incarnation)
    }
}
