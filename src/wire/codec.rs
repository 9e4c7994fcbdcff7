//! The frame codec: [`encode`] into a caller-owned buffer, [`Decoder`] for a
//! byte stream split anywhere. The byte layout is documented in [`crate::wire`].

use std::hash::{Hash, Hasher};

use super::message::*;
use crate::endpoint::{Endpoint, EndpointError, MAX_HOST_LEN, MAX_INSTANCE_LEN};
use crate::workload::{InstanceId, Role, Workload};

/// The protocol version this codec writes and the only one it reads.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes before a frame's payload: version (1), message type (1), payload length (4).
pub const HEADER_LEN: usize = 6;

/// Default [`Limits::max_frame_len`]: 64 KiB of payload.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;

/// Default [`Limits::max_list_len`] (SPEC.md phase 2, item 7).
pub const DEFAULT_MAX_LIST_LEN: usize = 1024;

/// Longest cluster name on the wire, in bytes (its length prefix is one byte).
pub const MAX_CLUSTER_NAME_LEN: usize = u8::MAX as usize;

/// Longest endpoint text on the wire, in bytes: the longest valid endpoint,
/// `instance@[host]:65535` (the `@`, two brackets, `:` and five digits).
pub const MAX_ENDPOINT_TEXT_LEN: usize = MAX_INSTANCE_LEN + MAX_HOST_LEN + 9;

/// The fixed part of a ranked entry on the wire: three `u32` and the `u16`
/// text length. Lets the decoder refuse a list count the payload cannot hold
/// before it allocates for it. (Endpoint text adds at least one byte, `a`,
/// but an empty text deserves the parser's `Empty` error, not `Truncated`.)
const MIN_ENTRY_LEN: usize = 4 + 4 + 4 + 2;

/// The message type byte of each message.
mod msg_type {
    pub const HANDSHAKE_REQUEST: u8 = 1;
    pub const HANDSHAKE_REPLY: u8 = 2;
    pub const SESSION_REQUEST: u8 = 3;
    pub const SESSION_REPLY: u8 = 4;
    pub const WORKLOAD_QUERY: u8 = 5;
    pub const WORKLOAD_REPORT: u8 = 6;
}

/// The bounds both sides enforce. Encoder and decoder should use the same
/// values; [`Limits::default`] is what [`encode`] and [`Decoder::new`] use.
/// Build others with `Limits::default().with_max_frame_len(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload accepted, in bytes (the header is not counted).
    /// Values above `u32::MAX` act as `u32::MAX`, the most the length field holds.
    pub max_frame_len: usize,
    /// Most entries in a ranked list.
    pub max_list_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_len: DEFAULT_MAX_FRAME_LEN, max_list_len: DEFAULT_MAX_LIST_LEN }
    }
}

impl Limits {
    /// These limits with `max_frame_len` replaced.
    pub const fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.max_frame_len = max_frame_len;
        self
    }

    /// These limits with `max_list_len` replaced.
    pub const fn with_max_list_len(mut self, max_list_len: usize) -> Self {
        self.max_list_len = max_list_len;
        self
    }

    fn frame_cap(&self) -> usize {
        self.max_frame_len.min(u32::MAX as usize)
    }
}

/// What a ranked list repeats, when it repeats something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Two entries share an instance id.
    Id(InstanceId),
    /// Two entries share an endpoint (compared as parsed values, so `aos1`
    /// and `aos1:2712` are the same endpoint).
    Endpoint,
}

/// Why a message could not be encoded. `out` is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload would exceed [`Limits::max_frame_len`].
    #[error("frame payload of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The payload length the message needs.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The ranked list has more entries than [`Limits::max_list_len`].
    #[error("ranked list of {len} entries exceeds the {max}-entry limit")]
    ListTooLong {
        /// Entries in the list.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The cluster name is longer than [`MAX_CLUSTER_NAME_LEN`] bytes.
    #[error("cluster name of {len} bytes exceeds {MAX_CLUSTER_NAME_LEN}")]
    ClusterNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The ranked list names an instance twice (the decoder would refuse it).
    #[error("ranked list entry {index} repeats an earlier entry ({what:?})")]
    DuplicateEntry {
        /// Position of the repeating entry.
        index: usize,
        /// What it repeats.
        what: Duplicate,
    },
    /// A workload report with `connected > max_sessions` (the decoder would refuse it).
    #[error("workload report has connected {connected} > max_sessions {max_sessions}")]
    ConnectedAboveMax {
        /// Reported sessions.
        connected: u32,
        /// Reported maximum.
        max_sessions: u32,
    },
}

/// Why bytes are not a valid frame.
///
/// Two errors are **fatal**, because the stream cannot be resynchronised
/// after them: [`UnknownVersion`](Self::UnknownVersion) (another version may
/// frame differently) and [`Oversized`](Self::Oversized) (the frame is never
/// buffered, so its end is never found). After a fatal error the [`Decoder`]
/// drops everything fed to it and returns the same error from every
/// [`Decoder::next`]; the transport should be closed. Every other error is
/// about one frame whose length was known: the decoder has skipped that frame
/// and the next call decodes the frame after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame's version byte is not [`PROTOCOL_VERSION`]. Fatal.
    #[error("unknown protocol version {version} (expected {PROTOCOL_VERSION})")]
    UnknownVersion {
        /// The version byte received.
        version: u8,
    },
    /// The frame announces a payload longer than [`Limits::max_frame_len`]. Fatal.
    #[error("frame announces {len} payload bytes, more than the {max}-byte limit")]
    Oversized {
        /// The announced payload length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// The message type byte names no message.
    #[error("unknown message type {msg_type}")]
    UnknownType {
        /// The type byte received.
        msg_type: u8,
    },
    /// The payload ended before the message did.
    #[error("message type {msg_type}: payload ends before the message does")]
    Truncated {
        /// The frame's message type.
        msg_type: u8,
    },
    /// The message ended before the payload did.
    #[error("message type {msg_type}: {extra} trailing bytes after the message")]
    TrailingBytes {
        /// The frame's message type.
        msg_type: u8,
        /// Bytes left over.
        extra: usize,
    },
    /// A boolean byte other than 0 or 1.
    #[error("field `{field}`: boolean byte {value} is neither 0 nor 1")]
    InvalidBool {
        /// The field.
        field: &'static str,
        /// The byte received.
        value: u8,
    },
    /// An enum or option tag that names no variant.
    #[error("field `{field}`: unknown tag {value}")]
    UnknownTag {
        /// The field.
        field: &'static str,
        /// The tag received.
        value: u8,
    },
    /// A string that is not UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A string longer than its cap ([`MAX_ENDPOINT_TEXT_LEN`]).
    #[error("field `{field}` of {len} bytes exceeds its {max}-byte cap")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Endpoint text that [`Endpoint`]'s parser refuses.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(EndpointError),
    /// A ranked list with more entries than [`Limits::max_list_len`].
    #[error("ranked list of {len} entries exceeds the {max}-entry limit")]
    ListTooLong {
        /// The announced entry count.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// A ranked list that names the same id or endpoint twice.
    #[error("ranked list entry {index} repeats an earlier entry ({what:?})")]
    DuplicateEntry {
        /// Position of the repeating entry.
        index: usize,
        /// What it repeats.
        what: Duplicate,
    },
    /// A workload report with `connected > max_sessions`.
    #[error("workload report has connected {connected} > max_sessions {max_sessions}")]
    ConnectedAboveMax {
        /// Reported sessions.
        connected: u32,
        /// Reported maximum.
        max_sessions: u32,
    },
    /// [`Decoder::finish`]: the stream ended inside a frame.
    #[error("stream ended with {buffered} bytes of an incomplete frame")]
    UnexpectedEof {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
}

impl DecodeError {
    /// The stream cannot be resynchronised after this error (see the type docs).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::UnknownVersion { .. } | DecodeError::Oversized { .. })
    }
}

/// Appends `msg` as one frame to `out`, under [`Limits::default`].
/// See [`encode_with_limits`].
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_with_limits(msg, &Limits::default(), out)
}

/// Appends `msg` as one frame to `out`.
///
/// Refuses (with `out`'s contents unchanged) exactly the messages a decoder
/// with the same `limits` would refuse: a payload over `max_frame_len`, a list
/// over `max_list_len`, a cluster name over [`MAX_CLUSTER_NAME_LEN`] bytes, a
/// ranked list repeating an id or endpoint, a report with
/// `connected > max_sessions`. So a frame `encode` writes always decodes back
/// to `msg`. Endpoints are written in their canonical `Display` form.
///
/// Allocates nothing but `out`'s growth, except one scratch vector for the
/// duplicate check of a ranked list with two or more entries.
pub fn encode_with_limits(msg: &Message, limits: &Limits, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    validate(msg, limits)?;
    let start = out.len();
    out.extend_from_slice(&[PROTOCOL_VERSION, message_type(msg), 0, 0, 0, 0]);
    write_payload(msg, out);
    let len = out.len() - start - HEADER_LEN;
    let max = limits.frame_cap();
    if len > max {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge { len, max });
    }
    // `len <= frame_cap() <= u32::MAX`, so the cast is exact.
    out[start + 2..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn message_type(msg: &Message) -> u8 {
    match msg {
        Message::HandshakeRequest(_) => msg_type::HANDSHAKE_REQUEST,
        Message::HandshakeReply(_) => msg_type::HANDSHAKE_REPLY,
        Message::SessionRequest(_) => msg_type::SESSION_REQUEST,
        Message::SessionReply(_) => msg_type::SESSION_REPLY,
        Message::WorkloadQuery(_) => msg_type::WORKLOAD_QUERY,
        Message::WorkloadReport(_) => msg_type::WORKLOAD_REPORT,
    }
}

fn validate(msg: &Message, limits: &Limits) -> Result<(), EncodeError> {
    match msg {
        Message::HandshakeRequest(HandshakeRequest { cluster: Some(name), .. })
            if name.len() > MAX_CLUSTER_NAME_LEN =>
        {
            Err(EncodeError::ClusterNameTooLong { len: name.len() })
        }
        Message::HandshakeReply(HandshakeReply { outcome: HandshakeOutcome::Ranked(list), .. }) => {
            if list.entries.len() > limits.max_list_len {
                return Err(EncodeError::ListTooLong { len: list.entries.len(), max: limits.max_list_len });
            }
            match find_duplicate(&list.entries, &mut Vec::new()) {
                Some((index, what)) => Err(EncodeError::DuplicateEntry { index, what }),
                None => Ok(()),
            }
        }
        Message::WorkloadReport(report) if report.workload.connected > report.workload.max_sessions => {
            Err(EncodeError::ConnectedAboveMax {
                connected: report.workload.connected,
                max_sessions: report.workload.max_sessions,
            })
        }
        _ => Ok(()),
    }
}

fn write_payload(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::HandshakeRequest(m) => {
            out.extend_from_slice(&m.request_id.to_be_bytes());
            out.extend_from_slice(&m.salt.to_be_bytes());
            out.push(u8::from(m.load_balance));
            match &m.cluster {
                None => out.push(0),
                Some(name) => {
                    // `validate` checked the length fits one byte.
                    out.extend_from_slice(&[1, name.len() as u8]);
                    out.extend_from_slice(name.as_bytes());
                }
            }
        }
        Message::HandshakeReply(m) => {
            out.extend_from_slice(&m.request_id.to_be_bytes());
            match &m.outcome {
                HandshakeOutcome::Ranked(list) => {
                    out.extend_from_slice(&[0, u8::from(list.stale)]);
                    // `validate` bounded the count by `max_list_len`; a count
                    // that overflows u32 would overflow the frame long before.
                    out.extend_from_slice(&(list.entries.len().min(u32::MAX as usize) as u32).to_be_bytes());
                    // Fixed part 14 bytes, plus typical endpoint text.
                    out.reserve(list.entries.len() * 32);
                    for entry in &list.entries {
                        write_entry(entry, out);
                    }
                }
                HandshakeOutcome::Refused(reason) => out.extend_from_slice(&[1, refuse_tag(*reason)]),
            }
        }
        Message::SessionRequest(m) => out.extend_from_slice(&m.request_id.to_be_bytes()),
        Message::SessionReply(m) => {
            out.extend_from_slice(&m.request_id.to_be_bytes());
            match m.outcome {
                SessionOutcome::Accepted { session_id } => {
                    out.push(0);
                    out.extend_from_slice(&session_id.0.to_be_bytes());
                }
                SessionOutcome::Rejected(reason) => out.extend_from_slice(&[1, reject_tag(reason)]),
            }
        }
        Message::WorkloadQuery(m) => out.extend_from_slice(&m.query_id.0.to_be_bytes()),
        Message::WorkloadReport(m) => {
            out.extend_from_slice(&m.query_id.0.to_be_bytes());
            out.extend_from_slice(&m.id.0.to_be_bytes());
            out.extend_from_slice(&[role_tag(m.role), u8::from(m.accepting)]);
            out.extend_from_slice(&m.workload.connected.to_be_bytes());
            out.extend_from_slice(&m.workload.max_sessions.to_be_bytes());
        }
    }
}

fn write_entry(entry: &RankedEntry, out: &mut Vec<u8>) {
    let mut fixed = [0u8; 14];
    fixed[0..4].copy_from_slice(&entry.id.0.to_be_bytes());
    fixed[4..8].copy_from_slice(&entry.workload.connected.to_be_bytes());
    fixed[8..12].copy_from_slice(&entry.workload.max_sessions.to_be_bytes());
    out.extend_from_slice(&fixed);
    let text_start = out.len();
    write_endpoint(&entry.endpoint, out);
    // A valid endpoint's text is at most MAX_ENDPOINT_TEXT_LEN (< u16::MAX) bytes.
    let text_len = (out.len() - text_start) as u16;
    out[text_start - 2..text_start].copy_from_slice(&text_len.to_be_bytes());
}

/// Writes `endpoint`'s `Display` form without going through `fmt`, which
/// would cost more than the rest of the entry.
fn write_endpoint(endpoint: &Endpoint, out: &mut Vec<u8>) {
    if let Some(name) = endpoint.instance() {
        out.extend_from_slice(name.as_bytes());
        out.push(b'@');
    }
    let host = endpoint.host().as_bytes();
    if host.contains(&b':') {
        out.push(b'[');
        out.extend_from_slice(host);
        out.push(b']');
    } else {
        out.extend_from_slice(host);
    }
    out.push(b':');
    let mut digits = [0u8; 5];
    let mut port = endpoint.port();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (port % 10) as u8;
        port /= 10;
        if port == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn refuse_tag(reason: RefuseReason) -> u8 {
    match reason {
        RefuseReason::Busy => 0,
        RefuseReason::WrongCluster => 1,
    }
}

fn reject_tag(reason: RejectReason) -> u8 {
    match reason {
        RejectReason::Full => 0,
        RejectReason::Draining => 1,
        RejectReason::NotServing => 2,
        RejectReason::Busy => 3,
        RejectReason::AlreadyInSession => 4,
    }
}

fn role_tag(role: Role) -> u8 {
    match role {
        Role::Serving => 0,
        Role::LoadBalancerOnly => 1,
        Role::Standalone => 2,
    }
}

/// FNV-1a: deterministic and cheap on short endpoint strings; collisions are
/// settled by comparing the endpoints themselves.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn endpoint_hash(endpoint: &Endpoint) -> u64 {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    endpoint.hash(&mut hasher);
    hasher.finish()
}

/// The first entry (in list order) that repeats an earlier id or endpoint.
/// Sorts `(key, index)` pairs in `scratch` instead of hashing into a set, so a
/// reused scratch makes the check allocation-free.
fn find_duplicate(entries: &[RankedEntry], scratch: &mut Vec<(u64, u32)>) -> Option<(usize, Duplicate)> {
    if entries.len() < 2 {
        return None;
    }
    // Indices fit u32: lists are bounded by max_list_len and the frame size.
    let mut first: Option<(usize, Duplicate)> = None;
    let mut note = |index: usize, what: Duplicate| match first {
        Some((seen, _)) if seen <= index => {}
        _ => first = Some((index, what)),
    };
    scratch.clear();
    scratch.extend(entries.iter().enumerate().map(|(i, e)| (u64::from(e.id.0), i as u32)));
    scratch.sort_unstable();
    for pair in scratch.windows(2) {
        if pair[0].0 == pair[1].0 {
            note(pair[1].1 as usize, Duplicate::Id(InstanceId(pair[0].0 as u32)));
        }
    }
    scratch.clear();
    scratch.extend(entries.iter().enumerate().map(|(i, e)| (endpoint_hash(&e.endpoint), i as u32)));
    scratch.sort_unstable();
    let mut run_start = 0;
    while run_start < scratch.len() {
        let mut run_end = run_start + 1;
        while run_end < scratch.len() && scratch[run_end].0 == scratch[run_start].0 {
            run_end += 1;
        }
        // Within a run of equal hashes (sorted by index), each entry is
        // compared with the earlier ones: a true repeat, not a collision.
        let run = &scratch[run_start..run_end];
        for (k, &(_, later)) in run.iter().enumerate().skip(1) {
            let later = later as usize;
            if run[..k]
                .iter()
                .any(|&(_, earlier)| entries[earlier as usize].endpoint == entries[later].endpoint)
            {
                note(later, Duplicate::Endpoint);
                break;
            }
        }
        run_start = run_end;
    }
    first
}

/// Reads a payload front to back; every read past the end is `Truncated`.
struct Reader<'a> {
    bytes: &'a [u8],
    msg_type: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated { msg_type: self.msg_type });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidBool { field, value }),
        }
    }

    fn tag(&mut self, field: &'static str, variants: u8) -> Result<u8, DecodeError> {
        match self.u8()? {
            value if value < variants => Ok(value),
            value => Err(DecodeError::UnknownTag { field, value }),
        }
    }

    fn str(&mut self, field: &'static str, len: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { msg_type: self.msg_type, extra }),
        }
    }
}

fn decode_payload(
    msg_type: u8,
    payload: &[u8],
    limits: &Limits,
    scratch: &mut Vec<(u64, u32)>,
) -> Result<Message, DecodeError> {
    let mut r = Reader { bytes: payload, msg_type };
    let msg = match msg_type {
        msg_type::HANDSHAKE_REQUEST => {
            let request_id = r.u64()?;
            let salt = r.u64()?;
            let load_balance = r.bool("load_balance")?;
            let cluster = match r.tag("cluster", 2)? {
                0 => None,
                _ => {
                    let len = usize::from(r.u8()?);
                    Some(r.str("cluster", len)?.to_owned())
                }
            };
            Message::HandshakeRequest(HandshakeRequest { request_id, salt, load_balance, cluster })
        }
        msg_type::HANDSHAKE_REPLY => {
            let request_id = r.u64()?;
            let outcome = match r.tag("handshake_outcome", 2)? {
                0 => HandshakeOutcome::Ranked(read_list(&mut r, limits, scratch)?),
                _ => HandshakeOutcome::Refused(match r.tag("refuse_reason", 2)? {
                    0 => RefuseReason::Busy,
                    _ => RefuseReason::WrongCluster,
                }),
            };
            Message::HandshakeReply(HandshakeReply { request_id, outcome })
        }
        msg_type::SESSION_REQUEST => Message::SessionRequest(SessionRequest { request_id: r.u64()? }),
        msg_type::SESSION_REPLY => {
            let request_id = r.u64()?;
            let outcome = match r.tag("session_outcome", 2)? {
                0 => SessionOutcome::Accepted { session_id: SessionId(r.u64()?) },
                _ => SessionOutcome::Rejected(match r.tag("reject_reason", 5)? {
                    0 => RejectReason::Full,
                    1 => RejectReason::Draining,
                    2 => RejectReason::NotServing,
                    3 => RejectReason::Busy,
                    _ => RejectReason::AlreadyInSession,
                }),
            };
            Message::SessionReply(SessionReply { request_id, outcome })
        }
        msg_type::WORKLOAD_QUERY => Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(r.u64()?) }),
        msg_type::WORKLOAD_REPORT => {
            let query_id = QueryId(r.u64()?);
            let id = InstanceId(r.u32()?);
            let role = match r.tag("role", 3)? {
                0 => Role::Serving,
                1 => Role::LoadBalancerOnly,
                _ => Role::Standalone,
            };
            let accepting = r.bool("accepting")?;
            let workload = Workload::new(r.u32()?, r.u32()?);
            if workload.connected > workload.max_sessions {
                return Err(DecodeError::ConnectedAboveMax {
                    connected: workload.connected,
                    max_sessions: workload.max_sessions,
                });
            }
            Message::WorkloadReport(WorkloadReport { query_id, id, role, accepting, workload })
        }
        other => return Err(DecodeError::UnknownType { msg_type: other }),
    };
    r.finish()?;
    Ok(msg)
}

fn read_list(
    r: &mut Reader<'_>,
    limits: &Limits,
    scratch: &mut Vec<(u64, u32)>,
) -> Result<RankedList, DecodeError> {
    let stale = r.bool("stale")?;
    let count = r.u32()?;
    if count as usize > limits.max_list_len {
        return Err(DecodeError::ListTooLong { len: count, max: limits.max_list_len });
    }
    let count = count as usize;
    // Refuse a count the payload cannot hold before allocating for it.
    if count.saturating_mul(MIN_ENTRY_LEN) > r.bytes.len() {
        return Err(DecodeError::Truncated { msg_type: r.msg_type });
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let fixed: [u8; 14] = r.array()?;
        let word = |at: usize| u32::from_be_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]]);
        let text_len = usize::from(u16::from_be_bytes([fixed[12], fixed[13]]));
        if text_len > MAX_ENDPOINT_TEXT_LEN {
            return Err(DecodeError::StringTooLong {
                field: "endpoint",
                len: text_len,
                max: MAX_ENDPOINT_TEXT_LEN,
            });
        }
        let endpoint = parse_endpoint(r.str("endpoint", text_len)?)?;
        entries.push(RankedEntry {
            id: InstanceId(word(0)),
            endpoint,
            workload: Workload::new(word(4), word(8)),
        });
    }
    if let Some((index, what)) = find_duplicate(&entries, scratch) {
        return Err(DecodeError::DuplicateEntry { index, what });
    }
    Ok(RankedList { stale, entries })
}

/// Parses endpoint text exactly as `Endpoint::from_str` does (same values,
/// same errors), faster for the canonical `[instance@]host:port` and
/// `[instance@][v6]:port` shapes every writer sends: those are split here and
/// checked by `Endpoint::with_instance`, which runs the same validators without
/// the parser's general scanning. Any other shape, and any text the validators
/// refuse, goes through `from_str` itself.
fn parse_endpoint(text: &str) -> Result<Endpoint, DecodeError> {
    if let Some((instance, host, port)) = split_canonical(text) {
        if let Ok(endpoint) = Endpoint::with_instance(instance, host, port) {
            return Ok(endpoint);
        }
    }
    text.parse().map_err(DecodeError::InvalidEndpoint)
}

/// Splits `[instance@]host:port` or `[instance@][v6]:port`, mirroring the
/// parser's own splitting; `None` for every other shape.
fn split_canonical(text: &str) -> Option<(Option<&str>, &str, u16)> {
    let (instance, rest) = match text.split_once('@') {
        Some((name, rest)) => (Some(name), rest),
        None => (None, text),
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(after) => {
            let (host, tail) = after.split_once(']')?;
            // The parser refuses brackets around a host with no ':'; so does the fallback.
            if !host.contains(':') {
                return None;
            }
            (host, tail.strip_prefix(':')?)
        }
        None => {
            let (host, port) = rest.split_once(':')?;
            if port.contains(':') || host.starts_with('[') {
                return None;
            }
            (host, port)
        }
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.bytes().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    Some((instance, host, u16::try_from(port).ok().filter(|&p| p != 0)?))
}

/// Decodes frames from a byte stream delivered in any split.
///
/// [`feed`](Self::feed) whatever arrived, then call [`next`](Self::next) until
/// it returns `Ok(None)` (more bytes needed) or a fatal error. Drained that
/// way, the decoder holds at most one incomplete frame: fewer than
/// `HEADER_LEN + max_frame_len` bytes. A header announcing more than
/// `max_frame_len` is refused as soon as its six bytes are in, before any of
/// its payload is buffered. The buffer is reused across frames; consumed
/// bytes are compacted away lazily. Nothing here panics on any input.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Bytes of `buf` before this offset are consumed.
    consumed: usize,
    fatal: Option<DecodeError>,
    scratch: Vec<(u64, u32)>,
}

impl Decoder {
    /// A decoder under [`Limits::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder under `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder { limits, ..Self::default() }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes fed but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The fatal error this decoder stopped at, if any.
    pub fn fatal_error(&self) -> Option<&DecodeError> {
        self.fatal.as_ref()
    }

    /// Appends bytes that arrived. After a fatal error they are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.fatal.is_some() {
            return;
        }
        // Compact only once the consumed prefix outweighs what is left, so
        // each byte is moved a bounded number of times.
        if self.consumed == self.buf.len() {
            self.buf.clear();
            self.consumed = 0;
        } else if self.consumed > 0 && self.consumed >= self.buf.len() - self.consumed {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next message: `Ok(Some(_))`, `Ok(None)` when the next frame is not
    /// complete yet, or `Err` for a bad frame (skipped; decoding goes on) or a
    /// fatal error (returned again on every call; see [`DecodeError`]).
    // The name is the API. `Iterator` does not fit: `Ok(None)` means
    // "feed me more", not "done", and a fatal error repeats forever.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(err) = &self.fatal {
            return Err(err.clone());
        }
        let pending = &self.buf[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let [version, msg_type, l0, l1, l2, l3] = *header;
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let fatal = if version != PROTOCOL_VERSION {
            Some(DecodeError::UnknownVersion { version })
        } else if len as usize > self.limits.frame_cap() {
            Some(DecodeError::Oversized { len, max: self.limits.frame_cap() })
        } else {
            None
        };
        if let Some(err) = fatal {
            self.buf = Vec::new();
            self.consumed = 0;
            self.fatal = Some(err.clone());
            return Err(err);
        }
        // Saturating: on a 32-bit target a limit near u32::MAX could overflow;
        // such a frame could never be buffered anyway.
        let frame_len = HEADER_LEN.saturating_add(len as usize);
        let Some(payload) = pending.get(HEADER_LEN..frame_len) else {
            return Ok(None);
        };
        let result = decode_payload(msg_type, payload, &self.limits, &mut self.scratch);
        self.consumed += frame_len;
        result.map(Some)
    }

    /// Checks the stream ended on a frame boundary: call at end of input.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(err) = &self.fatal {
            return Err(err.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(DecodeError::UnexpectedEof { buffered }),
        }
    }
}
