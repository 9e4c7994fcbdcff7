//! What can go wrong on each side of the codec. The encoder refuses exactly
//! what the decoder would refuse, so the two enums mirror each other.

use super::layout::{MAX_CLUSTER_NAME_LEN, PROTOCOL_VERSION};
use crate::endpoint::EndpointError;
use crate::workload::InstanceId;
#[cfg(doc)]
use {
    super::{Decoder, Limits, MAX_ENDPOINT_TEXT_LEN},
    crate::endpoint::Endpoint,
};

/// What a ranked list repeats, when it repeats something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Two entries share an instance id.
    Id(InstanceId),
    /// Two entries name the same target: host (ASCII case-insensitive; an
    /// IPv6 host as an address) and port, whatever their instance labels
    /// (SPEC.md phase 1, item 5; see [`Endpoint::same_target`]). So
    /// `aos1`, `AOS1:2712` and `AOS01@aos1:2712` are one target.
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
    /// A `SessionRequest` credential announced longer than
    /// [`MAX_CREDENTIAL_LEN`](super::MAX_CREDENTIAL_LEN) bytes (refused
    /// before anything is allocated for it).
    #[error("credential of {len} bytes exceeds its {max}-byte cap")]
    CredentialTooLong {
        /// The announced length.
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
