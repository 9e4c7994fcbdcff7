//! The admission policy (SPEC "Drivers: admission policy") attacked from
//! outside: one address cannot pass `max_sessions_per_ip`, a flood of bad
//! or oversized credentials leaves real clients their sessions and never
//! counts, a hook that hangs is cut at its deadline, and a request without a
//! credential passes where no hook is set.

#[path = "../common/mod.rs"]
mod common;
#[path = "../log_capture/mod.rs"]
mod log_capture;

mod floods;
mod hooks;
#[cfg(feature = "admin")]
mod instance_file;
mod old_clients;
mod per_address;

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_cluster::wire::{Credential, Limits, Message, RejectReason, SessionOutcome, SessionRequest};
use aos_cluster::ClientConfig;
use aos_cluster_tokio::frames::FrameReader;
use aos_cluster_tokio::server::{AdmissionPolicy, AdmissionRequest, Server, ServerOptions, Verdict};
use aos_cluster_tokio::{AppStream, ClientOptions, ServerConfig, ServerHandle};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---- helpers -------------------------------------------------------------------------

/// Every log line of this test binary at WARN or above.
fn logs() -> &'static Mutex<Vec<u8>> {
    log_capture::capture(tracing::Level::WARN)
}

fn logged_lines(needle: &str) -> Vec<String> {
    log_capture::lines_containing(logs(), needle)
}

/// A server whose application keeps every session it is given, until the
/// test drops them.
struct Held {
    handle: ServerHandle,
    addr: SocketAddr,
    config: ClientConfig,
    sessions: Arc<Mutex<Vec<AppStream>>>,
    _app: JoinHandle<()>,
}

impl Held {
    async fn start(config: ServerConfig, options: ServerOptions) -> Held {
        let registry = MemRegistry::new();
        let dyn_registry: Arc<dyn aos_cluster_tokio::registry::Registry> = registry.clone();
        let mut server = Server::bind_with(config, dyn_registry, options).await.expect("server starts");
        let (handle, addr) = (server.handle(), server.local_addr());
        let client = ClientConfig {
            cluster: Some(CLUSTER.to_owned()),
            handshake_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
        };
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let kept = sessions.clone();
        let app = tokio::spawn(async move {
            while let Some(accepted) = server.accept().await {
                kept.lock().unwrap().push(accepted.stream);
            }
        });
        Held { handle, addr, config: client, sessions, _app: app }
    }

    fn held(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// The application ends one session (its connection closes).
    fn end_one(&self) {
        drop(self.sessions.lock().unwrap().pop());
    }
}

fn cap_config(max_sessions: u32, per_ip: Option<usize>) -> ServerConfig {
    ServerConfig { max_sessions_per_ip: per_ip, ..server_config(1, max_sessions) }
}

/// A raw client whose connection comes from `source` (any 127.x.y.z is
/// loopback on Linux: a second client address without a second machine).
async fn raw_from(source: IpAddr, addr: SocketAddr) -> RawClient {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind the source address");
    let stream = socket.connect(addr).await.expect("connect");
    RawClient { stream, reader: FrameReader::new(Limits::default(), PATIENCE) }
}

fn request(request_id: u64, credential: Option<&[u8]>) -> Message {
    let credential = credential.map(|c| Credential::new(c).expect("within 4 KiB"));
    Message::SessionRequest(SessionRequest { request_id, credential })
}

async fn outcome(client: &mut RawClient, message: &Message) -> SessionOutcome {
    client.send(message).await;
    match client.recv().await {
        Message::SessionReply(reply) => reply.outcome,
        other => panic!("not a session reply: {other:?}"),
    }
}

/// The admission hook of these tests: admits the credential `good` only,
/// and remembers who asked.
fn good_only(seen: Arc<Mutex<Vec<AdmissionRequest>>>) -> AdmissionPolicy {
    AdmissionPolicy::new(move |request: AdmissionRequest| {
        let admit = request.credential.as_ref().is_some_and(|c| c.as_bytes() == b"good");
        seen.lock().unwrap().push(request);
        async move {
            match admit {
                true => Verdict::Admit,
                false => Verdict::Unauthorized,
            }
        }
    })
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
