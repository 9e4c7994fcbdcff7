//! Phase 2 (SPEC 2.2-2.7): the query round. A load-balanced handshake joins
//! the round in flight or starts one; a round reads the registry (unless the
//! cached snapshot is younger than `snapshot_ttl`), asks the active `Serving`
//! peers for their live workload (every one, or a bounded few: `fanout.rs`),
//! and ends when every peer asked answered or was declared unreachable, or
//! `peer_timeout` after the queries went out. Then every waiting handshake
//! gets its ranked list, in arrival order, each with its own salt
//! (`rerank.rs`). A burst of N handshakes therefore costs one registry query
//! and one round of peer queries, not N of each.

use std::time::Instant;

use super::event::{Action, ConnectionId};
use super::fanout::BoundedPlan;
use super::herd::Shown;
use super::snapshot::Snapshot;
use super::{Instance, Timer};
use crate::registry::MemberRecord;
use crate::wire::{HandshakeOutcome, HandshakeRequest, QueryId, RefuseReason, WorkloadQuery, WorkloadReport};
use crate::workload::{Candidate, InstanceId, Role};

#[derive(Debug, Clone, Copy)]
pub(super) enum PeerState {
    Waiting,
    Answered(Candidate),
    Unreachable,
}

#[derive(Debug)]
pub(super) struct PeerSlot {
    /// Index into the snapshot's members; the snapshot cannot change while
    /// peer queries are out (only a registry answer replaces it).
    pub(super) member: usize,
    pub(super) state: PeerState,
}

/// Where a round is.
#[derive(Debug)]
pub(super) enum Round {
    /// Waiting for the registry.
    Registry { query_id: QueryId },
    /// Waiting for the peers, asked at `asked_at`.
    Peers {
        stale: bool,
        first_query_id: QueryId,
        asked_at: Instant,
        peers: Vec<PeerSlot>,
        outstanding: usize,
        /// Members not asked, ranked on their registry figures (indices
        /// into the snapshot's members, ascending); empty in a full round.
        unasked: Vec<usize>,
        /// Members of `unasked` to ask in place of an asked member found
        /// unreachable, next best last (bounded rounds only).
        replacements: Vec<usize>,
    },
}

impl Round {
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Round::Peers { peers, unasked, replacements, .. } => {
                peers.capacity() * std::mem::size_of::<PeerSlot>()
                    + (unasked.capacity() + replacements.capacity()) * std::mem::size_of::<usize>()
            }
            Round::Registry { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingHandshake {
    pub(super) conn: ConnectionId,
    pub(super) request_id: u64,
    pub(super) salt: u64,
}

/// Where a ranking candidate comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    Own,
    Peer(usize),
}

impl Instance {
    pub(super) fn on_handshake(&mut self, conn: ConnectionId, request: HandshakeRequest, now: Instant) {
        self.stats.handshakes += 1;
        if let Some(wanted) = &request.cluster {
            if self.config.cluster.as_deref() != Some(wanted.as_str()) {
                self.stats.refused_wrong_cluster += 1;
                let outcome = HandshakeOutcome::Refused(RefuseReason::WrongCluster);
                return self.reply_handshake(conn, request.request_id, outcome);
            }
        }
        if self.config.role == Role::Standalone || !request.load_balance {
            let outcome = self.direct_outcome();
            return self.reply_handshake(conn, request.request_id, outcome);
        }
        if self.pending.len() >= self.config.limits.max_pending_handshakes {
            self.stats.refused_busy += 1;
            let outcome = HandshakeOutcome::Refused(RefuseReason::Busy);
            return self.reply_handshake(conn, request.request_id, outcome);
        }
        self.pending.push(PendingHandshake { conn, request_id: request.request_id, salt: request.salt });
        if self.round.is_none() {
            self.start_round(now);
        }
    }

    fn start_round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        let fresh = self
            .snapshot
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.received_at) < self.config.snapshot_ttl);
        if fresh {
            self.query_peers(now, false);
        } else {
            let query_id = self.next_query_ids(1);
            self.stats.registry_queries += 1;
            let cluster = self.config.cluster.clone().unwrap_or_default();
            self.actions.push_back(Action::QueryRegistry { query_id, cluster });
            self.timers.set(Timer::Registry, now + self.config.registry_timeout);
            self.round = Some(Round::Registry { query_id });
        }
    }

    pub(super) fn on_snapshot(&mut self, query_id: QueryId, members: Vec<MemberRecord>, now: Instant) {
        if !matches!(self.round, Some(Round::Registry { query_id: q }) if q == query_id) {
            self.stats.ignored_replies += 1;
            return;
        }
        self.timers.stop(Timer::Registry);
        let (snapshot, dropped) = Snapshot::build(
            members,
            now,
            (self.config.id, &self.config.endpoint),
            self.config.member_ttl,
            self.config.limits.max_members,
            self.snapshot.as_ref(),
        );
        self.stats.members_dropped += dropped.over_cap as u64;
        self.snapshot = Some(snapshot);
        self.query_peers(now, false);
    }

    pub(super) fn on_registry_failed(&mut self, query_id: QueryId, now: Instant) {
        match self.round {
            Some(Round::Registry { query_id: q }) if q == query_id => self.on_registry_trouble(now),
            _ => self.stats.ignored_replies += 1,
        }
    }

    pub(super) fn on_registry_trouble(&mut self, now: Instant) {
        self.timers.stop(Timer::Registry);
        self.stats.registry_failures += 1;
        // With the last snapshot if any; with none, only this instance is known.
        self.query_peers(now, true);
    }

    fn query_peers(&mut self, now: Instant, stale: bool) {
        let ttl = self.config.member_ttl;
        let mut active = Vec::new();
        if let Some(snapshot) = &self.snapshot {
            let since = now.saturating_duration_since(snapshot.received_at);
            for (i, m) in snapshot.members.iter().enumerate() {
                if m.heartbeat_age.saturating_add(since) < ttl {
                    active.push(i);
                }
            }
        }
        let BoundedPlan { asked, unasked, replacements } = if self.config.fan_out.is_full_for(active.len()) {
            BoundedPlan { asked: active, unasked: Vec::new(), replacements: Vec::new() }
        } else {
            self.bounded_plan(active, now)
        };
        let peers: Vec<PeerSlot> =
            asked.into_iter().map(|member| PeerSlot { member, state: PeerState::Waiting }).collect();
        let first_query_id = self.next_query_ids(peers.len());
        if let Some(snapshot) = &self.snapshot {
            for (k, slot) in peers.iter().enumerate() {
                let member = &snapshot.members[slot.member];
                let query_id = QueryId(first_query_id.0.wrapping_add(k as u64));
                self.actions.push_back(Action::QueryPeer {
                    query_id,
                    peer: member.id,
                    endpoint: member.endpoint.clone(),
                    query: WorkloadQuery { query_id },
                });
            }
        }
        self.stats.peer_queries += peers.len() as u64;
        let outstanding = peers.len();
        self.round = Some(Round::Peers {
            stale,
            first_query_id,
            asked_at: now,
            peers,
            outstanding,
            unasked,
            replacements,
        });
        if outstanding == 0 {
            self.finish_round(now);
        } else {
            self.timers.set(Timer::Peers, now + self.config.peer_timeout);
        }
    }

    /// The waiting peer slot that `query_id` names, if it names `peer`, and
    /// when that round asked.
    fn waiting_slot(&mut self, query_id: QueryId, peer: InstanceId) -> Option<(&mut PeerSlot, Instant)> {
        let Some(Round::Peers { first_query_id, asked_at, peers, .. }) = &mut self.round else { return None };
        let index = usize::try_from(query_id.0.wrapping_sub(first_query_id.0)).ok()?;
        let slot = peers.get_mut(index)?;
        let member = self.snapshot.as_ref()?.members.get(slot.member)?;
        (member.id == peer && matches!(slot.state, PeerState::Waiting)).then_some((slot, *asked_at))
    }

    /// A bounded round found an asked member unreachable: ask the next best
    /// member it would otherwise list on registry figures in its place, so
    /// the head of its lists still comes from members that answered (after a
    /// crash the dead members' rows keep their old figures and look best).
    /// Each failure costs one more query, within the round's `peer_timeout`.
    fn ask_replacement(&mut self) {
        let Some(Round::Peers { first_query_id, peers, outstanding, unasked, replacements, .. }) =
            &mut self.round
        else {
            return;
        };
        let Some(snapshot) = &self.snapshot else { return };
        // The round's queries are numbered consecutively (a slot is found by
        // its id's offset); nothing else takes an id while a round waits for
        // its peers, so the next id is the next offset.
        let query_id = QueryId(first_query_id.0.wrapping_add(peers.len() as u64));
        if query_id.0 != self.next_query_id {
            return;
        }
        let Some(member) = replacements.pop() else { return };
        if let Ok(at) = unasked.binary_search(&member) {
            unasked.remove(at);
        }
        self.next_query_id = self.next_query_id.wrapping_add(1);
        peers.push(PeerSlot { member, state: PeerState::Waiting });
        *outstanding += 1;
        self.stats.peer_queries += 1;
        self.stats.replacement_queries += 1;
        let member = &snapshot.members[member];
        self.actions.push_back(Action::QueryPeer {
            query_id,
            peer: member.id,
            endpoint: member.endpoint.clone(),
            query: WorkloadQuery { query_id },
        });
    }

    fn resolve_one(&mut self, now: Instant) {
        if let Some(Round::Peers { outstanding, .. }) = &mut self.round {
            *outstanding -= 1;
            if *outstanding == 0 {
                self.finish_round(now);
            }
        }
    }

    pub(super) fn on_report(&mut self, report: WorkloadReport, now: Instant) {
        let Some((slot, asked_at)) = self.waiting_slot(report.query_id, report.id) else {
            self.stats.ignored_replies += 1;
            return;
        };
        if report.workload.connected > report.workload.max_sessions {
            // A report that contradicts itself cannot be trusted at all.
            slot.state = PeerState::Unreachable;
            self.stats.contradictory_reports += 1;
            self.stats.peer_unreachable += 1;
            self.ask_replacement();
        } else {
            let figures =
                Candidate { role: report.role, accepting: report.accepting, workload: report.workload };
            slot.state = PeerState::Answered(figures);
            let member = slot.member;
            if let Some(cached) = self.snapshot.as_mut().and_then(|s| s.members.get_mut(member)) {
                cached.reported(figures, asked_at);
            }
            self.stats.peer_reports += 1;
            let shown = Shown::Report { asked_at };
            self.herd.cover(report.id, report.workload.connected, shown, self.config.limits.max_members);
        }
        self.resolve_one(now);
    }

    pub(super) fn on_unreachable(&mut self, query_id: QueryId, peer: InstanceId, now: Instant) {
        let Some((slot, _)) = self.waiting_slot(query_id, peer) else {
            self.stats.ignored_replies += 1;
            return;
        };
        slot.state = PeerState::Unreachable;
        self.stats.peer_unreachable += 1;
        self.fan_out.unreachable(peer, now, self.config.limits.max_members);
        self.ask_replacement();
        self.resolve_one(now);
    }

    pub(super) fn on_peer_timeout(&mut self, now: Instant) {
        if matches!(self.round, Some(Round::Peers { .. })) {
            self.finish_round(now);
        }
    }

    pub(super) fn on_registry_timeout(&mut self, now: Instant) {
        if matches!(self.round, Some(Round::Registry { .. })) {
            self.on_registry_trouble(now);
        }
    }
}
