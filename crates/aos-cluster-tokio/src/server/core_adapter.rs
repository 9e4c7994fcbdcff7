// TEMPORARY until the core lands: the few calls of /work/API-CONTRACT.md that
// today's `Instance` lacks (`Event::from_message`, `from_peer_reply`,
// `Action::SessionOpened`, `ConnectionClosed` ending the session,
// `set_accepting`/`set_max_sessions`/`set_saturated`), emulated on top of it.
// Once the core has them this module is deleted and the server uses
// `Instance` and `instance::Action` directly.

use std::collections::HashMap;
use std::time::Instant;

use aos_cluster::instance::{self, ConnectionId, Instance};
use aos_cluster::registry::Heartbeat;
use aos_cluster::wire::{Message, QueryId, SessionId, SessionOutcome, WorkloadQuery};
use aos_cluster::{ConfigError, Endpoint, InstanceConfig, InstanceId, InstanceStats, UsageError, Workload};

/// `instance::Action` as the contract has it.
#[derive(Debug)]
pub(super) enum Action {
    QueryRegistry { query_id: QueryId, cluster: String },
    QueryPeer { query_id: QueryId, peer: InstanceId, endpoint: Endpoint, query: WorkloadQuery },
    Reply { conn: ConnectionId, message: Message },
    SessionOpened { conn: ConnectionId, session_id: SessionId },
    PublishHeartbeat(Heartbeat),
}

/// `Instance` as the contract has it.
pub(super) struct Machine {
    inner: Instance,
    admin_accepting: bool,
    saturated: bool,
    sessions: HashMap<ConnectionId, SessionId>,
    opened: Option<Action>,
}

impl Machine {
    pub(super) fn new(config: InstanceConfig, now: Instant, seed: u64) -> Result<Self, ConfigError> {
        let admin_accepting = config.accepting;
        let inner = Instance::new(config, now, seed)?;
        Ok(Machine { inner, admin_accepting, saturated: false, sessions: HashMap::new(), opened: None })
    }

    pub(super) fn handle_event(&mut self, event: instance::Event, now: Instant) -> Result<(), UsageError> {
        if let instance::Event::ConnectionClosed { conn } = &event {
            if let Some(session_id) = self.sessions.remove(conn) {
                self.inner.handle_event(instance::Event::SessionEnded { session_id }, now)?;
            }
        }
        self.inner.handle_event(event, now)
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now)
    }

    pub(super) fn poll_action(&mut self) -> Option<Action> {
        if let Some(opened) = self.opened.take() {
            return Some(opened);
        }
        Some(match self.inner.poll_action()? {
            instance::Action::QueryRegistry { query_id, cluster } => {
                Action::QueryRegistry { query_id, cluster }
            }
            instance::Action::QueryPeer { query_id, peer, endpoint, query } => {
                Action::QueryPeer { query_id, peer, endpoint, query }
            }
            instance::Action::Reply { conn, message } => {
                if let Message::SessionReply(reply) = &message {
                    if let SessionOutcome::Accepted { session_id } = reply.outcome {
                        self.sessions.insert(conn, session_id);
                        self.opened = Some(Action::SessionOpened { conn, session_id });
                    }
                }
                Action::Reply { conn, message }
            }
            instance::Action::PublishHeartbeat(heartbeat) => Action::PublishHeartbeat(heartbeat),
        })
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    pub(super) fn set_accepting(&mut self, accepting: bool, now: Instant) {
        self.admin_accepting = accepting;
        self.apply_accepting(now);
    }

    pub(super) fn set_saturated(&mut self, saturated: bool, now: Instant) {
        self.saturated = saturated;
        self.apply_accepting(now);
    }

    fn apply_accepting(&mut self, now: Instant) {
        let effective = self.admin_accepting && !self.saturated;
        let _ = self.inner.handle_event(instance::Event::SetAccepting(effective), now);
    }

    pub(super) fn set_max_sessions(&mut self, max: u32, now: Instant) -> Result<(), UsageError> {
        self.inner.handle_event(instance::Event::SetMaxSessions(max), now)
    }

    pub(super) fn accepting(&self) -> bool {
        self.admin_accepting
    }

    pub(super) fn saturated(&self) -> bool {
        self.saturated
    }

    pub(super) fn workload(&self) -> Workload {
        self.inner.workload()
    }

    pub(super) fn stats(&self) -> &InstanceStats {
        self.inner.stats()
    }

    pub(super) fn id(&self) -> InstanceId {
        self.inner.id()
    }
}

/// `instance::Event::from_message`: frames of an inbound connection.
pub(super) fn from_message(conn: ConnectionId, message: Message) -> Result<instance::Event, Message> {
    match message {
        Message::HandshakeRequest(request) => Ok(instance::Event::HandshakeRequest { conn, request }),
        Message::SessionRequest(request) => Ok(instance::Event::SessionRequest { conn, request }),
        Message::WorkloadQuery(query) => Ok(instance::Event::WorkloadQuery { conn, query }),
        other => Err(other),
    }
}

/// `instance::Event::from_peer_reply`: the frame read back on a peer link.
pub(super) fn from_peer_reply(message: Message) -> Result<instance::Event, Message> {
    match message {
        Message::WorkloadReport(report) => Ok(instance::Event::WorkloadReport { report }),
        other => Err(other),
    }
}
