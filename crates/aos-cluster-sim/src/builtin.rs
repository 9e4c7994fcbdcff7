//! The built-in scenarios: the situations the protocol's quality goals are
//! stated for, each a plain [`Scenario`] value (print one as TOML or JSON to
//! start a scenario of your own).

use std::time::Duration;

use aos_cluster::config::{duration, DEFAULT_ATTEMPT_DELAY};

use crate::arrivals::{ArrivalGroup, Flood, Process};
use crate::dist::{Dist, SessionLength};
use crate::scenario::{default_return_window, Fault, FaultKind, InstanceGroup, Scenario, Seed};

/// Every built-in scenario family name, in report order.
pub const BUILTIN: [&str; 8] =
    ["login-storm", "heterogeneous", "rejections", "dead-seeds", "crash", "join", "drain", "handshake-flood"];

/// The flood rates of the `handshake-flood` family, as multiples of the real
/// clients' arrival rate.
pub const FLOOD_FACTORS: [u32; 3] = [1, 3, 10];

/// The cluster sizes of the `scale` family: `login-storm-N`,
/// `crash-N` and `join-N` for each. Not in [`BUILTIN`] (so `simulate all` and
/// the every-built-in test stay at 8 instances); `simulate scale` runs them.
pub const SCALE_SIZES: [u32; 3] = [100, 1000, 5000];

/// The largest `N` of the sized families (`burst-N`, `login-storm-N`, ...).
pub const MAX_SIZE: u32 = 10_000;

/// Clients per instance in `burst-N`: 20, a fifth of each instance's 100.
pub const BURST_CLIENTS_PER_INSTANCE: u32 = 20;

/// Waves in `waves-N`.
pub const WAVES: u32 = 20;

/// From one wave's start to the next's in `waves-N`.
const WAVE_PERIOD: Duration = Duration::from_secs(2);

/// How long the flood of `flood-aftermath` lasts.
const FLOOD_LENGTH: Duration = Duration::from_secs(12);

/// When `flood-aftermath`'s clients start after the flood: the default
/// `reservation_ttl` (5 s) plus one default snapshot (1 s).
const AFTER_FLOOD: Duration = Duration::from_secs(6);

/// Sizes (sessions per instance, clients per instance) are divided by this
/// above 1 000 instances.
fn scale_unit(n: u32) -> u32 {
    if n > 1000 {
        5
    } else {
        1
    }
}

/// The ranked list's length in the `scale` family (`InstanceConfig::max_list_len`;
/// the default is 1 024). A client walks the list only until an instance
/// admits it: in every scale run so far no client went past its second entry
/// (attempts per session 2.00, or 3.00 after a dead first seed). A full list
/// at 1 000 instances is built, sent, de-duplicated and kept (its capacity,
/// by the `Connector`) per handshake: 4x the run time and ~48 KB per client
/// (5.9 GB for `login-storm-1000`), which 5 000 instances could not afford.
/// Clients rarely go past the first entry (attempts per session 2.00 in the
/// storms), and on `login-storm-1000`, bounded, seed 0, 16 entries gave the
/// same balance figures as 1 000.
pub const SCALE_LIST_LEN: usize = 64;

/// Clients per instance in a scaled login storm: `login-storm`'s 1 000
/// clients over 8 instances (up to 1 000 instances; see
/// [`Scenario::login_storm_scaled`] for 5 000).
pub const STORM_CLIENTS_PER_INSTANCE: u32 = 125;

/// Clients per instance in the 5 000-instance storm: 125 000 clients, as at
/// 1 000 instances, not 625 000 (see [`Scenario::login_storm_scaled`]).
pub const STORM_CLIENTS_PER_INSTANCE_5000: u32 = 25;

impl Scenario {
    /// The built-in family `name` (several variants for `dead-seeds` and
    /// `handshake-flood`), or `None`.
    pub fn builtin(name: &str) -> Option<Vec<Scenario>> {
        Some(match name {
            "login-storm" => vec![Scenario::login_storm(8, 1000)],
            "heterogeneous" => vec![Scenario::heterogeneous()],
            "rejections" => vec![Scenario::rejections()],
            "dead-seeds" => {
                let mut all = Vec::new();
                for delay in [None, Some(DEFAULT_ATTEMPT_DELAY)] {
                    for k in 0..=3 {
                        all.push(Scenario::dead_seeds(k, delay));
                    }
                }
                all
            }
            "crash" => vec![Scenario::crash()],
            "join" => vec![Scenario::join()],
            "drain" => vec![Scenario::drain()],
            "handshake-flood" => FLOOD_FACTORS.iter().map(|&f| Scenario::handshake_flood(f)).collect(),
            "flood-aftermath" => vec![Scenario::flood_aftermath()],
            "scale" => SCALE_SIZES
                .iter()
                .flat_map(|&n| [Scenario::login_storm_scaled(n), Scenario::crash_at(n), Scenario::join_at(n)])
                .collect(),
            other => return Scenario::scaled(other).map(|s| vec![s]),
        })
    }

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

    /// One scenario of a sized family by name: `login-storm-N`, `crash-N`,
    /// `join-N` (the `scale` family runs them at [`SCALE_SIZES`]), `burst-N`
    /// and `waves-N`, for any `N` from 1 to [`MAX_SIZE`].
    fn scaled(name: &str) -> Option<Scenario> {
        let (family, size) = name.rsplit_once('-')?;
        let n: u32 = size.parse().ok()?;
        if !(1..=MAX_SIZE).contains(&n) {
            return None;
        }
        match family {
            "login-storm" => Some(Scenario::login_storm_scaled(n)),
            "crash" => Some(Scenario::crash_at(n)),
            "join" => Some(Scenario::join_at(n)),
            "burst" => Some(Scenario::burst_at(n)),
            "waves" => Some(Scenario::waves_at(n)),
            _ => None,
        }
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

    /// A 12 s handshake flood (500/s, never a session) on the first seed of
    /// three instances of 50, 100 and 150, then, once the flood's
    /// reservations expired and one snapshot later, 30 real clients at 10/s:
    /// they must split 5/10/15, as if no flood had been.
    pub fn flood_aftermath() -> Self {
        let mut s = Scenario::base(
            "flood-aftermath".into(),
            "12 s of 500 hostile handshakes/s on the first seed of 50/100/150, then 30 clients at 10/s",
            vec![
                InstanceGroup::serving(1, 50),
                InstanceGroup::serving(1, 100),
                InstanceGroup::serving(1, 150),
            ],
            vec![ArrivalGroup {
                start: FLOOD_LENGTH + AFTER_FLOOD,
                process: Process::Even { count: 30, within: Duration::from_secs(3) },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.floods.push(Flood {
            start: Duration::ZERO,
            duration: FLOOD_LENGTH,
            rate_per_sec: 500.0,
            targets: Vec::new(),
        });
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

    /// Fits the instance template to a cluster of this size: every member
    /// stays in the snapshots (`limits.max_members` raised where the default
    /// 4 096 would cut it), and, from 100 instances, replies list the
    /// [`SCALE_LIST_LEN`] best members rather than up to 1 024.
    pub fn fit_to_size(&mut self) {
        let n = self.instance_count() as usize;
        self.keep_every_member();
        if n >= 100 {
            self.instance.max_list_len = self.instance.max_list_len.min(SCALE_LIST_LEN);
        }
    }

    /// Raises `limits.max_members` where the default 4 096 would leave
    /// members out of the snapshots; nothing else changes.
    pub fn keep_every_member(&mut self) {
        let n = self.instance_count() as usize;
        self.instance.limits.max_members = self.instance.limits.max_members.max(n);
    }

    /// Eight instances hold 200 sessions each; one crashes and its clients
    /// come back within 500 ms.
    pub fn crash() -> Self {
        Scenario::crash_at(8)
    }

    /// `crash` at `n` instances: `n` x 250 holding 200 sessions each (the
    /// clients arrive evenly over 16 s, unmeasured); at 20 s one instance in
    /// eight crashes (indices 0, 8, 16, ...: at 8 instances, instance 0 alone,
    /// the built-in `crash`) and its clients return within 500 ms, measured.
    /// Above 1 000 instances every size is a fifth (`n` x 50 holding 40), for
    /// the reason of [`Scenario::login_storm_scaled`].
    pub fn crash_at(n: u32) -> Self {
        let unit = scale_unit(n);
        let crashed: Vec<u32> = (0..n).step_by(8).collect();
        let mut s = Scenario::base(
            if n == 8 { "crash".into() } else { format!("crash-{n}") },
            &format!(
                "{n} x {}, {} sessions each; {} instance(s) (every eighth) crash at 20 s, their clients \
                 return within 500 ms",
                250 / unit,
                200 / unit,
                crashed.len()
            ),
            vec![InstanceGroup::serving(n, 250 / unit)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Even { count: 200 / unit * n, within: Duration::from_secs(16) },
                session: SessionLength::Forever,
                measured: false,
            }],
        );
        for instance in crashed {
            s.faults.push(Fault {
                at: Duration::from_secs(20),
                instance,
                kind: FaultKind::Crash {
                    host_down: false,
                    clients_return: true,
                    return_within: default_return_window(),
                    measure_returns: true,
                },
            });
        }
        s.fit_to_size();
        s
    }

    /// An empty instance joins a cluster at 70 % while clients keep arriving.
    pub fn join() -> Self {
        Scenario::join_at(8)
    }

    /// `join` at `n` instances: `n` x 250 at 70 % (175 sessions each, arrived
    /// evenly over 14 s, unmeasured); `n / 8` empty instances (at least one)
    /// join at 15 s; from 16 s, 25 measured clients per base instance arrive
    /// at 12.5 per base instance per second (at 8: 200 clients at 100/s).
    /// Above 1 000 instances every size is a fifth, as in [`Scenario::crash_at`].
    pub fn join_at(n: u32) -> Self {
        let unit = scale_unit(n);
        let joiners = (n / 8).max(1);
        let mut instances = vec![InstanceGroup::serving(n, 250 / unit)];
        instances.push(InstanceGroup {
            start_at: Duration::from_secs(15),
            ..InstanceGroup::serving(joiners, 250 / unit)
        });
        let measured = 25 / unit * n;
        let rate = f64::from(measured) / 2.0;
        let mut s = Scenario::base(
            if n == 8 { "join".into() } else { format!("join-{n}") },
            &if n == 8 {
                "8 x 250 at 70 %; an empty ninth joins at 15 s; 200 clients arrive at 100/s from 16 s".into()
            } else {
                format!(
                    "{n} x {} at 70 %; {joiners} empty instances join at 15 s; {measured} clients arrive \
                     at {rate}/s from 16 s",
                    250 / unit
                )
            },
            instances,
            vec![
                ArrivalGroup {
                    start: Duration::from_millis(200),
                    process: Process::Even { count: 175 / unit * n, within: Duration::from_secs(14) },
                    session: SessionLength::Forever,
                    measured: false,
                },
                ArrivalGroup {
                    start: Duration::from_secs(16),
                    process: Process::Poisson { count: measured, rate_per_sec: rate },
                    session: SessionLength::Forever,
                    measured: true,
                },
            ],
        );
        s.fit_to_size();
        s
    }

    /// One instance of a busy cluster drains while sessions come and go.
    pub fn drain() -> Self {
        let mut s = Scenario::base(
            "drain".into(),
            "8 x 250 with 20-40 s sessions; instance 0 drains at 15 s; 400 more clients from 16 s",
            vec![InstanceGroup::serving(8, 250)],
            vec![
                ArrivalGroup {
                    start: Duration::from_millis(200),
                    process: Process::Even { count: 1200, within: Duration::from_secs(12) },
                    session: SessionLength::Drawn(Dist::Uniform {
                        min: Duration::from_secs(20),
                        max: Duration::from_secs(40),
                    }),
                    measured: false,
                },
                ArrivalGroup {
                    start: Duration::from_secs(16),
                    process: Process::Poisson { count: 400, rate_per_sec: 100.0 },
                    session: SessionLength::Forever,
                    measured: true,
                },
            ],
        );
        s.faults.push(Fault { at: Duration::from_secs(15), instance: 0, kind: FaultKind::Drain });
        s
    }

    /// `login-storm` (1 000 clients within 1 s to 8 instances, 5 s stale
    /// snapshots) while hostile clients handshake at `factor` times the real
    /// clients' arrival rate (1 000/s), each on a new connection that it
    /// closes after the reply, never asking for a session. They all go to the
    /// first seed, the instance every real client handshakes with, so every
    /// hostile handshake runs a ranking there (and, with herd control,
    /// reserves the head of its list) among the real ones. The flood runs
    /// from the start for 5 s, past the storm and its stragglers.
    pub fn handshake_flood(factor: u32) -> Self {
        let mut s = Scenario::login_storm(8, 1000);
        let real_rate = f64::from(s.client_count()); // they arrive within 1 s
        s.name = format!("handshake-flood-{factor}x");
        s.description = format!(
            "login-storm while hostile clients handshake with the first seed at {factor}x the real \
             arrival rate and never ask for a session"
        );
        s.floods.push(Flood {
            start: Duration::ZERO,
            duration: Duration::from_secs(5),
            rate_per_sec: real_rate * f64::from(factor),
            targets: Vec::new(),
        });
        s
    }
}
