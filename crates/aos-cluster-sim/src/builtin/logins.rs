//! Logins: storms, bursts and waves of clients, mixed and refusing
//! clusters, dead seeds.

use super::*;

impl Scenario {
    /// `clients` clients log in within one second to `instances` equal
    /// instances (each sized so the storm fills half the cluster), and every
    /// ranking works from 5 s old figures wherever the protocol allows it:
    /// heartbeats every 5 s, registry snapshots reused for 5 s. Peers still
    /// answer workload queries live, so the herd comes from concurrent
    /// handshakes ranked on the same figures (one shared query round) and
    /// from sessions in flight that no figure shows yet.
    pub fn login_storm(instances: u32, clients: u32) -> Self {
        let max = (2 * clients).div_ceil(instances).max(1);
        let mut s = Scenario::base(
            if instances == 8 && clients == 1000 {
                "login-storm".into()
            } else {
                format!("login-storm-{instances}x{clients}")
            },
            "clients log in within 1 s to equal instances, 5 s stale snapshots",
            vec![InstanceGroup::serving(instances, max)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: clients, within: Duration::from_secs(1) },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.instance.heartbeat_interval = Duration::from_secs(5);
        s.instance.snapshot_ttl = Duration::from_secs(5);
        s
    }

    /// Instances of 50, 100, 200 and 400 sessions (two of each), filled to 80 %.
    pub fn heterogeneous() -> Self {
        let sizes = [50, 100, 200, 400];
        let total: u32 = sizes.iter().sum::<u32>() * 2;
        Scenario::base(
            "heterogeneous".into(),
            "max_sessions 50/100/200/400 (two of each) filled to 80 % within 2 s",
            sizes.iter().map(|&m| InstanceGroup::serving(2, m)).collect(),
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: total * 8 / 10, within: Duration::from_secs(2) },
                session: SessionLength::Forever,
                measured: true,
            }],
        )
    }

    /// Eight instances of 100 filled to 90 % within one second.
    pub fn rejections() -> Self {
        Scenario::base(
            "rejections".into(),
            "8 x 100 sessions, 90 % aggregate utilisation reached within 1 s",
            vec![InstanceGroup::serving(8, 100)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: 720, within: Duration::from_secs(1) },
                session: SessionLength::Forever,
                measured: true,
            }],
        )
    }

    /// The first `k` seeds are blackholed hosts, then three live seeds; the
    /// top-ranked instance is dead to clients (it refuses connections but
    /// still answers its peers, so it ranks first: it looks empty).
    pub fn dead_seeds(k: u32, attempt_delay: Option<Duration>) -> Self {
        let delay = match attempt_delay {
            Some(d) => duration::format(d),
            None => "off".into(),
        };
        let mut s = Scenario::base(
            format!("dead-seeds-k{k}-delay-{delay}"),
            "k blackholed seeds before the live ones; the top-ranked entry refuses clients",
            vec![InstanceGroup::serving(8, 100)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Poisson { count: 200, rate_per_sec: 100.0 },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.seeds = (0..k).map(|_| Seed::Blackhole).chain((0..3).map(Seed::Instance)).collect();
        s.client.attempt_delay = attempt_delay;
        s.faults.push(Fault { at: Duration::ZERO, instance: 7, kind: FaultKind::RefuseClients });
        s
    }

    /// `burst-N`: [`BURST_CLIENTS_PER_INSTANCE`] x `n` clients log in within
    /// one second to `n` instances of 100 sessions with every other setting
    /// at its default, and hold their sessions: a new user's cluster on
    /// Monday morning (seeds: the first three instances).
    pub fn burst_at(n: u32) -> Self {
        let clients = BURST_CLIENTS_PER_INSTANCE * n;
        let mut s = Scenario::base(
            format!("burst-{n}"),
            &format!("{clients} clients within 1 s to {n} x 100, default settings, sessions held"),
            vec![InstanceGroup::serving(n, 100)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: clients, within: Duration::from_secs(1) },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.keep_every_member();
        s
    }

    /// `waves-N`: [`WAVES`] waves of `n` clients to `n` instances of 100 at
    /// default settings; each wave logs in within 100 ms, holds its sessions
    /// for 1 s and closes them (all within about the same 100 ms), and the
    /// next comes 2 s after it. Every wave's fair share is one session per
    /// instance, so the balance is judged on admissions over the run
    /// (`admitted busiest/mean`), not on the sessions held at the end.
    pub fn waves_at(n: u32) -> Self {
        let waves = (0..WAVES)
            .map(|w| ArrivalGroup {
                start: Duration::from_millis(200) + WAVE_PERIOD * w,
                process: Process::Burst { count: n, within: Duration::from_millis(100) },
                session: SessionLength::Drawn(Dist::constant(Duration::from_secs(1))),
                measured: true,
            })
            .collect();
        let mut s = Scenario::base(
            format!("waves-{n}"),
            &format!("{WAVES} waves of {n} clients to {n} x 100, each held 1 s then closed, every 2 s"),
            vec![InstanceGroup::serving(n, 100)],
            waves,
        );
        s.keep_every_member();
        s
    }

    /// `login-storm` at `instances` instances with proportionally more
    /// clients ([`STORM_CLIENTS_PER_INSTANCE`] each, all within 1 s), named
    /// `login-storm-N`; each instance sized so the storm fills half of it
    /// (250 sessions). Above 1 000 instances, [`STORM_CLIENTS_PER_INSTANCE_5000`]
    /// each (instances of 50): the core ranks every member per handshake, so
    /// a handshake at 5 000 instances costs about 5x one at 1 000, and 625 000
    /// clients would take minutes per seed. The registry keeps every member
    /// and lists are cut (see [`Scenario::fit_to_size`]).
    pub fn login_storm_scaled(instances: u32) -> Self {
        let per_instance =
            if instances > 1000 { STORM_CLIENTS_PER_INSTANCE_5000 } else { STORM_CLIENTS_PER_INSTANCE };
        let clients = instances * per_instance;
        let mut s = Scenario::login_storm(instances, clients);
        s.name = format!("login-storm-{instances}");
        s.description = format!(
            "{clients} clients log in within 1 s to {instances} equal instances of {}, 5 s stale snapshots",
            2 * per_instance
        );
        s.fit_to_size();
        s
    }
}
