//! The client's [`Connector`]: phase 1 (the ordered handshake) and phase 3
//! (the sorted-list connection) of SPEC.md as a pure state machine.
//!
//! Files, each importing only those before it: `log.rs` (attempt log and
//! errors), `event.rs` (inputs, outputs, state), `context.rs` (what every
//! stage uses: configuration, log, timers, action queue), `handshake.rs`
//! (phase 1: the seed walk), `targets.rs` (phase 3: the ranked-list walk),
//! `round.rs` (the stage of the round and the moves between phases),
//! `connector.rs` (the machine contract).
//!
//! # Driving it
//!
//! [`Connector::new`] starts the first round at once. Then, in a loop:
//!
//! 1. drain [`Connector::poll_action`] to `None` and carry out every action
//!    (send a message, close a transport, report the outcome);
//! 2. wait for the next input or until [`Connector::poll_timeout`];
//! 3. feed a reply or a transport failure to [`Connector::handle_event`], or
//!    call [`Connector::handle_timeout`] once the deadline has passed.
//!
//! Every attempt is named by an [`AttemptId`]; its value is the `request_id`
//! on the wire, so a driver maps a reply back to its attempt by that id or by
//! the transport it used. A reply whose `request_id` differs from its attempt's
//! is malformed and fails the attempt. Replies for unknown, cancelled or
//! finished attempts are ignored (see [`Stats::ignored`]); time that goes
//! backwards is clamped to the latest `now` seen (see [`Stats::clamped`]).
//!
//! # Transports
//!
//! One rule, in one place: every attempt gets exactly one [`Action::Close`],
//! whatever its outcome (a reply, a refusal, a timeout, a lost race, a
//! transport failure, an abandoned round), except the accepted session
//! attempt named by [`Action::Connected`]: its transport is the session.
//! A failed attempt is closed when it ends; the handshake whose list the
//! round walks is closed when that walk ends (before `Connected`, before
//! `RoundFailed`, before `Failed`): the instance that ranked holds a
//! reservation for this client while its connection is open, and the close
//! tells it the client is no longer on its way. Drivers close a transport on
//! `Close` and on nothing else.
//!
//! A decoded message becomes an event through [`Event::from_message`], the
//! one conversion on this side.
//!
//! # Staggered handshakes (RFC 8305)
//!
//! With `attempt_delay`, the handshake to the next seed starts `attempt_delay`
//! after the previous one started, or at once when a pending one fails, while
//! earlier ones stay pending. The first valid reply wins, and the earlier seed
//! wins when two are ready together: a reply held for that decision makes
//! [`Connector::poll_timeout`] return the instant it arrived, and the next
//! [`Connector::handle_timeout`] decides (the exact rule: `handshake.rs`).
//!
//! # Rounds
//!
//! A round is phase 1 and phase 3. A round that ends without a session waits
//! a full-jitter backoff ([`RetryPolicy`](crate::RetryPolicy)) and starts again
//! from phase 1, up to `max_rounds` rounds in all, and within
//! `overall_deadline` when one is set; then [`Action::Failed`] carries a
//! [`ConnectFailure`] that lists every attempt. After a session ends or is lost
//! ([`Action::SessionClosed`]), [`Connector::reconnect`] starts over: the new
//! session is balanced again.
//!
//! # Allocation
//!
//! Once a round's lists are stored, events that start no attempt, timeouts and
//! polls allocate nothing: the action queue, the pending-handshake table, the
//! walk order and the duplicate finder's scratch reuse their capacity.
//! Starting an attempt clones its endpoint (for the action and the log) and,
//! for a handshake, the cluster name; the attempt log grows by doubling.
//!
//! A connected client holds its session and its attempt records, not its
//! last list: the ranked list is the decoder's buffer, dropped when the walk
//! ends, and the buffers a long list grew are given back beyond 128 entries
//! (above AX's 99 instances per environment, so rounds at that size reuse
//! them; the attempt log keeps room for that many records). What a connected
//! Connector holds after a long list is measured by `tests/client_memory.rs`
//! (figures in BENCHMARKS.md).

mod connector;
mod context;
mod event;
mod handshake;
mod log;
mod round;
mod targets;

pub use self::connector::Connector;
pub use self::event::{Action, Event, Opened, State, Stats};
pub use self::log::{
    AttemptId, AttemptOutcome, AttemptRecord, ConnectFailure, FailReason, Malformation, Phase,
};
