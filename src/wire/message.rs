//! The six protocol messages of SPEC.md, as plain values.

use std::fmt;
use std::sync::Arc;

use crate::endpoint::Endpoint;
use crate::workload::{InstanceId, Role, Workload};

/// An instance's name for an admitted session, unique within one
/// instance's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// An instance's name for one registry or peer query; answers echo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct QueryId(pub u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// Any protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Message {
    /// Client -> instance: phase 1.
    HandshakeRequest(HandshakeRequest),
    /// Instance -> client: the ranked list, or a refusal.
    HandshakeReply(HandshakeReply),
    /// Client -> instance: phase 3.
    SessionRequest(SessionRequest),
    /// Instance -> client: accepted, or rejected with a reason.
    SessionReply(SessionReply),
    /// Instance -> peer: what is your workload?
    WorkloadQuery(WorkloadQuery),
    /// Peer -> instance: my live figures.
    WorkloadReport(WorkloadReport),
}

/// A client's handshake: "which instance should I use?"
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct HandshakeRequest {
    /// Echoed in the reply.
    pub request_id: u64,
    /// Chooses the rotation among tied instances, so ties share arrivals.
    pub salt: u64,
    /// `false`: AX `-loadbalance=0`, no ranking wanted.
    pub load_balance: bool,
    /// The cluster the client expects, if it names one.
    pub cluster: Option<String>,
}

/// The answer to a [`HandshakeRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct HandshakeReply {
    /// The request's id.
    pub request_id: u64,
    /// A ranked list or a refusal.
    pub outcome: HandshakeOutcome,
}

/// What a handshake produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum HandshakeOutcome {
    /// Active instances, least loaded first (possibly empty: nobody can take a session).
    Ranked(RankedList),
    /// The instance will not rank for this client.
    Refused(RefuseReason),
}

/// A ranked list of instances, least loaded first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RankedList {
    /// Ranked from an old registry snapshot because the registry did not answer.
    pub stale: bool,
    /// The entries, best first; no target (see [`Endpoint::same_target`]) or id
    /// appears twice.
    pub entries: Vec<RankedEntry>,
}

/// One instance in a ranked list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RankedEntry {
    /// The instance's registry id.
    pub id: InstanceId,
    /// Where to send the session request.
    pub endpoint: Endpoint,
    /// Its figures when ranked (predicted, with herd control).
    pub workload: Workload,
}

/// Why an instance refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum RefuseReason {
    /// Too many handshakes waiting; try another instance.
    Busy,
    /// The client asked for a cluster this instance is not part of.
    WrongCluster,
}

/// A client's request for a session on this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SessionRequest {
    /// Echoed in the reply.
    pub request_id: u64,
    /// An opaque credential for the instance's admission policy (a token,
    /// a signed ticket: the application's business). Without one the frame
    /// is byte for byte what a client without credentials sends.
    pub credential: Option<Credential>,
}

/// Longest [`Credential`] in bytes: 4 KiB.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// An opaque credential carried by a [`SessionRequest`]: at most
/// [`MAX_CREDENTIAL_LEN`] bytes, checked when it is made, so every
/// credential encodes. Cloning is cheap (shared bytes). Its `Debug` shows the
/// length only, so a credential never reaches a log by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential(Arc<[u8]>);

impl Credential {
    /// `bytes` as a credential, or why not (longer than [`MAX_CREDENTIAL_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Credential, CredentialTooLong> {
        let bytes = bytes.into();
        if bytes.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialTooLong { len: bytes.len() });
        }
        Ok(Credential(bytes.into()))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no bytes (an empty credential is still a credential).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({} bytes)", self.0.len())
    }
}

impl TryFrom<&[u8]> for Credential {
    type Error = CredentialTooLong;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Credential::new(bytes)
    }
}

impl TryFrom<Vec<u8>> for Credential {
    type Error = CredentialTooLong;

    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Credential::new(bytes)
    }
}

impl TryFrom<&str> for Credential {
    type Error = CredentialTooLong;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Credential::new(text.as_bytes())
    }
}

/// A credential longer than [`MAX_CREDENTIAL_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("credential of {len} bytes exceeds the {MAX_CREDENTIAL_LEN}-byte limit")]
pub struct CredentialTooLong {
    /// Its length in bytes.
    pub len: usize,
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Credential {
    /// Up to [`MAX_CREDENTIAL_LEN`] bytes, often short, sometimes at the cap.
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = match u.int_in_range(0u8..=3)? {
            0 | 1 => u.int_in_range(0..=64)?,
            2 => u.int_in_range(MAX_CREDENTIAL_LEN - 2..=MAX_CREDENTIAL_LEN)?,
            _ => MAX_CREDENTIAL_LEN,
        };
        let available = u.bytes(len.min(u.len()))?;
        let mut bytes = available.to_vec();
        bytes.resize(len, 0xa5);
        Credential::new(bytes).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SessionReply {
    /// The request's id.
    pub request_id: u64,
    /// Accepted or rejected.
    pub outcome: SessionOutcome,
}

/// Admission's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum SessionOutcome {
    /// The session is open; it lasts until it ends or is lost.
    Accepted {
        /// The instance's name for the session.
        session_id: SessionId,
    },
    /// No session; the client tries the next entry.
    Rejected(RejectReason),
}

/// Why admission said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum RejectReason {
    /// `connected >= max_sessions`.
    Full,
    /// Not accepting new sessions ("Reject new clients").
    Draining,
    /// A load-balancer-only instance never admits a session.
    NotServing,
    /// The instance cannot track more sessions (a memory bound).
    Busy,
    /// The connection already holds a session (SPEC 3.5: one per connection).
    AlreadyInSession,
    /// The instance's admission policy refused the client: its application
    /// hook said no (or did not answer in time) for this peer, TLS identity
    /// and credential.
    Unauthorized,
    /// The client's source address holds `max_sessions_per_ip` sessions on
    /// this instance already (the instance itself may have room).
    AddressLimit,
}

/// An instance asks a peer for its live workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct WorkloadQuery {
    /// Echoed in the report.
    pub query_id: QueryId,
}

/// A peer's live figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct WorkloadReport {
    /// The query's id.
    pub query_id: QueryId,
    /// Who reports.
    pub id: InstanceId,
    /// Its role.
    pub role: Role,
    /// Whether it admits new sessions.
    pub accepting: bool,
    /// Its figures; `connected <= max_sessions` on the wire.
    pub workload: Workload,
}
