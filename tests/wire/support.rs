//! Frames built by hand and decoding helpers (whole, split, one at a time).

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId, Workload};

pub fn frame_of(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out).expect("valid message encodes");
    out
}

/// Builds a frame by hand, so error cases do not depend on the encoder.
pub fn raw_frame(version: u8, msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![version, msg_type];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn raw_entry(id: u32, connected: u32, max: u32, endpoint: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [id, connected, max] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
    out.extend_from_slice(endpoint.as_bytes());
    out
}

pub fn raw_ranked(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = 77u64.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        payload.extend_from_slice(e);
    }
    raw_frame(1, 2, &payload)
}

/// Decodes `bytes` fed in one piece; collects until `Ok(None)` or a fatal error.
pub fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Result<Message, DecodeError>> {
    decoder.feed(bytes);
    drain(decoder)
}

pub fn drain(decoder: &mut Decoder) -> Vec<Result<Message, DecodeError>> {
    let mut out = Vec::new();
    loop {
        match decoder.next() {
            Ok(None) => return out,
            Ok(Some(m)) => out.push(Ok(m)),
            Err(e) => {
                let fatal = e.is_fatal();
                out.push(Err(e));
                if fatal {
                    return out;
                }
            }
        }
    }
}

pub fn decode_one(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut decoder = Decoder::new();
    let mut results = decode_all(&mut decoder, bytes);
    assert_eq!(results.len(), 1, "expected exactly one result from {bytes:?}: {results:?}");
    results.pop().unwrap()
}

/// Feeds `bytes` cut at `cuts` (positions, any order), draining after each piece.
pub fn decode_split(bytes: &[u8], cuts: &[usize], limits: Limits) -> Vec<Result<Message, DecodeError>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut decoder = Decoder::with_limits(limits);
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        decoder.feed(&bytes[at..cut]);
        at = cut;
        let batch = drain(&mut decoder);
        let fatal = batch.last().is_some_and(|r| r.as_ref().is_err_and(DecodeError::is_fatal));
        out.extend(batch);
        if fatal {
            break;
        }
        assert!(decoder.buffered() < HEADER_LEN + limits.max_frame_len);
    }
    out
}

pub fn long_endpoint(i: usize) -> Endpoint {
    let host = format!("{i:04}{}", "h".repeat(249));
    Endpoint::with_instance(Some(&"I".repeat(64)), &host, 65535).unwrap()
}

pub fn reply_with(entries: Vec<RankedEntry>) -> Message {
    Message::HandshakeReply(HandshakeReply {
        request_id: 1,
        outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries }),
    })
}

pub fn entry(id: u32, endpoint: Endpoint) -> RankedEntry {
    RankedEntry { id: InstanceId(id), endpoint, workload: Workload::new(0, 1) }
}

pub fn ranked_payload_len(entries: &[RankedEntry]) -> usize {
    14 + entries.iter().map(|e| 14 + e.endpoint.to_string().len()).sum::<usize>()
}
