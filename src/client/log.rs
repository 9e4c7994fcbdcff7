//! The attempt log: every attempt's name, phase, target, times and outcome,
//! and the error that lists them all when the Connector gives up.

use std::fmt;
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::wire::{RefuseReason, RejectReason, SessionId};

/// An attempt's opaque name. Its value is the `request_id` of the attempt's
/// request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub(super) u64);

impl AttemptId {
    /// The value sent as the request's `request_id`.
    pub const fn request_id(self) -> u64 {
        self.0
    }

    /// A reply must echo its attempt's request id: the outcome of one under
    /// `request_id` when it does not (malformed), `None` when it does.
    pub(super) fn echo_fault(self, request_id: u64) -> Option<AttemptOutcome> {
        (request_id != self.0)
            .then_some(AttemptOutcome::Malformed(Malformation::RequestIdMismatch { got: request_id }))
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// The phase an attempt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Phase 1: a handshake to a seed.
    Handshake,
    /// Phase 3: a session request to a ranked entry.
    Session,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Handshake => "handshake",
            Phase::Session => "session",
        })
    }
}

/// Why a reply was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformation {
    /// The reply's `request_id` is not the attempt's.
    RequestIdMismatch {
        /// The id the reply carried.
        got: u64,
    },
    /// A session reply to a handshake, or a handshake reply to a session request.
    WrongReplyKind,
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformation::RequestIdMismatch { got } => write!(f, "reply for request {got}"),
            Malformation::WrongReplyKind => f.write_str("reply of the wrong kind"),
        }
    }
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Still waiting for a reply.
    Pending,
    /// The handshake won with a ranked list of this many entries (after
    /// cutting and removing duplicates).
    Ranked {
        /// Entries kept.
        entries: usize,
        /// The instance ranked from an old registry snapshot.
        stale: bool,
    },
    /// Direct mode: the seed answered and is the session target.
    Answered,
    /// A valid handshake reply that lost to an earlier seed ready at the same time.
    Superseded,
    /// The ranked list was empty: nobody can take a session.
    EmptyList,
    /// The instance refused the handshake.
    Refused(RefuseReason),
    /// The reply did not fit the attempt.
    Malformed(Malformation),
    /// The driver reported a transport failure.
    TransportFailed(String),
    /// No reply within the timeout.
    TimedOut,
    /// Stopped while pending: another attempt won, or the round was abandoned.
    Cancelled,
    /// Admission accepted: the session.
    Accepted {
        /// The instance's name for the session.
        session_id: SessionId,
    },
    /// Admission said no.
    Rejected(RejectReason),
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Pending => f.write_str("pending"),
            AttemptOutcome::Ranked { entries, stale: false } => write!(f, "ranked list of {entries}"),
            AttemptOutcome::Ranked { entries, stale: true } => write!(f, "stale ranked list of {entries}"),
            AttemptOutcome::Answered => f.write_str("answered (direct)"),
            AttemptOutcome::Superseded => f.write_str("answered, but an earlier seed won"),
            AttemptOutcome::EmptyList => f.write_str("empty ranked list"),
            AttemptOutcome::Refused(reason) => write!(f, "refused ({reason:?})"),
            AttemptOutcome::Malformed(m) => write!(f, "malformed ({m})"),
            AttemptOutcome::TransportFailed(reason) => write!(f, "transport failed ({reason})"),
            AttemptOutcome::TimedOut => f.write_str("timed out"),
            AttemptOutcome::Cancelled => f.write_str("cancelled"),
            AttemptOutcome::Accepted { session_id } => write!(f, "accepted (session {session_id})"),
            AttemptOutcome::Rejected(reason) => write!(f, "rejected ({reason:?})"),
        }
    }
}

/// One line of the attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The attempt.
    pub attempt: AttemptId,
    /// The round, from 0.
    pub round: u32,
    /// Handshake or session.
    pub phase: Phase,
    /// The seed's index in the configured list (handshake), or the entry's
    /// rank in the ranked list (session).
    pub index: usize,
    /// Where the request went.
    pub endpoint: Endpoint,
    /// When it started, since the connection effort began.
    pub started: Duration,
    /// When it ended, since the connection effort began (`None` while pending).
    pub ended: Option<Duration>,
    /// What happened.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = match self.phase {
            Phase::Handshake => "seed",
            Phase::Session => "rank",
        };
        let ended = self.ended.map_or(String::from("..."), |e| format!("{e:?}"));
        write!(
            f,
            "+{:?}..{ended} round {} {} {} {index} {} {}: {}",
            self.started, self.round, self.attempt, self.phase, self.index, self.endpoint, self.outcome
        )?;
        Ok(())
    }
}

/// Why the Connector gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// Every one of `max_rounds` rounds ended without a session.
    RoundsExhausted,
    /// `overall_deadline` passed first.
    DeadlineExceeded,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailReason::RoundsExhausted => "every round failed",
            FailReason::DeadlineExceeded => "the overall deadline passed",
        })
    }
}

/// No session could be opened: why, and every attempt made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConnectFailure {
    /// Why the Connector gave up.
    pub reason: FailReason,
    /// Rounds started.
    pub rounds: u32,
    /// Every attempt, in the order they started.
    pub attempts: Vec<AttemptRecord>,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no session after {} round(s): {}; {} attempt(s)",
            self.rounds,
            self.reason,
            self.attempts.len()
        )?;
        for record in &self.attempts {
            write!(f, "\n  {record}")?;
        }
        Ok(())
    }
}

/// The attempts of one connection effort. Ids are handed out consecutively,
/// so attempt `id` is `records[id - first_id]`: lookups need no search.
#[derive(Debug)]
pub(super) struct AttemptLog {
    records: Vec<AttemptRecord>,
    next_id: u64,
    first_id: u64,
    /// When the effort (first round or reconnect) began.
    start: Instant,
    /// The records a new effort keeps room for.
    kept: usize,
}

impl AttemptLog {
    /// A log with room for `capacity` records, which gives back what a long
    /// effort grew beyond twice `kept` records when the next effort begins.
    pub(super) fn new(now: Instant, capacity: usize, kept: usize) -> Self {
        AttemptLog { records: Vec::with_capacity(capacity), next_id: 1, first_id: 1, start: now, kept }
    }

    /// Forgets the previous effort's attempts; ids keep growing, so a late
    /// reply for an old attempt never matches a new one. A long walk's
    /// capacity is given back, as the lists' is (only well beyond the kept
    /// length, which each list reserves again).
    pub(super) fn begin_effort(&mut self, now: Instant) {
        self.records.clear();
        if self.records.capacity() > 2 * self.kept {
            self.records.shrink_to(self.kept);
        }
        self.first_id = self.next_id;
        self.start = now;
    }

    pub(super) fn records(&self) -> &[AttemptRecord] {
        &self.records
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    pub(super) fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    pub(super) fn start(
        &mut self,
        round: u32,
        phase: Phase,
        index: usize,
        endpoint: &Endpoint,
        now: Instant,
    ) -> AttemptId {
        let attempt = AttemptId(self.next_id);
        self.next_id += 1;
        self.records.push(AttemptRecord {
            attempt,
            round,
            phase,
            index,
            endpoint: endpoint.clone(),
            started: self.offset(now),
            ended: None,
            outcome: AttemptOutcome::Pending,
        });
        attempt
    }

    fn get_mut(&mut self, attempt: AttemptId) -> Option<&mut AttemptRecord> {
        let index = attempt.0.checked_sub(self.first_id)?;
        self.records.get_mut(usize::try_from(index).ok()?)
    }

    /// Records the outcome of a pending attempt of this effort; `false` (and
    /// nothing changes) when it is unknown or already ended.
    pub(super) fn finish(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) -> bool {
        let ended = self.offset(now);
        match self.get_mut(attempt) {
            Some(record) if record.ended.is_none() => {
                record.outcome = outcome;
                record.ended = Some(ended);
                true
            }
            _ => false,
        }
    }
}
