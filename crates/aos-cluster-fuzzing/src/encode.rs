//! Fuzz body for the `encode` target: an arbitrary message under arbitrary
//! limits, both drawn from the input (see
//! [`EncodeCase::parse`](crate::encode::EncodeCase::parse)). Checked:
//! - encoding succeeds exactly when a decoder with the same limits gives the
//!   message back from the frame (and nothing more, and `finish()` is `Ok`);
//! - a refused message leaves the output buffer as it was, and the error is
//!   the one the decoder gives for the bytes a careless writer would send for
//!   that message (the unchecked frame): `FrameTooLarge` is the decoder's
//!   `Oversized`, `ListTooLong`, `DuplicateEntry` and `ConnectedAboveMax`
//!   are the decoder's own; `ClusterNameTooLong` has no frame at all, and
//!   what its truncated bytes decode to is never the message;
//! - [`entries_that_fit`](aos_cluster::wire::entries_that_fit) is exact: a ranked list cut to it encodes (unless
//!   it repeats an entry), one more entry does not.

use arbitrary::{Arbitrary, Unstructured};

use aos_cluster::endpoint::{Endpoint, MAX_HOST_LEN, MAX_INSTANCE_LEN};
use aos_cluster::wire::{
    encode_with_limits, entries_that_fit, write_frame_unchecked, DecodeError, Decoder, EncodeError,
    HandshakeOutcome, HandshakeReply, HandshakeRequest, Limits, Message, RankedEntry, RankedList,
    RefuseReason, RejectReason, SessionOutcome, SessionReply, SessionRequest, WorkloadQuery, WorkloadReport,
    DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_LIST_LEN, HEADER_LEN, MAX_CLUSTER_NAME_LEN,
};
use aos_cluster::workload::{InstanceId, Workload};

/// Most entries a generated ranked list holds: enough for maximal hosts to
/// pass the default frame limit (193 fit), few enough to keep runs fast.
/// List limits are drawn around the list's length, so `ListTooLong` needs no
/// list past the default 1024.
const MAX_ENTRIES: usize = 300;

/// Hosts that differ in case or spelling but name one target, and others.
const HOSTS: [&str; 9] =
    ["aos1", "AOS1", "aos2", "10.0.0.7", "::1", "0:0::1", "FE80::1", "fe80::1", "db.example"];
/// Instance labels, including two spellings of one name.
const INSTANCES: [Option<&str>; 4] = [None, Some("AOS01"), Some("aos01"), Some("B")];

/// One message and the limits to encode it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeCase {
    /// The message.
    pub message: Message,
    /// The limits encoder and decoder share.
    pub limits: Limits,
}

impl EncodeCase {
    /// Builds a case from fuzz bytes. Lists come from a small host pool (so
    /// targets repeat in several spellings) or are long runs of distinct,
    /// possibly maximal host names (so frames reach their limit); limits are
    /// the defaults, arbitrary, unbounded, or within a few bytes (entries)
    /// of what the message needs, so both sides of every bound are reached.
    pub fn parse(data: &[u8]) -> arbitrary::Result<Self> {
        let mut u = Unstructured::new(data);
        let message = arbitrary_message(&mut u)?;
        let mut frame = Vec::new();
        write_frame_unchecked(&message, &mut frame);
        let payload_len = frame.len() - HEADER_LEN;
        let list_len = match &message {
            Message::HandshakeReply(HandshakeReply { outcome: HandshakeOutcome::Ranked(list), .. }) => {
                list.entries.len()
            }
            _ => 0,
        };
        let max_frame_len = match u.int_in_range(0u8..=3)? {
            0 => DEFAULT_MAX_FRAME_LEN,
            1 => usize::from(u.arbitrary::<u16>()?),
            2 => near(payload_len, u.int_in_range(-3i8..=3)?),
            _ => usize::MAX,
        };
        let max_list_len = match u.int_in_range(0u8..=3)? {
            0 => DEFAULT_MAX_LIST_LEN,
            1 => usize::from(u.arbitrary::<u16>()? % 2048),
            2 => near(list_len, u.int_in_range(-2i8..=2)?),
            _ => usize::MAX,
        };
        let limits = Limits::default().with_max_frame_len(max_frame_len).with_max_list_len(max_list_len);
        Ok(EncodeCase { message, limits })
    }
}

fn near(value: usize, delta: i8) -> usize {
    value.saturating_add_signed(isize::from(delta))
}

fn arbitrary_message(u: &mut Unstructured<'_>) -> arbitrary::Result<Message> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => Message::HandshakeRequest(HandshakeRequest {
            request_id: u.arbitrary()?,
            salt: u.arbitrary()?,
            load_balance: u.arbitrary()?,
            cluster: arbitrary_cluster(u)?,
        }),
        1 | 2 => Message::HandshakeReply(HandshakeReply {
            request_id: u.arbitrary()?,
            outcome: HandshakeOutcome::Ranked(RankedList {
                stale: u.arbitrary()?,
                entries: arbitrary_entries(u)?,
            }),
        }),
        3 => Message::HandshakeReply(HandshakeReply {
            request_id: u.arbitrary()?,
            outcome: HandshakeOutcome::Refused(RefuseReason::arbitrary(u)?),
        }),
        4 => {
            Message::SessionRequest(SessionRequest { request_id: u.arbitrary()?, credential: u.arbitrary()? })
        }
        5 => Message::SessionReply(SessionReply {
            request_id: u.arbitrary()?,
            outcome: match u.arbitrary()? {
                true => SessionOutcome::Accepted { session_id: u.arbitrary()? },
                false => SessionOutcome::Rejected(RejectReason::arbitrary(u)?),
            },
        }),
        6 => Message::WorkloadQuery(WorkloadQuery { query_id: u.arbitrary()? }),
        _ => Message::WorkloadReport(WorkloadReport::arbitrary(u)?),
    })
}

/// Absent, arbitrary text, or a name around the 255-byte cap (in one- or
/// two-byte characters, so the cap falls inside a character too).
fn arbitrary_cluster(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<String>> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        _ => {
            let unit = if u.arbitrary()? { "é" } else { "c" };
            let count = u.int_in_range(
                MAX_CLUSTER_NAME_LEN / unit.len() - 2..=MAX_CLUSTER_NAME_LEN / unit.len() + 2,
            )?;
            Some(unit.repeat(count))
        }
    })
}

fn arbitrary_entries(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<RankedEntry>> {
    if u.arbitrary()? {
        // From the pool: repeats of ids and targets are common.
        let count = u.int_in_range(0..=12)?;
        (0..count)
            .map(|_| {
                let host = *u.choose(&HOSTS)?;
                let instance = *u.choose(&INSTANCES)?;
                let port = *u.choose(&[1, 2712, 65535])?;
                let endpoint = endpoint(instance, host, port)?;
                Ok(RankedEntry {
                    id: InstanceId(u.int_in_range(0..=15)?),
                    endpoint,
                    workload: u.arbitrary()?,
                })
            })
            .collect()
    } else {
        // Distinct hosts of one length (up to the longest), then perhaps one
        // repeat in another spelling: long frames around the limits.
        let count = u.int_in_range(0..=MAX_ENTRIES)?;
        let host_len = u.int_in_range(6..=MAX_HOST_LEN)?;
        let label = match u.int_in_range(0u8..=2)? {
            0 => None,
            1 => Some("AOS01".to_owned()),
            _ => Some("I".repeat(MAX_INSTANCE_LEN)),
        };
        let port = u.int_in_range(1..=u16::MAX)?;
        let workload = Workload::arbitrary(u)?;
        let mut entries = (0..count)
            .map(|i| {
                let host = format!("h{i:05}")
                    .chars()
                    .chain(std::iter::repeat('x'))
                    .take(host_len)
                    .collect::<String>();
                Ok(RankedEntry {
                    id: InstanceId(i as u32),
                    endpoint: endpoint(label.as_deref(), &host, port)?,
                    workload,
                })
            })
            .collect::<arbitrary::Result<Vec<_>>>()?;
        if count > 0 && u.arbitrary()? {
            let (from, to) = (u.choose_index(count)?, u.choose_index(count)?);
            let original = entries[from].clone();
            entries[to] = match u.int_in_range(0u8..=2)? {
                // The same target, upper case and relabelled.
                0 => RankedEntry {
                    id: InstanceId(u32::MAX - to as u32),
                    endpoint: endpoint(Some("Z"), &original.endpoint.host().to_ascii_uppercase(), port)?,
                    ..original
                },
                // The same id at another target.
                1 => RankedEntry { endpoint: endpoint(None, "other", port)?, ..original },
                _ => original,
            };
        }
        Ok(entries)
    }
}

fn endpoint(instance: Option<&str>, host: &str, port: u16) -> arbitrary::Result<Endpoint> {
    Endpoint::with_instance(instance, host, port).map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// Checks one input as described in the module docs.
pub fn encode(data: &[u8]) {
    let Ok(case) = EncodeCase::parse(data) else { return };
    check_case(&case);
    if let Message::HandshakeReply(HandshakeReply { request_id, outcome: HandshakeOutcome::Ranked(list) }) =
        &case.message
    {
        check_cut(*request_id, list, &case.limits);
    }
}

fn check_case(case: &EncodeCase) {
    let EncodeCase { message, limits } = case;
    let prefix = [0xa5, 0x5a];
    let mut out = prefix.to_vec();
    let result = encode_with_limits(message, limits, &mut out);
    let mut unchecked = Vec::new();
    write_frame_unchecked(message, &mut unchecked);
    let mut decoder = Decoder::with_limits(*limits);
    decoder.feed(&unchecked);
    let decoded = decoder.next();
    match result {
        Ok(()) => {
            assert_eq!(&out[..prefix.len()], &prefix, "encode touched what was in the buffer");
            assert_eq!(&out[prefix.len()..], &unchecked[..], "checked and unchecked frames differ");
            assert_eq!(decoded, Ok(Some(message.clone())), "an encoded frame did not decode to its message");
            assert_eq!(decoder.next(), Ok(None));
            assert_eq!(decoder.finish(), Ok(()));
        }
        Err(err) => {
            assert_eq!(out, prefix, "a refused message changed the buffer");
            assert_ne!(
                decoded,
                Ok(Some(message.clone())),
                "the decoder takes what the encoder refused: {err}"
            );
            let expected = match err {
                EncodeError::ClusterNameTooLong { len } => {
                    let Message::HandshakeRequest(HandshakeRequest { cluster: Some(name), .. }) = message
                    else {
                        panic!("ClusterNameTooLong for {message:?}");
                    };
                    assert!(len == name.len() && len > MAX_CLUSTER_NAME_LEN, "{err}");
                    return;
                }
                EncodeError::FrameTooLarge { len, max } => {
                    assert_eq!(len, unchecked.len() - HEADER_LEN, "FrameTooLarge names another length");
                    let len = u32::try_from(len).expect("a payload under 4 GiB");
                    DecodeError::Oversized { len, max }
                }
                EncodeError::ListTooLong { len, max } => DecodeError::ListTooLong {
                    len: u32::try_from(len).expect("a list under 4 G entries"),
                    max,
                },
                EncodeError::DuplicateEntry { index, what } => DecodeError::DuplicateEntry { index, what },
                EncodeError::ConnectedAboveMax { connected, max_sessions } => {
                    DecodeError::ConnectedAboveMax { connected, max_sessions }
                }
                other => panic!("an encode error this body does not know: {other}"),
            };
            assert_eq!(decoded, Err(expected), "the decoder refuses differently from the encoder");
        }
    }
}

/// `entries_that_fit` is exact: the cut encodes unless it repeats an entry;
/// one more entry is refused for its size or count, whatever it repeats.
fn check_cut(request_id: u64, list: &RankedList, limits: &Limits) {
    let fit = entries_that_fit(&list.entries, limits);
    assert!(fit <= list.entries.len() && fit <= limits.max_list_len);
    let reply = |n: usize| {
        Message::HandshakeReply(HandshakeReply {
            request_id,
            outcome: HandshakeOutcome::Ranked(RankedList {
                stale: list.stale,
                entries: list.entries[..n].to_vec(),
            }),
        })
    };
    let mut out = Vec::new();
    match encode_with_limits(&reply(fit), limits, &mut out) {
        Ok(()) | Err(EncodeError::DuplicateEntry { .. }) => {}
        // Below 14 bytes not even the empty reply fits; `entries_that_fit` says 0.
        Err(EncodeError::FrameTooLarge { len: 14, max }) if fit == 0 && max < 14 => {}
        Err(err) => panic!("a list cut to entries_that_fit ({fit}) is refused: {err}"),
    }
    if fit < list.entries.len() {
        match encode_with_limits(&reply(fit + 1), limits, &mut out) {
            Err(EncodeError::FrameTooLarge { .. } | EncodeError::ListTooLong { .. }) => {}
            other => panic!("one entry more than entries_that_fit ({fit}) gives {other:?}"),
        }
    }
}
