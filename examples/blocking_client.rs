//! A blocking driver for the client's `Connector`: std `TcpStream`, the wire
//! codec, and read timeouts taken from `poll_timeout`. Everything protocol
//! lives in the machine; this file only moves bytes and reads the clock.
//!
//! ```text
//! cargo run --example blocking_client -- [--no-balance] [--stagger] SEED...
//! cargo run --example blocking_client -- aos1 AOS02@aos2:2713 [::1]:2712
//! ```
//!
//! Prints the attempt log and the chosen instance; exits 1 when no session
//! could be opened, 2 on bad arguments.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, Connector, Event};
use aos_cluster::config::DEFAULT_ATTEMPT_DELAY;
use aos_cluster::wire::{encode, Decoder, Message, SessionOutcome};
use aos_cluster::{ClientConfig, Endpoint};

/// The driver's one clock.
fn now() -> Instant {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    now
}

/// One attempt's connection and its incremental decoder.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
}

/// Connects and sends `message`; the error text becomes a `TransportFailed`.
fn open(endpoint: &Endpoint, message: &Message, timeout: Duration) -> Result<Conn, String> {
    let addr = endpoint
        .socket_addr_string()
        .to_socket_addrs()
        .map_err(|e| format!("resolve: {e}"))?
        .next()
        .ok_or("resolve: no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let mut bytes = Vec::new();
    encode(message, &mut bytes).map_err(|e| format!("encode: {e}"))?;
    stream.write_all(&bytes).map_err(|e| format!("send: {e}"))?;
    Ok(Conn { stream, decoder: Decoder::new() })
}

/// Waits up to `slice` for one reply on `conn`: `Ok(None)` when nothing came yet.
fn read_reply(conn: &mut Conn, slice: Duration) -> Result<Option<Message>, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(message) = conn.decoder.next().map_err(|e| format!("decode: {e}"))? {
            return Ok(Some(message));
        }
        conn.stream.set_read_timeout(Some(slice.max(Duration::from_millis(1)))).map_err(|e| e.to_string())?;
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err("closed by peer".into()),
            Ok(n) => conn.decoder.feed(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn to_event(attempt: AttemptId, message: Message) -> Event {
    match message {
        Message::HandshakeReply(reply) => Event::HandshakeReply { attempt, reply },
        Message::SessionReply(reply) => Event::SessionReply { attempt, reply },
        other => Event::TransportFailed { attempt, reason: format!("unexpected message {other:?}") },
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| args.iter().position(|a| a == name).map(|i| args.remove(i)).is_some();
    let (no_balance, stagger) = (flag("--no-balance"), flag("--stagger"));
    let seeds: Result<Vec<Endpoint>, _> = args.iter().map(|a| a.parse()).collect();
    let mut config = match seeds {
        Ok(seeds) => ClientConfig::with_seeds(seeds),
        Err(e) => return usage(&e.to_string()),
    };
    config.load_balance = !no_balance;
    config.attempt_delay = stagger.then_some(DEFAULT_ATTEMPT_DELAY);
    let start = now();
    let rng_seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), start);
    let mut connector = match Connector::new(config, start, rng_seed) {
        Ok(c) => c,
        Err(e) => return usage(&e.to_string()),
    };

    let mut conns: BTreeMap<AttemptId, Conn> = BTreeMap::new();
    let mut events: Vec<Event> = Vec::new();
    loop {
        while let Some(action) = connector.poll_action() {
            let timeout = connector.config().handshake_timeout;
            let (attempt, endpoint, message) = match action {
                Action::SendHandshake { attempt, endpoint, request, .. } => {
                    (attempt, endpoint, Message::HandshakeRequest(request))
                }
                Action::SendSessionRequest { attempt, endpoint, request, .. } => {
                    (attempt, endpoint, Message::SessionRequest(request))
                }
                Action::Close { attempt } => {
                    conns.remove(&attempt);
                    continue;
                }
                Action::RoundFailed { round, retry_at } => {
                    eprintln!(
                        "round {round} failed; retrying in {:?}",
                        retry_at.saturating_duration_since(now())
                    );
                    continue;
                }
                Action::Connected { endpoint, instance, session_id, .. } => {
                    print_log(&connector);
                    let id = instance.map_or("unknown id".to_string(), |i| i.to_string());
                    println!("connected to {endpoint} ({id}), session {session_id}");
                    return ExitCode::SUCCESS;
                }
                Action::Failed(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
                _ => continue,
            };
            match open(&endpoint, &message, timeout) {
                Ok(conn) => {
                    conns.insert(attempt, conn);
                }
                Err(reason) => events.push(Event::TransportFailed { attempt, reason }),
            }
        }
        // Wait for a reply, sharing the time left until the machine's next
        // deadline between the open connections.
        let deadline = connector.poll_timeout();
        let left = deadline.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now()));
        if events.is_empty() && !conns.is_empty() {
            let slice = left / conns.len() as u32;
            for (&attempt, conn) in conns.iter_mut() {
                match read_reply(conn, slice) {
                    Ok(Some(message)) => events.push(to_event(attempt, message)),
                    Ok(None) => {}
                    Err(reason) => events.push(Event::TransportFailed { attempt, reason }),
                }
            }
        } else if events.is_empty() {
            std::thread::sleep(left);
        }
        for event in events.drain(..) {
            // One request, one reply: the transport is done unless it is the session.
            match &event {
                Event::SessionReply { reply, .. }
                    if matches!(reply.outcome, SessionOutcome::Accepted { .. }) => {}
                Event::HandshakeReply { attempt, .. }
                | Event::SessionReply { attempt, .. }
                | Event::TransportFailed { attempt, .. } => drop(conns.remove(attempt)),
                _ => {}
            }
            // The only usage error is a session event without a session; this driver sends none.
            let _ = connector.handle_event(event, now());
        }
        if connector.poll_timeout().is_some_and(|d| d <= now()) {
            connector.handle_timeout(now());
        }
    }
}

fn print_log(connector: &Connector) {
    for record in connector.attempts() {
        println!("  {record}");
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: blocking_client [--no-balance] [--stagger] SEED...");
    ExitCode::from(2)
}
