//! Scripted fake instances for the client tests: tokio listeners on
//! 127.0.0.1 speaking `aos_cluster::wire`, each with one behaviour, and a
//! log of every connection they accepted (what was asked, whether the client
//! closed it). Plus the dead ends: a closed port and a black hole.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aos_cluster::client::{AttemptOutcome, AttemptRecord, Phase};
use aos_cluster::wire::{
    encode, Decoder, HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RejectReason,
    SessionId, SessionOutcome, SessionReply,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};
use aos_cluster_tokio::ConnectError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a fake instance does with the first frame of each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers handshakes with this ranked list; rejects session requests (`NotServing`).
    Rank(Vec<(u32, Endpoint)>),
    /// Answers handshakes with itself; accepts session requests, writing
    /// `greeting` in the same write as the reply, then echoes every byte.
    Accept { id: u32, session_id: u64, greeting: Vec<u8> },
    /// Answers handshakes with itself; rejects session requests.
    Reject { id: u32, reason: RejectReason },
    /// Reads the request and never answers.
    Silent,
    /// Reads the request, then closes the connection without answering.
    Hangup,
    /// Reads the request, then answers with a header announcing 4 GiB.
    Garbage,
}

/// What the fake saw on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnLog {
    /// "handshake" or "session" (`None`: nothing complete arrived).
    pub request: Option<&'static str>,
    /// The fake accepted a session on it.
    pub accepted: bool,
    /// The client closed it (end-of-stream or reset seen).
    pub eof: bool,
    /// Application bytes echoed back.
    pub echoed: usize,
}

/// A running fake instance; stopped when dropped.
pub struct Fake {
    pub endpoint: Endpoint,
    conns: Arc<Mutex<Vec<ConnLog>>>,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(conns: &Mutex<Vec<ConnLog>>) -> MutexGuard<'_, Vec<ConnLog>> {
    conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Fake {
    /// Binds 127.0.0.1 on a free port and serves `behaviour` (needs a tokio runtime).
    pub async fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let endpoint = Endpoint::new("127.0.0.1", port).expect("valid endpoint");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (log, me) = (Arc::clone(&conns), endpoint.clone());
        let task = tokio::spawn(async move {
            // Bounded by the test: the task is aborted when the Fake drops.
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut log = lock(&log);
                    log.push(ConnLog::default());
                    log.len() - 1
                };
                tokio::spawn(serve(stream, behaviour.clone(), me.clone(), Arc::clone(&log), index));
            }
        });
        Fake { endpoint, conns, task }
    }

    /// Every connection so far, in accept order.
    pub fn conns(&self) -> Vec<ConnLog> {
        lock(&self.conns).clone()
    }
}

fn ranked(entries: &[(u32, Endpoint)]) -> RankedList {
    RankedList {
        stale: false,
        entries: entries
            .iter()
            .map(|(id, endpoint)| RankedEntry {
                id: InstanceId(*id),
                endpoint: endpoint.clone(),
                workload: Workload { connected: 0, max_sessions: 10 },
            })
            .collect(),
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    me: Endpoint,
    log: Arc<Mutex<Vec<ConnLog>>>,
    index: usize,
) {
    let update = |f: &dyn Fn(&mut ConnLog)| f(&mut lock(&log)[index]);
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 4096];
    let request = loop {
        match decoder.next() {
            Ok(Some(message)) => break message,
            Ok(None) => {}
            Err(_) => return,
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return update(&|c| c.eof = true),
            Ok(n) => decoder.feed(&buf[..n]),
        }
    };
    let mut out = Vec::new();
    let mut accepted = false;
    match (&request, &behaviour) {
        (_, Behaviour::Hangup) => return update(&|c| c.eof = true),
        (_, Behaviour::Silent) => {}
        (_, Behaviour::Garbage) => out.extend_from_slice(&[1, 2, 0xff, 0xff, 0xff, 0xff]),
        (Message::HandshakeRequest(req), _) => {
            update(&|c| c.request = Some("handshake"));
            let list = match &behaviour {
                Behaviour::Rank(list) => ranked(list),
                Behaviour::Accept { id, .. } | Behaviour::Reject { id, .. } => ranked(&[(*id, me.clone())]),
                Behaviour::Silent | Behaviour::Hangup | Behaviour::Garbage => unreachable!(),
            };
            let reply =
                HandshakeReply { request_id: req.request_id, outcome: HandshakeOutcome::Ranked(list) };
            encode(&Message::HandshakeReply(reply), &mut out).expect("encodable");
        }
        (Message::SessionRequest(req), _) => {
            update(&|c| c.request = Some("session"));
            let outcome = match &behaviour {
                Behaviour::Accept { session_id, .. } => {
                    accepted = true;
                    SessionOutcome::Accepted { session_id: SessionId(*session_id) }
                }
                Behaviour::Reject { reason, .. } => SessionOutcome::Rejected(*reason),
                _ => SessionOutcome::Rejected(RejectReason::NotServing),
            };
            let reply = SessionReply { request_id: req.request_id, outcome };
            encode(&Message::SessionReply(reply), &mut out).expect("encodable");
            if let (true, Behaviour::Accept { greeting, .. }) = (accepted, &behaviour) {
                // In the same write: the client must not swallow it with the reply.
                out.extend_from_slice(greeting);
                update(&|c| c.accepted = true);
            }
        }
        _ => return,
    }
    if !out.is_empty() && stream.write_all(&out).await.is_err() {
        return update(&|c| c.eof = true);
    }
    // Wait for the client to close; a session echoes meanwhile.
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return update(&|c| c.eof = true),
            Ok(n) if accepted => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return update(&|c| c.eof = true);
                }
                update(&|c| c.echoed += n);
            }
            Ok(_) => {}
        }
    }
}

/// A port nothing listens on: connecting is refused at once.
pub fn closed_port() -> Endpoint {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    Endpoint::new("127.0.0.1", port).expect("valid endpoint")
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// a connect to it hangs (a black-holed seed, on loopback).
pub struct BlackHole {
    pub endpoint: Endpoint,
    _listener: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

impl BlackHole {
    pub fn new() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind");
        socket.listen(0).expect("listen");
        let addr = socket.local_addr().expect("bound").as_socket().expect("inet");
        let mut fillers = Vec::new();
        // Fill the queue until a connect hangs; bounded in count and time.
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(stream) => fillers.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    let endpoint = Endpoint::new("127.0.0.1", addr.port()).expect("valid endpoint");
                    return BlackHole { endpoint, _listener: socket, _fillers: fillers };
                }
                Err(e) => panic!("filling the accept queue: {e}"),
            }
        }
        panic!("the accept queue never filled");
    }
}

/// Polls `condition` every 10 ms until it holds or `within` passed.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    for _ in 0..10_000 {
        if condition() {
            return true;
        }
        if start.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// [`eventually`] without blocking the runtime.
pub async fn eventually_async(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    for _ in 0..10_000 {
        if condition() {
            return true;
        }
        if start.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

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
