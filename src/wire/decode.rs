//! Payload parsing: one frame's payload, whose length the header gave, to
//! one message or one typed error. Every read is bounds-checked; nothing
//! here panics on any input.

use super::dedup::{first_repeat, DedupScratch};
use super::error::DecodeError;
use super::layout::*;
use super::limits::Limits;
use super::message::*;
use crate::endpoint::Endpoint;
use crate::workload::{InstanceId, Workload};

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

    /// The variant a tag names, from a table in tag order.
    fn pick<T: Copy>(&mut self, field: &'static str, variants: &[T]) -> Result<T, DecodeError> {
        let value = self.u8()?;
        variants.get(usize::from(value)).copied().ok_or(DecodeError::UnknownTag { field, value })
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

/// Decodes one payload of type `msg_type`.
pub(crate) fn decode_payload(
    msg_type: u8,
    payload: &[u8],
    limits: &Limits,
    scratch: &mut DedupScratch,
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
                _ => HandshakeOutcome::Refused(r.pick("refuse_reason", &REFUSE_REASONS)?),
            };
            Message::HandshakeReply(HandshakeReply { request_id, outcome })
        }
        msg_type::SESSION_REQUEST => {
            let request_id = r.u64()?;
            // A trailing field: absent when the payload ends here.
            let credential = if r.bytes.is_empty() { None } else { Some(read_credential(&mut r)?) };
            Message::SessionRequest(SessionRequest { request_id, credential })
        }
        msg_type::SESSION_REPLY => {
            let request_id = r.u64()?;
            let outcome = match r.tag("session_outcome", 2)? {
                0 => SessionOutcome::Accepted { session_id: SessionId(r.u64()?) },
                _ => SessionOutcome::Rejected(r.pick("reject_reason", &REJECT_REASONS)?),
            };
            Message::SessionReply(SessionReply { request_id, outcome })
        }
        msg_type::WORKLOAD_QUERY => Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(r.u64()?) }),
        msg_type::WORKLOAD_REPORT => {
            let query_id = QueryId(r.u64()?);
            let id = InstanceId(r.u32()?);
            let role = r.pick("role", &ROLES)?;
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

/// `u16` length (at most [`MAX_CREDENTIAL_LEN`], checked before anything
/// is allocated) then the bytes.
fn read_credential(r: &mut Reader<'_>) -> Result<Credential, DecodeError> {
    let len = usize::from(u16::from_be_bytes(r.array()?));
    if len > MAX_CREDENTIAL_LEN {
        return Err(DecodeError::CredentialTooLong { len, max: MAX_CREDENTIAL_LEN });
    }
    let bytes = r.take(len)?;
    Credential::new(bytes).map_err(|e| DecodeError::CredentialTooLong { len: e.len, max: MAX_CREDENTIAL_LEN })
}

fn read_list(
    r: &mut Reader<'_>,
    limits: &Limits,
    scratch: &mut DedupScratch,
) -> Result<RankedList, DecodeError> {
    let stale = r.bool("stale")?;
    let count = r.u32()?;
    if count as usize > limits.max_list_len {
        return Err(DecodeError::ListTooLong { len: count, max: limits.max_list_len });
    }
    let count = count as usize;
    // Refuse a count the payload cannot hold before allocating for it.
    if count.saturating_mul(ENTRY_FIXED_LEN) > r.bytes.len() {
        return Err(DecodeError::Truncated { msg_type: r.msg_type });
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let fixed: [u8; ENTRY_FIXED_LEN] = r.array()?;
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
    if let Some((index, what)) = first_repeat(&entries, scratch) {
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
