//! The instance server's connection side: accept, then one task per
//! connection that decodes requests for the actor and writes its replies.

use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::wire::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::frames::{write_message, FrameReader, ReadError};
use super::server::{Input, Stop};

pub(super) async fn accept_loop(
    listener: TcpListener,
    inbox: mpsc::UnboundedSender<Input>,
    mut stop: watch::Receiver<Stop>,
) {
    let mut next_conn = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    next_conn += 1;
                    let conn = ConnectionId(next_conn);
                    debug!(?conn, %peer, "connection opened");
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(conn, stream, inbox.clone(), stop.clone()));
                }
                // Out of descriptors and the like: keep serving the open connections.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// One connection: decoded requests go to the actor, replies come back on
/// `writer`. A malformed frame ends the connection with nothing more sent.
async fn serve_connection(
    conn: ConnectionId,
    stream: TcpStream,
    inbox: mpsc::UnboundedSender<Input>,
    mut stop: watch::Receiver<Stop>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(reader);
    let (writer_tx, mut replies) = mpsc::unbounded_channel();
    if inbox.send(Input::Opened { conn, writer: writer_tx }).is_err() {
        return;
    }
    let mut scratch = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            reply = replies.recv() => match reply {
                Some(message) => {
                    if let Err(e) = write_message(&mut writer, &message, &mut scratch).await {
                        debug!(?conn, error = %e, "write failed");
                        break;
                    }
                }
                None => break,
            },
            read = reader.next() => {
                let event = match read {
                    Ok(Message::HandshakeRequest(request)) => instance::Event::HandshakeRequest { conn, request },
                    Ok(Message::SessionRequest(request)) => instance::Event::SessionRequest { conn, request },
                    Ok(Message::WorkloadQuery(query)) => instance::Event::WorkloadQuery { conn, query },
                    Ok(other) => {
                        warn!(?conn, message = ?other, "a reply sent to an instance; closing the connection");
                        let _ = inbox.send(Input::Malformed);
                        break;
                    }
                    Err(ReadError::Decode(e)) => {
                        warn!(?conn, error = %e, "malformed frame; closing the connection");
                        let _ = inbox.send(Input::Malformed);
                        break;
                    }
                    Err(ReadError::Closed) => break,
                    Err(e) => {
                        debug!(?conn, error = %e, "connection failed");
                        break;
                    }
                };
                if inbox.send(Input::Event(event)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = inbox.send(Input::Closed { conn });
}
