//! What a connected `Connector` holds: its session, not its last list. A
//! client of a large cluster may receive a list of a thousand entries and
//! keep its session for hours; the buffers that list needed must not stay.
//!
//! One test, because the counting allocator is shared by the whole binary.

use std::alloc::System;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptRecord, Connector, Event};
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, RankedEntry, RankedList, RejectReason, SessionId, SessionOutcome,
    SessionReply,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn ep(host: String) -> Endpoint {
    Endpoint::new(&host, 2712).expect("test endpoint")
}

fn list(len: usize) -> Vec<RankedEntry> {
    (0..len)
        .map(|i| RankedEntry {
            id: InstanceId(i as u32),
            endpoint: ep(format!("aos-instance-{i:05}.cluster.example")),
            workload: Workload::new(i as u32, 10_000),
        })
        .collect()
}

/// Builds a Connector over two seeds, answers its handshake with a list of
/// `len` entries whose first `rejecting` refuse admission, and lets the next
/// one admit. Returns the connected Connector and the bytes still allocated
/// (allocated minus freed) since just before it was built: its own heap, as
/// everything else made here is dropped by then.
fn connected_after(len: usize, rejecting: usize, base: Instant) -> (Connector, i64) {
    let config = ClientConfig::with_seeds(vec![ep("seed0".into()), ep("seed1".into())]);
    let region = Region::new(GLOBAL);
    let mut reply = Some(list(len));
    let mut c = Connector::new(config, base, 7).expect("valid config");
    let now = base + Duration::from_millis(1);
    let mut connected = false;
    for _ in 0..4 * len + 16 {
        let Some(action) = c.poll_action() else { break };
        let event = match action {
            Action::SendHandshake { attempt, .. } => {
                let entries = reply.take().expect("one handshake: seed 0 answers");
                let outcome = HandshakeOutcome::Ranked(RankedList { stale: false, entries });
                Event::HandshakeReply {
                    attempt,
                    reply: HandshakeReply { request_id: attempt.request_id(), outcome },
                }
            }
            Action::SendSessionRequest { attempt, .. } => {
                let outcome = if (attempt.request_id() as usize) <= rejecting + 1 {
                    SessionOutcome::Rejected(RejectReason::Full)
                } else {
                    SessionOutcome::Accepted { session_id: SessionId(9) }
                };
                Event::SessionReply {
                    attempt,
                    reply: SessionReply { request_id: attempt.request_id(), outcome },
                }
            }
            Action::Connected { .. } => {
                connected = true;
                continue;
            }
            _ => continue,
        };
        c.handle_event(event, now).expect("the event fits");
    }
    assert!(connected, "list of {len}, {rejecting} rejecting: not connected");
    assert_eq!(c.attempts().len(), 1 + rejecting + 1, "one handshake, then the walk");
    let stats = region.change();
    // stats_alloc counts a realloc's growth as allocated and its shrinking as freed.
    let held = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    (c, held)
}

#[test]
fn a_connected_connector_does_not_hold_its_last_list() {
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let (_short, short) = connected_after(8, 0, base);
    let (_long, long) = connected_after(4096, 0, base);
    // The long list's entries alone took 4 096 x (entry + host) bytes, over
    // 200 KB. What may remain is what a list of 128 entries (above AX's 99
    // instances) needs, kept so such rounds allocate nothing: room for that
    // many attempt records and the duplicate finder's scratch (17 B an entry).
    let kept = 128 * (std::mem::size_of::<AttemptRecord>() + 17);
    println!("held: {short} B after 8 entries, {long} B after 4 096 (bound: {kept} B more)");
    assert!(long - short <= kept as i64, "held {short} B after 8 entries, {long} B after 4 096");

    // A walk that went far keeps the record of every attempt (the caller may
    // read them): at most twice their size (the log grows by doubling) and
    // their hosts, and nothing of the list (4 096 x 64 B and more).
    let (walked, far) = connected_after(4096, 200, base);
    let records = walked.attempts().len();
    let bound = 2 * records * (std::mem::size_of::<AttemptRecord>() + 48);
    println!("held: {far} B after a walk of {records} attempts (bound {bound} B)");
    assert!(far - short <= bound as i64, "{far} B held after {records} attempts, more than {bound} B");
}
