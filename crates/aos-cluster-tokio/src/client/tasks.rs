//! The async client's I/O: one tokio task per attempt (resolve, TCP connect
//! with `TCP_NODELAY`, TLS if configured, write the request frame, read
//! exactly one reply frame within the wire limits), so staggered handshakes
//! run concurrently. No timeout here: the machine's deadline for an attempt
//! closes it, which aborts its task.

use std::collections::BTreeMap;
use std::time::Instant;

use aos_cluster::client::AttemptId;
use aos_cluster::wire::{Limits, Message};
use aos_cluster::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use super::driver::AttemptIo;
use crate::client_frames::{describe, encode_request, OneFrame};
use crate::transport::SessionStream;

/// The attempt tasks of one `connect`. Dropping it aborts every task still
/// running and closes its transport.
pub(super) struct Tasks {
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(super) limits: Limits,
    pub(super) set: JoinSet<Finished>,
    running: BTreeMap<AttemptId, AbortHandle>,
}

/// What an attempt's task returns: its reply or why there is none, and its
/// transport if one was opened (closed only when the machine says).
pub(super) struct Finished {
    pub(super) attempt: AttemptId,
    pub(super) stream: Option<SessionStream>,
    pub(super) reply: Result<Message, String>,
}

impl Tasks {
    pub(super) fn new(
        limits: Limits,
        #[cfg(feature = "tls")] tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        Tasks {
            #[cfg(feature = "tls")]
            tls,
            limits,
            set: JoinSet::new(),
            running: BTreeMap::new(),
        }
    }
}

impl AttemptIo for Tasks {
    fn start(
        &mut self,
        attempt: AttemptId,
        endpoint: Endpoint,
        message: Message,
        _deadline: Instant,
    ) -> Result<(), String> {
        let handle = self.set.spawn(exchange(
            attempt,
            endpoint,
            message,
            self.limits,
            #[cfg(feature = "tls")]
            self.tls.clone(),
        ));
        self.running.insert(attempt, handle);
        Ok(())
    }

    fn close(&mut self, attempt: AttemptId) {
        if let Some(task) = self.running.remove(&attempt) {
            task.abort();
        }
    }

    fn keep(&mut self, attempt: AttemptId) {
        self.running.remove(&attempt);
    }
}

/// One attempt: open a transport, send the request, read one reply frame.
async fn exchange(
    attempt: AttemptId,
    endpoint: Endpoint,
    request: Message,
    limits: Limits,
    #[cfg(feature = "tls")] tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Finished {
    let tcp = match open_transport(&endpoint).await {
        Ok(stream) => stream,
        Err(reason) => return Finished { attempt, stream: None, reply: Err(reason) },
    };
    let opened = SessionStream::handshake(
        tcp,
        endpoint.host(),
        #[cfg(feature = "tls")]
        tls.as_ref(),
    )
    .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(reason) => return Finished { attempt, stream: None, reply: Err(reason) },
    };
    let reply = request_reply(&mut stream, &endpoint, &request, limits).await;
    Finished { attempt, stream: Some(stream), reply }
}

/// Resolves `endpoint` and connects to its addresses in order, the first
/// that answers wins.
async fn open_transport(endpoint: &Endpoint) -> Result<TcpStream, String> {
    let target = endpoint.socket_addr_string();
    let addrs = lookup_host(&target).await.map_err(|e| format!("resolve {target}: {}", describe(&e)))?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("set TCP_NODELAY on {target}: {}", describe(&e)))?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => format!("connect to {target}: {}", describe(&e)),
        None => format!("resolve {target}: no address"),
    })
}

async fn request_reply(
    stream: &mut SessionStream,
    endpoint: &Endpoint,
    request: &Message,
    limits: Limits,
) -> Result<Message, String> {
    let target = endpoint.socket_addr_string();
    let bytes = encode_request(request, &limits)?;
    stream.write_all(&bytes).await.map_err(|e| format!("send to {target}: {}", describe(&e)))?;
    let mut frame = OneFrame::new(limits);
    loop {
        let n = stream
            .read(frame.unfilled())
            .await
            .map_err(|e| format!("read from {target}: {}", describe(&e)))?;
        if n == 0 {
            let cut = if frame.started() { "in the middle of its reply" } else { "without replying" };
            return Err(format!("{target} closed the connection {cut}"));
        }
        if let Some(message) = frame.advance(n).map_err(|e| format!("{target}: {e}"))? {
            return Ok(message);
        }
    }
}
