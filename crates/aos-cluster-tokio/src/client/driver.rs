//! The dispatch both clients share: one connect's [`Connector`], the table
//! of its attempts and their transports, and the translation between the
//! machine's actions and events and the I/O a client does.
//!
//! A client brings its own I/O as an [`AttemptIo`] (tokio tasks for the
//! async client, one thread per attempt for the blocking one) and loops:
//! [`Driver::dispatch`] until it returns the outcome, then waits for an
//! attempt's result ([`Driver::report`]) or until [`Driver::wake`]
//! ([`Driver::timeout`]). Everything else, which action starts or closes
//! what, which transport becomes the session, how a reply becomes an event,
//! and where a ranked entry is not allowed to lead, is decided here once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, Connector, Event};
use aos_cluster::wire::Message;
use aos_cluster::{ClientConfig, Endpoint};

use super::{ClientOptions, ConnectError, SessionInfo};
use crate::now;

/// How long a client waits when the machine names no deadline: never in a
/// state a connect waits in, but an idle loop must not spin.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// A client's way of running attempts. The driver calls each method when
/// the machine says so, and only then.
pub(crate) trait AttemptIo {
    /// Starts `attempt`: open a transport to `endpoint`, send `message`,
    /// read one reply frame, stopping by `deadline` (the machine's own for
    /// the attempt), and hand the result to [`Driver::report`]. An `Err` is
    /// the reason the attempt failed before it began.
    fn start(
        &mut self,
        attempt: AttemptId,
        endpoint: Endpoint,
        message: Message,
        deadline: Instant,
    ) -> Result<(), String>;

    /// The machine is done with `attempt`: stop its I/O and close any
    /// transport still held for it.
    fn close(&mut self, attempt: AttemptId);

    /// `attempt`'s transport became the session: forget the attempt without
    /// closing anything.
    fn keep(&mut self, attempt: AttemptId);
}

/// How a connect ended: the session's transport with its details, or why
/// there is none.
pub(crate) type Outcome<S> = Result<(S, SessionInfo), ConnectError>;

/// One connect: the machine, and the attempts it has not closed yet.
/// `S` is the client's transport type.
pub(crate) struct Driver<'a, S> {
    machine: Connector,
    config: &'a ClientConfig,
    options: &'a ClientOptions,
    started: Instant,
    /// Attempts started and not yet closed by the machine.
    live: BTreeSet<AttemptId>,
    /// Transports whose reply came, kept until the machine closes them or
    /// one becomes the session.
    open: BTreeMap<AttemptId, S>,
}

impl<'a, S> Driver<'a, S> {
    /// The machine for `config`, seeded with `rng_seed`, with the options'
    /// credential: its first handshake is queued.
    pub(crate) fn new(
        config: &'a ClientConfig,
        options: &'a ClientOptions,
        rng_seed: u64,
    ) -> Result<Self, ConnectError> {
        let started = now();
        let mut machine = Connector::new(config.clone(), started, rng_seed)?;
        machine.set_credential(options.credential.clone());
        Ok(Driver { machine, config, options, started, live: BTreeSet::new(), open: BTreeMap::new() })
    }

    /// Carries out every queued action through `io`; `Some` once the connect
    /// is over (a session, or the machine gave up).
    pub(crate) fn dispatch(&mut self, io: &mut impl AttemptIo) -> Option<Outcome<S>> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendHandshake { attempt, endpoint, message, deadline, .. } => {
                    self.start(io, attempt, endpoint, message, deadline);
                }
                Action::SendSessionRequest { attempt, endpoint, message, deadline, .. } => {
                    match self.options.refuse_target(self.config, &endpoint) {
                        Some(reason) => self.feed(Event::TransportFailed { attempt, reason }),
                        None => self.start(io, attempt, endpoint, message, deadline),
                    }
                }
                Action::Close { attempt } => {
                    if self.live.remove(&attempt) {
                        io.close(attempt);
                    }
                    self.open.remove(&attempt);
                }
                Action::Connected { attempt, endpoint, instance, session_id } => {
                    self.live.remove(&attempt);
                    io.keep(attempt);
                    // The accepting reply came with its transport, stored just before it was fed.
                    let Some(stream) = self.open.remove(&attempt) else {
                        unreachable!("Connected names an attempt whose reply came on its transport");
                    };
                    let info = SessionInfo {
                        instance,
                        endpoint,
                        session_id,
                        time_to_session: now().saturating_duration_since(self.started),
                        attempts: self.machine.attempts().to_vec(),
                    };
                    return Some(Ok((stream, info)));
                }
                Action::RoundFailed { round, retry_at } => {
                    let backoff = retry_at.saturating_duration_since(now());
                    tracing::debug!(round, ?backoff, "round failed; backing off");
                }
                Action::Failed(error) => return Some(Err(error.into())),
                // A session never closes inside `connect`: it returns at `Connected`.
                other => tracing::debug!(action = ?other, "not for this driver"),
            }
        }
        None
    }

    /// An attempt's reply, or why there is none, with its transport when one
    /// was opened. A report for an attempt the machine closed meanwhile is
    /// moot: its transport is dropped, which closes it.
    pub(crate) fn report(&mut self, attempt: AttemptId, reply: Result<Message, String>, stream: Option<S>) {
        if !self.live.contains(&attempt) {
            return;
        }
        if let Some(stream) = stream {
            self.open.insert(attempt, stream);
        }
        self.feed(reply_event(attempt, reply));
    }

    /// The instant to wake at when no attempt reports first.
    pub(crate) fn wake(&self) -> Instant {
        self.machine.poll_timeout().unwrap_or_else(|| now() + IDLE_WAKE)
    }

    /// The wake instant passed.
    pub(crate) fn timeout(&mut self) {
        self.machine.handle_timeout(now());
    }

    fn start(
        &mut self,
        io: &mut impl AttemptIo,
        attempt: AttemptId,
        endpoint: Endpoint,
        message: Message,
        deadline: Instant,
    ) {
        self.live.insert(attempt);
        if let Err(reason) = io.start(attempt, endpoint, message, deadline) {
            self.feed(Event::TransportFailed { attempt, reason });
        }
    }

    fn feed(&mut self, event: Event) {
        // Errs only for a session end without a session; this driver sends none.
        if let Err(e) = self.machine.handle_event(event, now()) {
            tracing::debug!(error = %e, "event refused");
        }
    }
}

/// What an attempt's reply (or its absence) means to the machine: a reply
/// through `Event::from_message`, anything else a failed transport.
fn reply_event(attempt: AttemptId, reply: Result<Message, String>) -> Event {
    match reply.and_then(|message| Event::from_message(attempt, message).map_err(|e| e.to_string())) {
        Ok(event) => event,
        Err(reason) => Event::TransportFailed { attempt, reason },
    }
}

#[cfg(test)]
mod tests {
    use aos_cluster::client::AttemptOutcome;
    use aos_cluster::wire::{
        HandshakeOutcome, HandshakeReply, RankedEntry, RankedList, SessionId, SessionOutcome, SessionReply,
    };
    use aos_cluster::{InstanceId, Workload};

    use super::*;
    use crate::client::AllowList;

    /// Records what the driver asked for, in order.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        /// The last attempt started, with its message and deadline.
        started: Option<(AttemptId, Message, Instant)>,
    }

    impl AttemptIo for Recorder {
        fn start(
            &mut self,
            attempt: AttemptId,
            endpoint: Endpoint,
            message: Message,
            deadline: Instant,
        ) -> Result<(), String> {
            self.calls.push(format!("start {attempt} {endpoint}"));
            self.started = Some((attempt, message, deadline));
            Ok(())
        }

        fn close(&mut self, attempt: AttemptId) {
            self.calls.push(format!("close {attempt}"));
        }

        fn keep(&mut self, attempt: AttemptId) {
            self.calls.push(format!("keep {attempt}"));
        }
    }

    fn entry(id: u32, endpoint: &str) -> RankedEntry {
        let workload = Workload { connected: 0, max_sessions: 10 };
        RankedEntry { id: InstanceId(id), endpoint: endpoint.parse().unwrap(), workload }
    }

    /// A refused target never reaches the I/O (no start, no close); the
    /// winning handshake's transport is closed when the walk ends and the
    /// accepted one is kept; a report for an attempt never started is moot.
    #[test]
    fn dispatch_starts_closes_and_keeps_only_what_the_machine_says() {
        let config = ClientConfig::with_seeds(vec!["seed:2712".parse().unwrap()]);
        let options = ClientOptions::new().with_allow_list(AllowList::parse(["10.0.0.0/8"]).unwrap());
        let mut driver: Driver<'_, &str> = Driver::new(&config, &options, 7).unwrap();
        let mut io = Recorder::default();
        assert!(driver.dispatch(&mut io).is_none());
        let (handshake, message, deadline) = io.started.take().expect("a handshake");
        assert!(matches!(message, Message::HandshakeRequest(_)), "{message:?}");
        assert!(deadline > driver.started, "the action's deadline reaches the I/O");
        let list = RankedList {
            stale: false,
            entries: vec![entry(1, "evil.example:2712"), entry(2, "10.0.0.2:2712")],
        };
        let reply =
            HandshakeReply { request_id: handshake.request_id(), outcome: HandshakeOutcome::Ranked(list) };
        driver.report(handshake, Ok(Message::HandshakeReply(reply)), Some("handshake transport"));
        assert!(driver.dispatch(&mut io).is_none());
        let (session, message, _) = io.started.take().expect("a session request");
        assert!(matches!(message, Message::SessionRequest(_)), "{message:?}");
        let skipped = driver.machine.attempts()[1].attempt;
        driver.report(skipped, Err("late".into()), Some("stray transport"));
        assert_eq!(driver.open.len(), 1, "only the handshake's transport is held");
        let outcome = SessionOutcome::Accepted { session_id: SessionId(5) };
        let reply = SessionReply { request_id: session.request_id(), outcome };
        driver.report(session, Ok(Message::SessionReply(reply)), Some("session transport"));
        let (stream, info) = driver.dispatch(&mut io).expect("over").expect("a session");
        assert_eq!(stream, "session transport");
        assert_eq!(info.instance(), Some(InstanceId(2)));
        assert_eq!(
            io.calls,
            [
                format!("start {handshake} seed:2712"),
                format!("start {session} 10.0.0.2:2712"),
                format!("close {handshake}"),
                format!("keep {session}"),
            ]
        );
        let outcome = &info.attempts()[1].outcome;
        let AttemptOutcome::TransportFailed(reason) = outcome else { panic!("{outcome:?}") };
        assert_eq!(reason, "evil.example:2712 is outside the allow-list; skipped");
        assert!(driver.open.is_empty() && driver.live.is_empty(), "nothing left behind");
    }
}
