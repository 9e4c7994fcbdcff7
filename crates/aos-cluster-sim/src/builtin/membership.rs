//! Membership changes under load: an instance crashes, joins or drains.

use super::*;

impl Scenario {
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
}
