//! [`ServerHandle`]: the embedder's commands to a running server.

use tokio::sync::oneshot;

use super::{Command, Input, RankObserver, ServerError, ServerHandle, ServerStats, Stop};
use aos_cluster::Endpoint;

impl ServerHandle {
    async fn send(&self, command: Command) -> Result<(), ServerError> {
        self.inbox.send(Input::Command(command)).await.map_err(|_| ServerError::Stopped)
    }

    /// Admit new sessions (`true`) or drain (`false`: "Reject new clients");
    /// published at once in a heartbeat. [`ServerError::Stopping`] for
    /// `true` while [`shutdown_graceful`](Self::shutdown_graceful) drains.
    pub async fn set_accepting(&self, accepting: bool) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetAccepting(accepting, tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// Changes "Max concurrent sessions" (at least 1); existing sessions stay.
    pub async fn set_max_sessions(&self, max: u32) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetMaxSessions(max, tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// The machine's and the driver's figures.
    pub async fn stats(&self) -> Result<ServerStats, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// The address clients and peers are told.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Installs the observer of each handshake's time to rank (for metrics).
    /// One per server: `false` if one was installed already.
    pub fn set_rank_observer(&self, observer: RankObserver) -> bool {
        self.shared.rank_observer.set(observer).is_ok()
    }

    /// Stops gracefully and waits: no new connections, open connections and
    /// sessions end at once, and this incarnation's registry row is removed.
    pub async fn shutdown(&self) {
        self.stop(Stop::Graceful).await
    }

    /// Stops gracefully after a drain, and waits: new sessions are refused
    /// at once (`Draining`; the instance advertises `accepting = false`, so
    /// peers stop ranking it), open sessions keep working until they end by
    /// themselves or `grace` has passed (at most a year), then whatever is
    /// left is closed and this incarnation's registry row is removed, as by
    /// [`shutdown`](Self::shutdown). A [`shutdown`](Self::shutdown) during
    /// the drain stops at once. While draining, `set_accepting(true)` fails
    /// with [`ServerError::Stopping`].
    pub async fn shutdown_graceful(&self, grace: std::time::Duration) {
        // A server that has stopped, or is stopping, is simply awaited.
        let _ = self.send(Command::Drain(grace)).await;
        self.stopped().await
    }

    /// Completes once the server has fully stopped (its registry row
    /// removed on a graceful stop), however it was stopped. Independent of
    /// this handle: it may be awaited from anywhere.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.done.clone();
        async move {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Stops as a crashed process would (for tests and fault drills):
    /// connections drop and heartbeats stop, but the registry row stays
    /// until it goes stale.
    pub async fn crash(&self) {
        self.stop(Stop::Crash).await
    }

    async fn stop(&self, how: Stop) {
        self.shared.stop.send_if_modified(|s| {
            let running = *s == Stop::Running;
            if running {
                *s = how;
            }
            running
        });
        self.stopped().await
    }

    /// Whether the server has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.done.borrow()
    }
}
