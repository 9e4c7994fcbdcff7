//! Admission (SPEC 3.2, 3.5): which session requests become sessions, and the
//! pairing of sessions with connections, which the machine keeps so that no
//! driver has to.

use std::collections::BTreeMap;

use super::event::{Action, ConnectionId};
use super::Instance;
use crate::wire::{
    HandshakeOutcome, Message, RankedEntry, RankedList, RejectReason, SessionId, SessionOutcome,
    SessionReply, SessionRequest,
};
use crate::workload::Role;

/// The open sessions, each held by one connection. `connected` is the size
/// of this table, never a separate counter.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_conn: BTreeMap<ConnectionId, SessionId>,
    by_id: BTreeMap<SessionId, ConnectionId>,
}

impl Sessions {
    pub(super) fn count(&self) -> u32 {
        u32::try_from(self.by_conn.len()).unwrap_or(u32::MAX)
    }

    pub(super) fn len(&self) -> usize {
        self.by_conn.len()
    }

    pub(super) fn holds(&self, conn: ConnectionId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    fn open(&mut self, conn: ConnectionId, id: SessionId) {
        self.by_conn.insert(conn, id);
        self.by_id.insert(id, conn);
    }

    /// Ends the session `conn` holds, if any.
    pub(super) fn close_connection(&mut self, conn: ConnectionId) -> bool {
        let Some(id) = self.by_conn.remove(&conn) else { return false };
        self.by_id.remove(&id);
        true
    }

    /// Ends session `id`, if open.
    pub(super) fn end(&mut self, id: SessionId) -> bool {
        let Some(conn) = self.by_id.remove(&id) else { return false };
        self.by_conn.remove(&conn);
        true
    }

    pub(super) fn heap_bytes(&self) -> usize {
        // Two maps, each entry about twice its payload in a B-tree.
        self.by_conn.len() * 4 * (std::mem::size_of::<ConnectionId>() + std::mem::size_of::<SessionId>())
    }
}

impl Instance {
    /// Admission is the authority (SPEC 3.2): the ranking was advice.
    /// `denied`: the driver's admission policy refused the request already
    /// (SPEC "Drivers: admission policy"); it is answered, never counted.
    pub(super) fn on_session_request(
        &mut self,
        conn: ConnectionId,
        request: SessionRequest,
        denied: Option<RejectReason>,
    ) {
        let reject = if self.sessions.holds(conn) {
            self.stats.rejected_already_in_session += 1;
            Some(RejectReason::AlreadyInSession)
        } else if let Some(reason) = denied {
            self.stats.rejected_by_policy += 1;
            Some(reason)
        } else if self.config.role == Role::LoadBalancerOnly {
            Some(RejectReason::NotServing)
        } else if !self.accepting {
            Some(RejectReason::Draining)
        } else if self.connected() >= self.max_sessions {
            Some(RejectReason::Full)
        } else if self.sessions.len() >= self.config.limits.max_tracked_sessions {
            Some(RejectReason::Busy)
        } else {
            None
        };
        let outcome = match reject {
            Some(reason) => {
                self.stats.sessions_rejected += 1;
                SessionOutcome::Rejected(reason)
            }
            None => {
                let session_id = SessionId(self.next_session_id);
                self.next_session_id = self.next_session_id.wrapping_add(1);
                self.sessions.open(conn, session_id);
                self.herd.landed_here(conn, self.now, self.config.reservation_ttl, &mut self.stats);
                self.stats.sessions_accepted += 1;
                SessionOutcome::Accepted { session_id }
            }
        };
        let message = Message::SessionReply(SessionReply { request_id: request.request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
        if let SessionOutcome::Accepted { session_id } = outcome {
            self.actions.push_back(Action::SessionOpened { conn, session_id });
        }
    }

    pub(super) fn on_session_ended(&mut self, session_id: SessionId) {
        if self.sessions.end(session_id) {
            self.stats.sessions_ended += 1;
        } else {
            self.stats.ignored_session_ends += 1;
        }
    }

    pub(super) fn on_connection_closed(&mut self, conn: ConnectionId) {
        if self.sessions.close_connection(conn) {
            self.stats.sessions_ended += 1;
        }
        self.herd.release(conn, self.now, &mut self.stats);
        let before = self.pending.len();
        self.pending.retain(|p| p.conn != conn);
        self.stats.abandoned_handshakes += (before - self.pending.len()) as u64;
    }

    /// Standalone or `load_balance: false`: the answering instance is the
    /// target, itself alone if it can admit by its live figures, else an
    /// empty list (which the client treats as a refusal).
    pub(super) fn direct_outcome(&mut self) -> HandshakeOutcome {
        self.stats.direct_replies += 1;
        let own = self.own_candidate();
        let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
        let entries = if serves {
            vec![RankedEntry {
                id: self.config.id,
                endpoint: self.config.endpoint.clone(),
                workload: own.workload,
            }]
        } else {
            Vec::new()
        };
        HandshakeOutcome::Ranked(RankedList { stale: false, entries })
    }
}
