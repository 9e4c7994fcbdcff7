//! Phase 2 (SPEC 2.2-2.7): the query round. A load-balanced handshake joins
//! the round in flight or starts one; a round reads the registry (unless the
//! cached snapshot is younger than `snapshot_ttl`), asks the active `Serving`
//! peers for their live workload (every one, or a bounded few: `fanout.rs`),
//! and ends when every peer asked answered or was declared unreachable, or
//! `peer_timeout` after the queries went out. Then every waiting handshake
//! gets its ranked list, in arrival order, each with its own salt
//! (`rerank.rs`). A burst of N handshakes therefore costs one registry query
//! and one round of peer queries, not N of each.

mod reply;

use std::collections::VecDeque;
use std::mem::size_of;
use std::time::Instant;

use self::reply::Ranking;
use super::event::{Action, ConnectionId};
use super::fanout::{FanOutControl, Plan};
use super::herd::{Herd, Shown};
use super::snapshot::{CachedMember, Snapshot};
use super::stats::RoundStats;
use super::Timer;
use crate::config::InstanceConfig;
use crate::endpoint::Endpoint;
use crate::registry::MemberRecord;
use crate::timer::TimerTable;
use crate::wire::{
    HandshakeOutcome, HandshakeReply, HandshakeRequest, Message, QueryId, RankedEntry, RankedList,
    RefuseReason, WorkloadQuery, WorkloadReport,
};
use crate::workload::{Candidate, InstanceId, Role};

/// What the query round is handed with each input: the configuration and
/// the clock, this instance's own live figures (admission's view), the
/// subsystems it drives, and the machine's outputs.
pub(super) struct Cx<'a> {
    pub(super) config: &'a InstanceConfig,
    pub(super) now: Instant,
    pub(super) own: Candidate,
    pub(super) herd: &'a mut Herd,
    pub(super) fan_out: &'a mut FanOutControl,
    pub(super) timers: &'a mut TimerTable<3>,
    pub(super) actions: &'a mut VecDeque<Action>,
}

impl Cx<'_> {
    pub(super) fn reply_handshake(&mut self, conn: ConnectionId, request_id: u64, outcome: HandshakeOutcome) {
        let message = Message::HandshakeReply(HandshakeReply { request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
    }
}

/// The query round: the handshakes waiting for it, the round in flight,
/// the registry snapshot it ranks from, and the query ids it hands out.
#[derive(Debug)]
pub(super) struct QueryRound {
    snapshot: Option<Snapshot>,
    pub(super) phase: Option<Phase>,
    pub(super) pending: Vec<PendingHandshake>,
    next_query_id: u64,
    ranking: Ranking,
    pub(super) stats: RoundStats,
}

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

/// Where the round in flight is.
#[derive(Debug)]
pub(super) enum Phase {
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
    },
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

impl QueryRound {
    /// No snapshot, nothing in flight; query ids from `first_query_id` on.
    pub(super) fn new(first_query_id: u64) -> Self {
        QueryRound {
            snapshot: None,
            phase: None,
            pending: Vec::new(),
            next_query_id: first_query_id,
            ranking: Ranking::default(),
            stats: RoundStats::default(),
        }
    }

    /// Members in the cached snapshot.
    pub(super) fn cached_members(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.members.len())
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let endpoint_heap = |e: &Endpoint| e.host().len() + e.instance().map_or(0, str::len);
        let snapshot = self.snapshot.as_ref().map_or(0, |s| {
            s.members.capacity() * size_of::<CachedMember>()
                + s.members.iter().map(|m| endpoint_heap(&m.endpoint)).sum::<usize>()
        });
        let phase = match &self.phase {
            Some(Phase::Peers { peers, unasked, .. }) => {
                peers.capacity() * size_of::<PeerSlot>() + unasked.capacity() * size_of::<usize>()
            }
            _ => 0,
        };
        snapshot + phase + self.ranking.heap_bytes() + self.pending.capacity() * size_of::<PendingHandshake>()
    }

    fn next_query_ids(&mut self, count: usize) -> QueryId {
        let first = self.next_query_id;
        self.next_query_id = self.next_query_id.wrapping_add(count as u64);
        QueryId(first)
    }

    /// A handshake request: refused, answered at once, or waiting for the
    /// round in flight (started if none).
    pub(super) fn handshake(&mut self, conn: ConnectionId, request: HandshakeRequest, cx: &mut Cx<'_>) {
        self.stats.handshakes += 1;
        if let Some(wanted) = &request.cluster {
            if cx.config.cluster.as_deref() != Some(wanted.as_str()) {
                self.stats.refused_wrong_cluster += 1;
                let outcome = HandshakeOutcome::Refused(RefuseReason::WrongCluster);
                return cx.reply_handshake(conn, request.request_id, outcome);
            }
        }
        if cx.config.role == Role::Standalone || !request.load_balance {
            let outcome = self.direct_outcome(cx);
            return cx.reply_handshake(conn, request.request_id, outcome);
        }
        if self.pending.len() >= cx.config.limits.max_pending_handshakes {
            self.stats.refused_busy += 1;
            let outcome = HandshakeOutcome::Refused(RefuseReason::Busy);
            return cx.reply_handshake(conn, request.request_id, outcome);
        }
        self.pending.push(PendingHandshake { conn, request_id: request.request_id, salt: request.salt });
        if self.phase.is_none() {
            self.start(cx);
        }
    }

    /// Standalone or `load_balance: false`: the answering instance is the
    /// target, itself alone if it can admit by its live figures, else an
    /// empty list (which the client treats as a refusal).
    fn direct_outcome(&mut self, cx: &Cx<'_>) -> HandshakeOutcome {
        self.stats.direct_replies += 1;
        let own = cx.own;
        let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
        let entries = if serves {
            vec![RankedEntry {
                id: cx.config.id,
                endpoint: cx.config.endpoint.clone(),
                workload: own.workload,
            }]
        } else {
            Vec::new()
        };
        HandshakeOutcome::Ranked(RankedList { stale: false, entries })
    }

    /// Connection `conn` closed: its waiting handshakes are dropped.
    pub(super) fn abandon(&mut self, conn: ConnectionId) {
        let before = self.pending.len();
        self.pending.retain(|p| p.conn != conn);
        self.stats.abandoned_handshakes += (before - self.pending.len()) as u64;
    }

    fn start(&mut self, cx: &mut Cx<'_>) {
        self.stats.rounds += 1;
        let now = cx.now;
        let fresh = self
            .snapshot
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.received_at) < cx.config.snapshot_ttl);
        if fresh {
            self.query_peers(cx, false);
        } else {
            let query_id = self.next_query_ids(1);
            self.stats.registry_queries += 1;
            let cluster = cx.config.cluster.clone().unwrap_or_default();
            cx.actions.push_back(Action::QueryRegistry { query_id, cluster });
            cx.timers.set(Timer::Registry, now + cx.config.registry_timeout);
            self.phase = Some(Phase::Registry { query_id });
        }
    }

    pub(super) fn on_snapshot(&mut self, query_id: QueryId, members: Vec<MemberRecord>, cx: &mut Cx<'_>) {
        if !matches!(self.phase, Some(Phase::Registry { query_id: q }) if q == query_id) {
            self.stats.ignored_replies += 1;
            return;
        }
        cx.timers.stop(Timer::Registry);
        let config = cx.config;
        let (snapshot, dropped) = Snapshot::build(
            members,
            cx.now,
            (config.id, &config.endpoint),
            config.member_ttl,
            config.limits.max_members,
            self.snapshot.as_ref(),
        );
        self.stats.members_dropped += dropped.over_cap as u64;
        self.snapshot = Some(snapshot);
        self.query_peers(cx, false);
    }

    pub(super) fn on_registry_failed(&mut self, query_id: QueryId, cx: &mut Cx<'_>) {
        match self.phase {
            Some(Phase::Registry { query_id: q }) if q == query_id => self.on_registry_trouble(cx),
            _ => self.stats.ignored_replies += 1,
        }
    }

    fn on_registry_trouble(&mut self, cx: &mut Cx<'_>) {
        cx.timers.stop(Timer::Registry);
        self.stats.registry_failures += 1;
        // With the last snapshot if any; with none, only this instance is known.
        self.query_peers(cx, true);
    }

    fn query_peers(&mut self, cx: &mut Cx<'_>, stale: bool) {
        let now = cx.now;
        let ttl = cx.config.member_ttl;
        let mut active = Vec::new();
        if let Some(snapshot) = &self.snapshot {
            let since = now.saturating_duration_since(snapshot.received_at);
            for (i, m) in snapshot.members.iter().enumerate() {
                if m.heartbeat_age.saturating_add(since) < ttl {
                    active.push(i);
                }
            }
        }
        let salt = self.pending.first().map_or(0, |p| p.salt);
        let Plan { asked, unasked } =
            cx.fan_out.plan(active, self.snapshot.as_mut(), cx.herd, cx.config, salt, now);
        let peers: Vec<PeerSlot> =
            asked.into_iter().map(|member| PeerSlot { member, state: PeerState::Waiting }).collect();
        let first_query_id = self.next_query_ids(peers.len());
        if let Some(snapshot) = &self.snapshot {
            for (k, slot) in peers.iter().enumerate() {
                let member = &snapshot.members[slot.member];
                let query_id = QueryId(first_query_id.0.wrapping_add(k as u64));
                cx.actions.push_back(Action::QueryPeer {
                    query_id,
                    peer: member.id,
                    endpoint: member.endpoint.clone(),
                    query: WorkloadQuery { query_id },
                });
            }
        }
        self.stats.peer_queries += peers.len() as u64;
        let outstanding = peers.len();
        self.phase = Some(Phase::Peers { stale, first_query_id, asked_at: now, peers, outstanding, unasked });
        if outstanding == 0 {
            self.finish(cx);
        } else {
            cx.timers.set(Timer::Peers, now + cx.config.peer_timeout);
        }
    }

    /// The waiting peer slot that `query_id` names, if it names `peer`, and
    /// when that round asked.
    fn waiting_slot(&mut self, query_id: QueryId, peer: InstanceId) -> Option<(&mut PeerSlot, Instant)> {
        let Some(Phase::Peers { first_query_id, asked_at, peers, .. }) = &mut self.phase else { return None };
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
    fn ask_replacement(&mut self, cx: &mut Cx<'_>) {
        let Some(Phase::Peers { first_query_id, peers, outstanding, unasked, .. }) = &mut self.phase else {
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
        let Some(member) = cx.fan_out.next_replacement() else { return };
        if let Ok(at) = unasked.binary_search(&member) {
            unasked.remove(at);
        }
        self.next_query_id = self.next_query_id.wrapping_add(1);
        peers.push(PeerSlot { member, state: PeerState::Waiting });
        *outstanding += 1;
        self.stats.peer_queries += 1;
        let member = &snapshot.members[member];
        cx.actions.push_back(Action::QueryPeer {
            query_id,
            peer: member.id,
            endpoint: member.endpoint.clone(),
            query: WorkloadQuery { query_id },
        });
    }

    fn resolve_one(&mut self, cx: &mut Cx<'_>) {
        if let Some(Phase::Peers { outstanding, .. }) = &mut self.phase {
            *outstanding -= 1;
            if *outstanding == 0 {
                self.finish(cx);
            }
        }
    }

    pub(super) fn on_report(&mut self, report: WorkloadReport, cx: &mut Cx<'_>) {
        let Some((slot, asked_at)) = self.waiting_slot(report.query_id, report.id) else {
            self.stats.ignored_replies += 1;
            return;
        };
        if report.workload.connected > report.workload.max_sessions {
            // A report that contradicts itself cannot be trusted at all.
            slot.state = PeerState::Unreachable;
            self.stats.contradictory_reports += 1;
            self.stats.peer_unreachable += 1;
            self.ask_replacement(cx);
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
            cx.herd.cover(report.id, report.workload.connected, shown, cx.config.limits.max_members);
        }
        self.resolve_one(cx);
    }

    pub(super) fn on_unreachable(&mut self, query_id: QueryId, peer: InstanceId, cx: &mut Cx<'_>) {
        let Some((slot, _)) = self.waiting_slot(query_id, peer) else {
            self.stats.ignored_replies += 1;
            return;
        };
        slot.state = PeerState::Unreachable;
        self.stats.peer_unreachable += 1;
        cx.fan_out.unreachable(peer, cx.now, cx.config.limits.max_members);
        self.ask_replacement(cx);
        self.resolve_one(cx);
    }

    pub(super) fn on_peer_timeout(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.phase, Some(Phase::Peers { .. })) {
            self.finish(cx);
        }
    }

    pub(super) fn on_registry_timeout(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.phase, Some(Phase::Registry { .. })) {
            self.on_registry_trouble(cx);
        }
    }
}
