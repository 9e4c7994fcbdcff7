//! Admission (SPEC 3.2, 3.5): which session requests become sessions, and the
//! pairing of sessions with connections, which the machine keeps so that no
//! driver has to: a connection holds at most one session, so a second
//! `SessionRequest` on it is rejected with `AlreadyInSession`, and its close
//! ends the session it holds.

use std::collections::BTreeMap;

use super::event::ConnectionId;
use super::stats::AdmissionStats;
use crate::config::InstanceConfig;
use crate::wire::{RejectReason, SessionId, SessionOutcome};
use crate::workload::{Candidate, Role, Workload};

/// The embedder's settings that decide admission, the open sessions and the
/// ids they get.
#[derive(Debug)]
pub(super) struct Admission {
    /// Admin: admitting new sessions ("Reject new clients" off).
    accepting: bool,
    /// The driver is at its connection limit: advertise not accepting.
    saturated: bool,
    max_sessions: u32,
    sessions: Sessions,
    next_session_id: u64,
    stats: AdmissionStats,
}

impl Admission {
    /// As `config` says, handing out session ids from `first_session_id` on.
    pub(super) fn new(config: &InstanceConfig, first_session_id: u64) -> Self {
        Admission {
            accepting: config.accepting,
            saturated: false,
            max_sessions: config.max_sessions,
            sessions: Sessions::default(),
            next_session_id: first_session_id,
            stats: AdmissionStats::default(),
        }
    }

    /// Sessions open: the number of connections holding one.
    pub(super) fn connected(&self) -> u32 {
        self.sessions.count()
    }

    pub(super) fn max_sessions(&self) -> u32 {
        self.max_sessions
    }

    pub(super) fn accepting(&self) -> bool {
        self.accepting
    }

    pub(super) fn saturated(&self) -> bool {
        self.saturated
    }

    /// What peers, the registry and clients are told.
    pub(super) fn advertised_accepting(&self) -> bool {
        self.accepting && !self.saturated
    }

    /// The figures reported to peers and the registry: never `connected >
    /// max_sessions` (after `max_sessions` was lowered, full).
    pub(super) fn workload(&self) -> Workload {
        Workload::new(self.connected().min(self.max_sessions), self.max_sessions)
    }

    /// This instance as a candidate of its own rankings (live figures).
    pub(super) fn own_candidate(&self, role: Role) -> Candidate {
        Candidate {
            role,
            accepting: self.advertised_accepting(),
            workload: Workload::new(self.connected(), self.max_sessions),
        }
    }

    pub(super) fn stats(&self) -> &AdmissionStats {
        &self.stats
    }

    /// Sets the admin setting; whether it changed.
    pub(super) fn set_accepting(&mut self, accepting: bool) -> bool {
        std::mem::replace(&mut self.accepting, accepting) != accepting
    }

    /// Sets the driver's saturation; whether it changed.
    pub(super) fn set_saturated(&mut self, saturated: bool) -> bool {
        std::mem::replace(&mut self.saturated, saturated) != saturated
    }

    /// Sets "Max concurrent sessions" (checked non-zero by the caller);
    /// whether it changed.
    pub(super) fn set_max_sessions(&mut self, max_sessions: u32) -> bool {
        std::mem::replace(&mut self.max_sessions, max_sessions) != max_sessions
    }

    /// Admission is the authority (SPEC 3.2): the ranking was advice.
    /// `denied`: the driver's admission policy refused the request already
    /// (SPEC "Drivers: admission policy"); it is answered, never counted.
    /// An accepted request's session is open on `conn` on return.
    pub(super) fn request(
        &mut self,
        conn: ConnectionId,
        denied: Option<RejectReason>,
        config: &InstanceConfig,
    ) -> SessionOutcome {
        let reject = if self.sessions.holds(conn) {
            self.stats.rejected_already_in_session += 1;
            Some(RejectReason::AlreadyInSession)
        } else if let Some(reason) = denied {
            self.stats.rejected_by_policy += 1;
            Some(reason)
        } else if config.role == Role::LoadBalancerOnly {
            Some(RejectReason::NotServing)
        } else if !self.accepting {
            Some(RejectReason::Draining)
        } else if self.connected() >= self.max_sessions {
            Some(RejectReason::Full)
        } else if self.sessions.len() >= config.limits.max_tracked_sessions {
            Some(RejectReason::Busy)
        } else {
            None
        };
        match reject {
            Some(reason) => {
                self.stats.sessions_rejected += 1;
                SessionOutcome::Rejected(reason)
            }
            None => {
                let session_id = SessionId(self.next_session_id);
                self.next_session_id = self.next_session_id.wrapping_add(1);
                self.sessions.open(conn, session_id);
                self.stats.sessions_accepted += 1;
                SessionOutcome::Accepted { session_id }
            }
        }
    }

    /// The application ended session `id` (unknown or repeated: ignored).
    pub(super) fn ended(&mut self, id: SessionId) {
        if self.sessions.end(id) {
            self.stats.sessions_ended += 1;
        } else {
            self.stats.ignored_session_ends += 1;
        }
    }

    /// Connection `conn` closed: the session it holds, if any, ends.
    pub(super) fn connection_closed(&mut self, conn: ConnectionId) {
        if self.sessions.close_connection(conn) {
            self.stats.sessions_ended += 1;
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.sessions.heap_bytes()
    }
}

/// The open sessions, each held by one connection. `connected` is the size
/// of this table, never a separate counter.
#[derive(Debug, Default)]
struct Sessions {
    by_conn: BTreeMap<ConnectionId, SessionId>,
    by_id: BTreeMap<SessionId, ConnectionId>,
}

impl Sessions {
    fn count(&self) -> u32 {
        u32::try_from(self.by_conn.len()).unwrap_or(u32::MAX)
    }

    fn len(&self) -> usize {
        self.by_conn.len()
    }

    fn holds(&self, conn: ConnectionId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    fn open(&mut self, conn: ConnectionId, id: SessionId) {
        self.by_conn.insert(conn, id);
        self.by_id.insert(id, conn);
    }

    /// Ends the session `conn` holds, if any.
    fn close_connection(&mut self, conn: ConnectionId) -> bool {
        let Some(id) = self.by_conn.remove(&conn) else { return false };
        self.by_id.remove(&id);
        true
    }

    /// Ends session `id`, if open.
    fn end(&mut self, id: SessionId) -> bool {
        let Some(conn) = self.by_id.remove(&id) else { return false };
        self.by_conn.remove(&conn);
        true
    }

    fn heap_bytes(&self) -> usize {
        // Two maps, each entry about twice its payload in a B-tree.
        self.by_conn.len() * 4 * (std::mem::size_of::<ConnectionId>() + std::mem::size_of::<SessionId>())
    }
}
