//! The scenarios the async and the blocking client are both tested on: a
//! few fake instances wired into a configuration, with what each test
//! checks afterwards.

use std::time::Duration;

use aos_cluster::client::{AttemptOutcome, AttemptRecord, Phase};
use aos_cluster::wire::{RejectReason, SessionId};
use aos_cluster::{ClientConfig, Endpoint};
use aos_cluster_tokio::ConnectError;

use super::*;

pub const SEED_ID: u32 = 1;
pub const A_ID: u32 = 2;
pub const B_ID: u32 = 3;
pub const SESSION: u64 = 77;
pub const GREETING: &[u8] = b"hello from A, sent with the SessionReply";

/// The seed's story: seed 0 is dead (a closed port); seed 1 answers with
/// [B, A]; B rejects `Full`; A accepts, greets and echoes.
pub struct Story {
    pub dead: Endpoint,
    pub seed: Fake,
    pub a: Fake,
    pub b: Fake,
    pub config: ClientConfig,
}

impl Story {
    pub async fn start() -> Story {
        let a = Fake::start(Behaviour::Accept { id: A_ID, session_id: SESSION, greeting: GREETING.to_vec() })
            .await;
        let b = Fake::start(Behaviour::Reject { id: B_ID, reason: RejectReason::Full }).await;
        let seed =
            Fake::start(Behaviour::Rank(vec![(B_ID, b.endpoint.clone()), (A_ID, a.endpoint.clone())])).await;
        let dead = closed_port();
        let mut config = ClientConfig::with_seeds(vec![dead.clone(), seed.endpoint.clone()]);
        config.handshake_timeout = Duration::from_secs(2);
        config.connect_timeout = Duration::from_secs(2);
        config.retry.max_rounds = 1;
        Story { dead, seed, a, b, config }
    }

    /// The attempt log names every attempt of the story, in order.
    pub fn check_log(&self, attempts: &[AttemptRecord]) {
        let summary: Vec<String> = attempts.iter().map(ToString::to_string).collect();
        assert_eq!(attempts.len(), 4, "{summary:#?}");
        let expected = [
            (Phase::Handshake, 0, &self.dead),
            (Phase::Handshake, 1, &self.seed.endpoint),
            (Phase::Session, 0, &self.b.endpoint),
            (Phase::Session, 1, &self.a.endpoint),
        ];
        for (record, (phase, index, endpoint)) in attempts.iter().zip(expected) {
            assert_eq!(
                (record.phase, record.index, &record.endpoint),
                (phase, index, endpoint),
                "{summary:#?}"
            );
            assert!(record.ended.is_some(), "{summary:#?}");
        }
        let refused = format!("connect to {}: connection refused", self.dead.socket_addr_string());
        assert_eq!(attempts[0].outcome, AttemptOutcome::TransportFailed(refused), "{summary:#?}");
        assert_eq!(attempts[1].outcome, AttemptOutcome::Ranked { entries: 2, stale: false });
        assert_eq!(attempts[2].outcome, AttemptOutcome::Rejected(RejectReason::Full));
        assert_eq!(attempts[3].outcome, AttemptOutcome::Accepted { session_id: SessionId(SESSION) });
    }

    /// Every transport but the session's was closed by the client.
    pub fn non_session_transports_closed(&self) -> bool {
        let closed = |fake: &Fake| fake.conns().iter().all(|c| c.eof);
        closed(&self.seed) && closed(&self.b) && self.seed.conns().len() == 1 && self.b.conns().len() == 1
    }
}

/// A black-holed seed (its accept queue full), then a seed that accepts but
/// never answers, then one that ranks A; staggered by 50 ms.
pub struct Stagger {
    pub hole: BlackHole,
    pub silent: Fake,
    pub seed: Fake,
    pub a: Fake,
    pub config: ClientConfig,
}

impl Stagger {
    pub async fn start() -> Stagger {
        let hole = BlackHole::new();
        let silent = Fake::start(Behaviour::Silent).await;
        let a = Fake::start(Behaviour::Accept { id: A_ID, session_id: SESSION, greeting: GREETING.to_vec() })
            .await;
        let seed = Fake::start(Behaviour::Rank(vec![(A_ID, a.endpoint.clone())])).await;
        let mut config = ClientConfig::with_seeds(vec![
            hole.endpoint.clone(),
            silent.endpoint.clone(),
            seed.endpoint.clone(),
        ]);
        config.attempt_delay = Some(Duration::from_millis(50));
        config.handshake_timeout = Duration::from_secs(2);
        config.connect_timeout = Duration::from_secs(2);
        config.retry.max_rounds = 1;
        Stagger { hole, silent, seed, a, config }
    }

    pub fn check_log(&self, attempts: &[AttemptRecord]) {
        let summary: Vec<String> = attempts.iter().map(ToString::to_string).collect();
        let got: Vec<(Phase, &Endpoint, &AttemptOutcome)> =
            attempts.iter().map(|r| (r.phase, &r.endpoint, &r.outcome)).collect();
        let expected = vec![
            (Phase::Handshake, &self.hole.endpoint, &AttemptOutcome::Cancelled),
            (Phase::Handshake, &self.silent.endpoint, &AttemptOutcome::Cancelled),
            (Phase::Handshake, &self.seed.endpoint, &AttemptOutcome::Ranked { entries: 1, stale: false }),
            (Phase::Session, &self.a.endpoint, &AttemptOutcome::Accepted { session_id: SessionId(SESSION) }),
        ];
        assert_eq!(got, expected, "{summary:#?}");
        // Staggered: the three handshakes started about 50 ms apart.
        assert!(attempts[1].started >= Duration::from_millis(50), "{summary:#?}");
        assert!(attempts[2].started >= Duration::from_millis(100), "{summary:#?}");
    }

    /// The silent seed's and the ranking seed's transports were closed.
    pub fn non_session_transports_closed(&self) -> bool {
        let closed = |fake: &Fake| fake.conns().len() == 1 && fake.conns().iter().all(|c| c.eof);
        closed(&self.silent) && closed(&self.seed)
    }
}

/// Every seed dead: a closed port, one that hangs up, one that answers with
/// an oversized frame header, one that stays silent past a 300 ms handshake
/// timeout; one round.
pub struct AllDead {
    pub refused: Endpoint,
    pub hangup: Fake,
    pub garbage: Fake,
    pub silent: Fake,
    pub config: ClientConfig,
}

impl AllDead {
    pub async fn start() -> AllDead {
        let refused = closed_port();
        let hangup = Fake::start(Behaviour::Hangup).await;
        let garbage = Fake::start(Behaviour::Garbage).await;
        let silent = Fake::start(Behaviour::Silent).await;
        let seeds = [&refused, &hangup.endpoint, &garbage.endpoint, &silent.endpoint];
        let mut config = ClientConfig::with_seeds(seeds.into_iter().cloned().collect());
        config.handshake_timeout = Duration::from_millis(300);
        config.retry.max_rounds = 1;
        AllDead { refused, hangup, garbage, silent, config }
    }

    pub fn check_error(&self, error: &ConnectError) {
        let ConnectError::Failed(failed) = error else {
            panic!("expected a connection failure, got {error}")
        };
        assert_eq!(failed.rounds, 1);
        let attempts = error.attempts();
        let text = error.to_string();
        assert_eq!(attempts.len(), 4, "{text}");
        let hangup = self.hangup.endpoint.socket_addr_string();
        let garbage = self.garbage.endpoint.socket_addr_string();
        let oversized = "frame announces 4294967295 payload bytes, more than the 65536-byte limit";
        let outcomes: Vec<&AttemptOutcome> = attempts.iter().map(|r| &r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                &AttemptOutcome::TransportFailed(format!(
                    "connect to {}: connection refused",
                    self.refused.socket_addr_string()
                )),
                &AttemptOutcome::TransportFailed(format!("{hangup} closed the connection without replying")),
                &AttemptOutcome::TransportFailed(format!("{garbage}: malformed reply: {oversized}")),
                &AttemptOutcome::TimedOut,
            ],
            "{text}"
        );
        // The Display names every attempt, one line each.
        for endpoint in [&self.refused, &self.hangup.endpoint, &self.garbage.endpoint, &self.silent.endpoint]
        {
            assert!(text.contains(&endpoint.to_string()), "{endpoint} missing from:\n{text}");
        }
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    /// The silent and the garbage seeds' transports were closed by the client.
    pub fn transports_closed(&self) -> bool {
        let closed = |fake: &Fake| fake.conns().len() == 1 && fake.conns().iter().all(|c| c.eof);
        closed(&self.silent) && closed(&self.garbage)
    }
}

/// Three silent seeds walked one at a time, 1 s each: the first seed's
/// transport must be closed when its attempt times out, while the walk
/// goes on, not when `connect` returns.
pub struct SlowWalk {
    pub silent: Vec<Fake>,
    pub config: ClientConfig,
}

impl SlowWalk {
    pub const TIMEOUT: Duration = Duration::from_millis(1000);

    pub async fn start() -> SlowWalk {
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(Fake::start(Behaviour::Silent).await);
        }
        let mut config = ClientConfig::with_seeds(silent.iter().map(|f| f.endpoint.clone()).collect());
        config.handshake_timeout = Self::TIMEOUT;
        config.retry.max_rounds = 1;
        SlowWalk { silent, config }
    }

    /// The state of the seeds' transports: (connections, closed ones) each.
    pub fn seen(&self) -> Vec<(usize, usize)> {
        self.silent.iter().map(|f| (f.conns().len(), f.conns().iter().filter(|c| c.eof).count())).collect()
    }
}

/// Direct mode (`load_balance = false`): the seed that answers is the target.
pub struct Direct {
    pub dead: Endpoint,
    pub seed: Fake,
    pub config: ClientConfig,
}

impl Direct {
    pub async fn start() -> Direct {
        let seed =
            Fake::start(Behaviour::Accept { id: A_ID, session_id: SESSION, greeting: GREETING.to_vec() })
                .await;
        let dead = closed_port();
        let mut config = ClientConfig::with_seeds(vec![dead.clone(), seed.endpoint.clone()]);
        config.load_balance = false;
        config.retry.max_rounds = 1;
        Direct { dead, seed, config }
    }

    pub fn check_log(&self, attempts: &[AttemptRecord]) {
        let got: Vec<(Phase, &Endpoint, &AttemptOutcome)> =
            attempts.iter().map(|r| (r.phase, &r.endpoint, &r.outcome)).collect();
        let refused = AttemptOutcome::TransportFailed(format!(
            "connect to {}: connection refused",
            self.dead.socket_addr_string()
        ));
        let expected = vec![
            (Phase::Handshake, &self.dead, &refused),
            (Phase::Handshake, &self.seed.endpoint, &AttemptOutcome::Answered),
            (
                Phase::Session,
                &self.seed.endpoint,
                &AttemptOutcome::Accepted { session_id: SessionId(SESSION) },
            ),
        ];
        assert_eq!(got, expected);
    }

    /// The handshake's transport was closed; the session's is open.
    pub fn handshake_closed_session_open(&self) -> bool {
        let conns = self.seed.conns();
        conns.len() == 2
            && conns[0].eof
            && conns[0].request == Some("handshake")
            && conns[1].accepted
            && !conns[1].eof
    }
}
