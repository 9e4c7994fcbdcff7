//! Transcript helpers for the client's `Connector`, in the happy-eyeballs
//! style: `expect(want, now)` advances time to `now` and checks the next
//! action; `expect_idle(now)` checks there is none. The simulated network
//! and its reference model are in `network.rs`, the invariants checked on
//! every run in `invariants.rs`.

mod invariants;
mod network;

pub use invariants::Invariants;
pub use network::*;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, Connector, Event};
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, RankedEntry, RankedList, RefuseReason, RejectReason, SessionId,
    SessionOutcome, SessionReply,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};

/// The one base instant every test time is built from.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    let base = *BASE.get_or_init(Instant::now);
    base
}

/// `base() + ms` milliseconds.
pub fn at(ms: u64) -> Instant {
    base() + Duration::from_millis(ms)
}

/// `name:2712`.
pub fn ep(name: &str) -> Endpoint {
    name.parse().expect("test endpoint")
}

/// The defaults with seeds `s0`, `s1`, ... (`n` of them).
pub fn config(n: usize) -> ClientConfig {
    ClientConfig::with_seeds((0..n).map(|i| ep(&format!("s{i}"))).collect())
}

/// The instance id tests give an endpoint name: the sum of its bytes.
pub fn id_of(name: &str) -> InstanceId {
    InstanceId(name.bytes().map(u32::from).sum())
}

/// A ranked list reply for `attempt`: `(name, connected, max_sessions)`, best first.
pub fn ranked(attempt: AttemptId, entries: &[(&str, u32, u32)]) -> Event {
    let entries = entries
        .iter()
        .map(|&(name, connected, max)| RankedEntry {
            id: id_of(name),
            endpoint: ep(name),
            workload: Workload::new(connected, max),
        })
        .collect();
    handshake(attempt, HandshakeOutcome::Ranked(RankedList { stale: false, entries }))
}

/// A handshake reply with this outcome and the attempt's request id.
pub fn handshake(attempt: AttemptId, outcome: HandshakeOutcome) -> Event {
    Event::HandshakeReply { attempt, reply: HandshakeReply { request_id: attempt.request_id(), outcome } }
}

/// A refusal (`Busy`).
pub fn refused(attempt: AttemptId) -> Event {
    handshake(attempt, HandshakeOutcome::Refused(RefuseReason::Busy))
}

/// A well-formed list under another request's id.
pub fn wrong_id(attempt: AttemptId) -> Event {
    let reply = HandshakeReply {
        request_id: attempt.request_id().wrapping_add(1000),
        outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries: vec![] }),
    };
    Event::HandshakeReply { attempt, reply }
}

/// Admission accepted.
pub fn accepted(attempt: AttemptId, session_id: u64) -> Event {
    Event::SessionReply {
        attempt,
        reply: SessionReply {
            request_id: attempt.request_id(),
            outcome: SessionOutcome::Accepted { session_id: SessionId(session_id) },
        },
    }
}

/// Admission rejected.
pub fn rejected(attempt: AttemptId, reason: RejectReason) -> Event {
    Event::SessionReply {
        attempt,
        reply: SessionReply { request_id: attempt.request_id(), outcome: SessionOutcome::Rejected(reason) },
    }
}

/// The transport failed.
pub fn transport_failed(attempt: AttemptId) -> Event {
    Event::TransportFailed { attempt, reason: "connection refused".into() }
}

/// What a transcript expects next, without the random parts (salts, times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `SendHandshake` to this seed index.
    Handshake(usize),
    /// `SendSessionRequest` to this endpoint name.
    Session(&'static str),
    /// `Close` of this attempt.
    Close(AttemptId),
    /// `Connected` to this endpoint name.
    Connected(&'static str),
    /// `RoundFailed` of this round.
    RoundFailed(u32),
    /// `Failed`.
    Failed,
    /// `SessionClosed`, lost or not.
    SessionClosed { lost: bool },
}

/// Does `action` match `want`?
pub fn matches(action: &Action, want: &Want) -> bool {
    match (action, want) {
        (Action::SendHandshake { seed_index, .. }, Want::Handshake(i)) => seed_index == i,
        (Action::SendSessionRequest { endpoint, .. }, Want::Session(name)) => *endpoint == ep(name),
        (Action::Close { attempt }, Want::Close(a)) => attempt == a,
        (Action::Connected { endpoint, .. }, Want::Connected(name)) => *endpoint == ep(name),
        (Action::RoundFailed { round, .. }, Want::RoundFailed(r)) => round == r,
        (Action::Failed(_), Want::Failed) => true,
        (Action::SessionClosed { lost, .. }, Want::SessionClosed { lost: l }) => lost.is_some() == *l,
        _ => false,
    }
}

/// The attempt an action names, if any.
pub fn attempt_of(action: &Action) -> Option<AttemptId> {
    match action {
        Action::SendHandshake { attempt, .. }
        | Action::SendSessionRequest { attempt, .. }
        | Action::Close { attempt }
        | Action::Connected { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// A Connector under a transcript.
pub struct Transcript {
    /// The machine.
    pub c: Connector,
}

impl Transcript {
    /// A Connector started at `at(0)` with rng seed 7.
    pub fn new(config: ClientConfig) -> Self {
        Transcript { c: Connector::new(config, at(0), 7).expect("valid config") }
    }

    /// Advances to `now`: calls `handle_timeout` when a deadline is due.
    pub fn advance(&mut self, now: Instant) {
        if self.c.poll_timeout().is_some_and(|t| t <= now) {
            self.c.handle_timeout(now);
        }
    }

    /// Delivers `event` at `now`; it must be accepted.
    pub fn event(&mut self, event: Event, now: Instant) {
        self.c.handle_event(event, now).expect("event fits");
    }

    /// Advances to `now` and checks the next action; returns it.
    #[track_caller]
    pub fn expect(&mut self, want: Want, now: Instant) -> Action {
        self.advance(now);
        let action = self.c.poll_action();
        match action {
            Some(action) if matches(&action, &want) => action,
            other => panic!("expected {want:?} at {:?}, got {other:?}", now - base()),
        }
    }

    /// Like [`expect`](Self::expect), returning the action's attempt id.
    #[track_caller]
    pub fn expect_attempt(&mut self, want: Want, now: Instant) -> AttemptId {
        let action = self.expect(want, now);
        attempt_of(&action).expect("the action names an attempt")
    }

    /// Advances to `now` and checks there is no action.
    #[track_caller]
    pub fn expect_idle(&mut self, now: Instant) {
        self.advance(now);
        if let Some(action) = self.c.poll_action() {
            panic!("expected no action at {:?}, got {action:?}", now - base());
        }
    }
}
