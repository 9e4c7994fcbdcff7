//! The admission policy (SPEC "Drivers: admission policy"): what may refuse
//! a session request before it counts. Two parts, both off by default:
//!
//! - `max_sessions_per_ip` ([`ServerConfig`](super::ServerConfig)): a source
//!   address holding that many sessions here gets
//!   [`RejectReason::AddressLimit`] for the next one;
//! - an application hook ([`AdmissionPolicy`], given with
//!   [`ServerOptions::with_admission`](super::ServerOptions::with_admission))
//!   that sees the peer address, the TLS client certificate and the
//!   request's credential, and answers [`Verdict::Admit`] or
//!   [`Verdict::Unauthorized`] within its deadline. A hook that does not
//!   answer in time, or panics, refuses ([`RejectReason::Unauthorized`]),
//!   with a warning in the log.
//!
//! The order, on the connection's own task so a slow hook holds up nobody
//! else: the per-address cap is looked at (a client already at its cap does
//! not cost a hook call), the hook runs, then the address's session place is
//! taken, atomically with the check, so parallel requests from one address
//! cannot pass the cap together. Only then does the machine see the request.
//! A refused request reaches the machine as
//! [`Event::SessionDenied`](aos_cluster::instance::Event::SessionDenied): it
//! answers it and counts it, and nothing else moves (no session, no
//! workload, no registry figure). A request the machine then rejects (full,
//! draining) gives its address place back at once.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::wire::Credential;
#[cfg(doc)]
use aos_cluster::wire::RejectReason;

use crate::registry::BoxFuture;

/// What the hook is asked about one session request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdmissionRequest {
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The DER of the certificate the client presented in the TLS handshake
    /// (it chains to the cluster CA: the handshake refuses any other);
    /// `None` without TLS or when the client presented none.
    pub client_certificate: Option<Arc<[u8]>>,
    /// The request's credential, if it carries one.
    pub credential: Option<Credential>,
}

/// The hook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Let the instance's own admission decide (capacity, draining).
    Admit,
    /// Refuse: the client gets [`RejectReason::Unauthorized`].
    Unauthorized,
}

/// An application's admission check. Implemented for every
/// `Fn(AdmissionRequest) -> impl Future<Output = Verdict>` that is `Send +
/// Sync`, so a closure will do:
///
/// ```
/// use aos_cluster_tokio::server::{AdmissionPolicy, AdmissionRequest, Verdict};
///
/// let policy = AdmissionPolicy::new(|request: AdmissionRequest| async move {
///     match request.credential {
///         Some(c) if c.as_bytes() == b"let me in" => Verdict::Admit,
///         _ => Verdict::Unauthorized,
///     }
/// });
/// ```
pub trait AdmissionHook: Send + Sync + 'static {
    /// The verdict on `request`. Runs on the connection's task; a verdict
    /// later than the policy's deadline is not waited for (the future is
    /// dropped and the request refused).
    fn check(&self, request: AdmissionRequest) -> BoxFuture<'static, Verdict>;
}

impl<F, Fut> AdmissionHook for F
where
    F: Fn(AdmissionRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    fn check(&self, request: AdmissionRequest) -> BoxFuture<'static, Verdict> {
        Box::pin(self(request))
    }
}

/// An [`AdmissionHook`] and how long it may take.
#[derive(Clone)]
pub struct AdmissionPolicy {
    hook: Arc<dyn AdmissionHook>,
    deadline: Duration,
}

impl fmt::Debug for AdmissionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPolicy").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl AdmissionPolicy {
    /// The default deadline: 1 s, well inside a client's `connect_timeout`
    /// (5 s), so a refused client still has time for the next instance.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);

    /// `hook`, with [`DEFAULT_DEADLINE`](Self::DEFAULT_DEADLINE).
    pub fn new(hook: impl AdmissionHook) -> Self {
        AdmissionPolicy { hook: Arc::new(hook), deadline: Self::DEFAULT_DEADLINE }
    }

    /// This policy with `deadline` (more than zero, at most a year): a hook
    /// that has not answered by then refuses.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long the hook may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.deadline.is_zero() || self.deadline > aos_cluster::config::MAX_DURATION {
            return Err("the admission hook's deadline must be more than zero and at most a year".into());
        }
        Ok(())
    }

    /// Runs the hook on its own task (a panic in it is caught there) under
    /// the deadline; dropping this future stops the hook.
    pub(super) async fn run(&self, request: AdmissionRequest) -> Outcome {
        struct AbortOnDrop(tokio::task::JoinHandle<Verdict>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(tokio::spawn(self.hook.check(request)));
        match tokio::time::timeout(self.deadline, &mut task.0).await {
            Ok(Ok(verdict)) => Outcome::Verdict(verdict),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::TimedOut,
        }
    }
}

/// What running the hook gave.
pub(super) enum Outcome {
    Verdict(Verdict),
    TimedOut,
    Failed(String),
}
