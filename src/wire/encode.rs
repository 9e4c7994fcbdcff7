//! The encoder: one message to one frame appended to a caller-owned buffer.
//! It refuses exactly what a decoder with the same limits would refuse, and
//! checks in the decoder's order, so both report the same error.

use super::dedup::{first_repeat, DedupScratch};
use super::error::EncodeError;
use super::layout::*;
use super::limits::Limits;
use super::message::*;
use crate::endpoint::Endpoint;

/// Appends `msg` as one frame to `out`, under [`Limits::default`].
/// See [`encode_with_limits`].
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_with_limits(msg, &Limits::default(), out)
}

/// Appends `msg` as one frame to `out`.
///
/// Refuses (with `out`'s contents unchanged) exactly the messages a decoder
/// with the same `limits` would refuse, with the error the decoder would
/// report first: a cluster name over [`MAX_CLUSTER_NAME_LEN`] bytes (no frame
/// can carry it), a payload over `max_frame_len`, a list over
/// `max_list_len`, a ranked list repeating an id or a target, a report with
/// `connected > max_sessions`. So a frame `encode` writes always decodes back
/// to `msg`. Endpoints are written in their canonical `Display` form. Cut a
/// ranked list with [`entries_that_fit`](super::entries_that_fit) first to be
/// sure it fits.
///
/// Allocates nothing but `out`'s growth, except the scratch of the duplicate
/// check of a ranked list with two or more entries.
pub fn encode_with_limits(msg: &Message, limits: &Limits, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if let Message::HandshakeRequest(HandshakeRequest { cluster: Some(name), .. }) = msg {
        if name.len() > MAX_CLUSTER_NAME_LEN {
            return Err(EncodeError::ClusterNameTooLong { len: name.len() });
        }
    }
    let start = out.len();
    write_frame_unchecked(msg, out);
    // The rest in the decoder's order: the header's length, then the payload
    // front to back. Writing first measures the payload in the same pass;
    // only a refused message pays for bytes it then takes back.
    let refused = check(msg, limits, out.len() - start - HEADER_LEN);
    if refused.is_err() {
        out.truncate(start);
    }
    refused
}

/// Appends `msg`'s frame without any check: the bytes a careless writer
/// would send. Fuzzing feeds them to the decoder to show that what the
/// encoder refuses, the decoder refuses too. A cluster name over 255 bytes
/// has its length byte truncated; a payload over `u32::MAX` bytes its length
/// field saturated (neither has a valid frame).
pub fn write_frame_unchecked(msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[PROTOCOL_VERSION, message_type(msg), 0, 0, 0, 0]);
    write_payload(msg, out);
    let len = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
    out[start + 2..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// What the decoder would refuse in `msg`, written with a `len`-byte payload.
fn check(msg: &Message, limits: &Limits, len: usize) -> Result<(), EncodeError> {
    let max = limits.frame_cap();
    if len > max {
        return Err(EncodeError::FrameTooLarge { len, max });
    }
    match msg {
        Message::HandshakeReply(HandshakeReply { outcome: HandshakeOutcome::Ranked(list), .. }) => {
            if list.entries.len() > limits.max_list_len {
                return Err(EncodeError::ListTooLong { len: list.entries.len(), max: limits.max_list_len });
            }
            match first_repeat(&list.entries, &mut DedupScratch::default()) {
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

fn write_payload(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::HandshakeRequest(m) => {
            out.extend_from_slice(&m.request_id.to_be_bytes());
            out.extend_from_slice(&m.salt.to_be_bytes());
            out.push(u8::from(m.load_balance));
            match &m.cluster {
                None => out.push(0),
                Some(name) => {
                    // `encode_with_limits` bounded the length by one byte (unchecked writes truncate).
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
                    // A count past u32::MAX would overflow the frame long before.
                    let count = u32::try_from(list.entries.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&count.to_be_bytes());
                    // Fixed part 14 bytes, plus typical endpoint text.
                    out.reserve(list.entries.len() * 32);
                    for entry in &list.entries {
                        write_entry(entry, out);
                    }
                }
                HandshakeOutcome::Refused(reason) => out.extend_from_slice(&[1, refuse_tag(*reason)]),
            }
        }
        Message::SessionRequest(m) => {
            out.extend_from_slice(&m.request_id.to_be_bytes());
            // Absent: nothing at all, so the frame is what a client without
            // credentials sends. A `Credential` holds at most 4 KiB.
            if let Some(credential) = &m.credential {
                out.extend_from_slice(&(credential.len() as u16).to_be_bytes());
                out.extend_from_slice(credential.as_bytes());
            }
        }
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
    let mut fixed = [0u8; ENTRY_FIXED_LEN];
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
    if endpoint.has_ipv6_host() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_len_is_the_display_len() {
        for text in
            ["a:1", "aos1", "AOS01@aos1:2713", "[::1]:9", "I@[fe80::1]:65535", "h:10", "h:100", "h:1000"]
        {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint_text_len(&endpoint), endpoint.to_string().len(), "{text}");
            let mut out = Vec::new();
            write_endpoint(&endpoint, &mut out);
            assert_eq!(out, endpoint.to_string().as_bytes(), "{text}");
        }
    }
}
