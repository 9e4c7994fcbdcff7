//! The numbers of the byte layout documented in [`crate::wire`]: the header,
//! the message type bytes, the tags of every enum, and the fixed sizes the
//! encoder and the frame-fit computation share. Encoder and decoder both read
//! their tags from here, so the two directions cannot drift apart.

use super::message::{RefuseReason, RejectReason};
use crate::endpoint::{Endpoint, MAX_HOST_LEN, MAX_INSTANCE_LEN};
use crate::workload::Role;

/// The protocol version this codec writes and the only one it reads.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes before a frame's payload: version (1), message type (1), payload length (4).
pub const HEADER_LEN: usize = 6;

/// Longest cluster name on the wire, in bytes (its length prefix is one byte).
pub const MAX_CLUSTER_NAME_LEN: usize = u8::MAX as usize;

/// Longest endpoint text on the wire, in bytes: the longest valid endpoint,
/// `instance@[host]:65535` (the `@`, two brackets, `:` and five digits).
pub const MAX_ENDPOINT_TEXT_LEN: usize = MAX_INSTANCE_LEN + MAX_HOST_LEN + 9;

/// The payload of a ranked `HandshakeReply` before its entries: request_id
/// `u64`, outcome tag, stale `bool`, count `u32`.
pub(crate) const RANKED_REPLY_FIXED_LEN: usize = 8 + 1 + 1 + 4;

/// The fixed part of a ranked entry on the wire: three `u32` and the `u16`
/// text length. Also lets the decoder refuse a list count the payload cannot
/// hold before it allocates for it. (Endpoint text adds at least one byte,
/// `a`, but an empty text deserves the parser's `Empty` error, not `Truncated`.)
pub(crate) const ENTRY_FIXED_LEN: usize = 4 + 4 + 4 + 2;

/// The message type byte of each message.
pub(crate) mod msg_type {
    pub const HANDSHAKE_REQUEST: u8 = 1;
    pub const HANDSHAKE_REPLY: u8 = 2;
    pub const SESSION_REQUEST: u8 = 3;
    pub const SESSION_REPLY: u8 = 4;
    pub const WORKLOAD_QUERY: u8 = 5;
    pub const WORKLOAD_REPORT: u8 = 6;
}

/// Refuse reasons in tag order.
pub(crate) const REFUSE_REASONS: [RefuseReason; 2] = [RefuseReason::Busy, RefuseReason::WrongCluster];

/// Reject reasons in tag order.
pub(crate) const REJECT_REASONS: [RejectReason; 7] = [
    RejectReason::Full,
    RejectReason::Draining,
    RejectReason::NotServing,
    RejectReason::Busy,
    RejectReason::AlreadyInSession,
    RejectReason::Unauthorized,
    RejectReason::AddressLimit,
];

/// Roles in tag order.
pub(crate) const ROLES: [Role; 3] = [Role::Serving, Role::LoadBalancerOnly, Role::Standalone];

// The `match`es below are exhaustive over the crate's own enums, so a new
// variant fails to compile here until it gets a tag (and a slot above).

pub(crate) fn refuse_tag(reason: RefuseReason) -> u8 {
    match reason {
        RefuseReason::Busy => 0,
        RefuseReason::WrongCluster => 1,
    }
}

pub(crate) fn reject_tag(reason: RejectReason) -> u8 {
    match reason {
        RejectReason::Full => 0,
        RejectReason::Draining => 1,
        RejectReason::NotServing => 2,
        RejectReason::Busy => 3,
        RejectReason::AlreadyInSession => 4,
        RejectReason::Unauthorized => 5,
        RejectReason::AddressLimit => 6,
    }
}

pub(crate) fn role_tag(role: Role) -> u8 {
    match role {
        Role::Serving => 0,
        Role::LoadBalancerOnly => 1,
        Role::Standalone => 2,
    }
}

/// The length of an endpoint's text on the wire (what the encoder writes):
/// `endpoint.to_string().len()` without formatting.
pub(crate) fn endpoint_text_len(endpoint: &Endpoint) -> usize {
    let instance = endpoint.instance().map_or(0, |name| name.len() + 1);
    let host = endpoint.host();
    let brackets = if endpoint.has_ipv6_host() { 2 } else { 0 };
    let digits = match endpoint.port() {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    instance + host.len() + brackets + 1 + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_tables_and_tag_functions_agree() {
        for (tag, reason) in REFUSE_REASONS.iter().enumerate() {
            assert_eq!(usize::from(refuse_tag(*reason)), tag);
        }
        for (tag, reason) in REJECT_REASONS.iter().enumerate() {
            assert_eq!(usize::from(reject_tag(*reason)), tag);
        }
        for (tag, role) in ROLES.iter().enumerate() {
            assert_eq!(usize::from(role_tag(*role)), tag);
        }
    }
}
