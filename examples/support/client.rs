//! A tokio client around the Sans-IO [`Connector`] machine.
//!
//! Each handshake or session request the machine asks for runs as its own
//! small task: open a TCP connection, send one frame, read one frame. Results
//! come back as events. `Close` aborts the task (dropping its socket); the
//! accepted session's socket is kept and handed to the caller, since a
//! session lives as long as its connection.

use std::collections::HashMap;
use std::time::Duration;

use aos_cluster::client::{self, AttemptId, ConnectError, Connector};
use aos_cluster::wire::Message;
use aos_cluster::{ClientConfig, ConfigError, Endpoint, InstanceId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{sleep_until, Instant as TokioInstant};
use tracing::debug;

use super::frames::{write_message, FrameReader, ReadError};
use super::now;

/// An open session: keep it to stay connected, drop it to end the session.
#[derive(Debug)]
pub struct Session {
    /// The instance that admitted the session, when the ranking named it.
    pub instance: Option<InstanceId>,
    /// Where it is.
    pub endpoint: Endpoint,
    /// The instance's name for the session.
    pub session_id: aos_cluster::wire::SessionId,
    /// From the start of [`connect`] to the acceptance.
    pub time_to_session: Duration,
    /// Every endpoint a session request was sent to, in order (this one last).
    pub session_attempts: Vec<Endpoint>,
    /// Every endpoint a handshake was sent to, in order.
    pub handshake_attempts: Vec<Endpoint>,
    stream: TcpStream,
}

impl Session {
    /// Waits until the instance closes the session (or the link breaks).
    pub async fn closed(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match tokio::io::AsyncReadExt::read(&mut self.stream, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Why [`connect`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every round failed; the error lists every attempt.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// What one attempt task reports: the reply (or why there is none), and the
/// socket, kept only for session requests.
struct Outcome {
    attempt: AttemptId,
    reply: Result<Message, String>,
    stream: Option<TcpStream>,
}

/// Finds and opens a session as `config` says (phases 1 and 3, with retries).
pub async fn connect(config: ClientConfig, rng_seed: u64) -> Result<Session, ClientError> {
    let started = now();
    let mut machine = Connector::new(config, started, rng_seed)?;
    let (results_tx, mut results) = mpsc::unbounded_channel::<Outcome>();
    let mut running: HashMap<AttemptId, AbortHandle> = HashMap::new();
    let mut sessions: HashMap<AttemptId, TcpStream> = HashMap::new();
    let (mut handshake_attempts, mut session_attempts) = (Vec::new(), Vec::new());
    loop {
        while let Some(action) = machine.poll_action() {
            match action {
                client::Action::SendHandshake { attempt, endpoint, request, .. } => {
                    handshake_attempts.push(endpoint.clone());
                    let task = exchange(attempt, endpoint, Message::HandshakeRequest(request), false);
                    running.insert(attempt, spawn_reporting(task, results_tx.clone()));
                }
                client::Action::SendSessionRequest { attempt, endpoint, request, .. } => {
                    session_attempts.push(endpoint.clone());
                    let task = exchange(attempt, endpoint, Message::SessionRequest(request), true);
                    running.insert(attempt, spawn_reporting(task, results_tx.clone()));
                }
                client::Action::Close { attempt } => {
                    if let Some(task) = running.remove(&attempt) {
                        task.abort();
                    }
                    sessions.remove(&attempt);
                }
                client::Action::Connected { attempt, instance, endpoint, session_id } => {
                    let stream = sessions.remove(&attempt).expect("the accepting reply came on this socket");
                    for task in running.values() {
                        task.abort();
                    }
                    return Ok(Session {
                        instance,
                        endpoint,
                        session_id,
                        time_to_session: now().saturating_duration_since(started),
                        session_attempts,
                        handshake_attempts,
                        stream,
                    });
                }
                client::Action::RoundFailed { .. } => debug!("round failed; backing off"),
                client::Action::Failed(error) => {
                    for task in running.values() {
                        task.abort();
                    }
                    return Err(error.into());
                }
                // This driver returns at `Connected`, so a session never closes inside it.
                other => debug!(action = ?other, "ignored"),
            }
        }
        let deadline = machine.poll_timeout();
        tokio::select! {
            outcome = results.recv() => {
                let outcome = outcome.expect("this loop holds a sender");
                running.remove(&outcome.attempt);
                let event = match outcome.reply {
                    Ok(Message::HandshakeReply(reply)) => client::Event::HandshakeReply { attempt: outcome.attempt, reply },
                    Ok(Message::SessionReply(reply)) => {
                        if let Some(stream) = outcome.stream {
                            sessions.insert(outcome.attempt, stream);
                        }
                        client::Event::SessionReply { attempt: outcome.attempt, reply }
                    }
                    Ok(other) => client::Event::TransportFailed {
                        attempt: outcome.attempt,
                        reason: format!("unexpected reply {other:?}"),
                    },
                    Err(reason) => client::Event::TransportFailed { attempt: outcome.attempt, reason },
                };
                // The machine ignores replies for attempts it has finished.
                let _ = machine.handle_event(event, now());
            }
            _ = sleep_until(TokioInstant::from_std(deadline.unwrap_or_else(now))), if deadline.is_some() => {
                machine.handle_timeout(now());
            }
        }
    }
}

fn spawn_reporting(
    task: impl std::future::Future<Output = Outcome> + Send + 'static,
    results: mpsc::UnboundedSender<Outcome>,
) -> AbortHandle {
    tokio::spawn(async move {
        let _ = results.send(task.await);
    })
    .abort_handle()
}

/// One request, one reply, on a fresh connection.
async fn exchange(attempt: AttemptId, endpoint: Endpoint, request: Message, keep: bool) -> Outcome {
    let fail = |reason: String| Outcome { attempt, reply: Err(reason), stream: None };
    let mut stream = match TcpStream::connect(endpoint.socket_addr_string()).await {
        Ok(stream) => stream,
        Err(e) => return fail(format!("connect {endpoint}: {e}")),
    };
    let _ = stream.set_nodelay(true);
    if let Err(e) = write_message(&mut stream, &request, &mut Vec::new()).await {
        return fail(format!("send to {endpoint}: {e}"));
    }
    let mut reader = FrameReader::new(&mut stream);
    let reply = match reader.next().await {
        Ok(message) => message,
        Err(ReadError::Closed) => return fail(format!("{endpoint} closed the connection")),
        Err(e) => return fail(format!("{endpoint}: {e}")),
    };
    drop(reader);
    Outcome { attempt, reply: Ok(reply), stream: keep.then_some(stream) }
}
