//! Scripted fake instances for the client tests: tokio listeners on
//! 127.0.0.1 speaking `aos_cluster::wire`, each with one behaviour, and a
//! log of every connection they accepted (what was asked, whether the client
//! closed it). Plus the dead ends: a closed port and a black hole. The
//! scenarios built from them are in `scenarios.rs`.

mod scenarios;

pub use scenarios::*;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aos_cluster::wire::{
    encode, Decoder, HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RejectReason,
    SessionId, SessionOutcome, SessionReply,
};
use aos_cluster::{Endpoint, InstanceId, Workload};
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
