//! Phase 2 (SPEC 2.2-2.7): the query round. A load-balanced handshake joins
//! the round in flight or starts one; a round reads the registry (unless the
//! cached snapshot is younger than `snapshot_ttl`), asks every active
//! `Serving` peer for its live workload, and ends when every peer answered or
//! was declared unreachable, or `peer_timeout` after the queries went out.
//! Then every waiting handshake gets its ranked list, in arrival order, each
//! with its own salt.

use std::time::{Duration, Instant};

use super::event::{Action, ConnectionId};
use super::{Instance, Timer};
use crate::endpoint::Endpoint;
use crate::registry::MemberRecord;
use crate::wire::{
    entries_that_fit, HandshakeOutcome, HandshakeRequest, Limits, QueryId, RankedEntry, RankedList,
    RefuseReason, WorkloadQuery, WorkloadReport,
};
use crate::workload::{rank_into, Candidate, InstanceId, Role};

/// A registry row worth querying: `Serving`, not this instance, active when
/// received.
#[derive(Debug, Clone)]
pub(super) struct CachedMember {
    id: InstanceId,
    pub(super) endpoint: Endpoint,
    heartbeat_age: Duration,
}

#[derive(Debug)]
pub(super) struct Snapshot {
    received_at: Instant,
    /// Sorted by id, one row per id.
    pub(super) members: Vec<CachedMember>,
}

#[derive(Debug, Clone, Copy)]
enum PeerState {
    Waiting,
    Answered(Candidate),
    Unreachable,
}

#[derive(Debug)]
pub(super) struct PeerSlot {
    /// Index into the snapshot's members; the snapshot cannot change while
    /// peer queries are out (only a registry answer replaces it).
    member: usize,
    state: PeerState,
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
    },
}

impl Round {
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Round::Peers { peers, .. } => peers.capacity() * std::mem::size_of::<PeerSlot>(),
            Round::Registry { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingHandshake {
    pub(super) conn: ConnectionId,
    request_id: u64,
    salt: u64,
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
        let own_id = self.config.id;
        let ttl = self.config.member_ttl;
        let mut kept: Vec<CachedMember> = members
            .into_iter()
            .filter(|m| m.role == Role::Serving && m.id != own_id && m.heartbeat_age < ttl)
            .map(|m| CachedMember { id: m.id, endpoint: m.endpoint, heartbeat_age: m.heartbeat_age })
            .collect();
        // Freshest row first within an id, so dedup keeps it.
        kept.sort_by(|a, b| a.id.cmp(&b.id).then(a.heartbeat_age.cmp(&b.heartbeat_age)));
        kept.dedup_by_key(|m| m.id);
        let cap = self.config.limits.max_members;
        if kept.len() > cap {
            self.stats.members_dropped += (kept.len() - cap) as u64;
            kept.truncate(cap);
        }
        self.snapshot = Some(Snapshot { received_at: now, members: kept });
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
        let mut peers = Vec::new();
        if let Some(snapshot) = &self.snapshot {
            let since = now.saturating_duration_since(snapshot.received_at);
            for (i, m) in snapshot.members.iter().enumerate() {
                if m.heartbeat_age.saturating_add(since) < ttl {
                    peers.push(PeerSlot { member: i, state: PeerState::Waiting });
                }
            }
        }
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
        self.round = Some(Round::Peers { stale, first_query_id, asked_at: now, peers, outstanding });
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
        } else {
            slot.state = PeerState::Answered(Candidate {
                role: report.role,
                accepting: report.accepting,
                workload: report.workload,
            });
            self.stats.peer_reports += 1;
            self.herd.cover(report.id, report.workload.connected, asked_at, self.config.limits.max_members);
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

    /// Answers every waiting handshake from the round's figures.
    fn finish_round(&mut self, now: Instant) {
        self.timers.stop(Timer::Peers);
        self.timers.stop(Timer::Registry);
        let (peers, stale) = match self.round.take() {
            Some(Round::Peers { peers, stale, .. }) => (peers, stale),
            // Not reached: rounds finish only from the peer phase; answer with self alone.
            Some(Round::Registry { .. }) => (Vec::new(), true),
            None => return,
        };
        self.stats.peer_silent +=
            peers.iter().filter(|p| matches!(p.state, PeerState::Waiting)).count() as u64;

        let mut ranking = std::mem::take(&mut self.ranking);
        ranking.reported.clear();
        ranking.sources.clear();
        // Candidates ordered by id, so tie rotation by salt is deterministic.
        let own_id = self.config.id;
        let mut own_placed = false;
        if let Some(snapshot) = &self.snapshot {
            for slot in &peers {
                if let PeerState::Answered(candidate) = slot.state {
                    let id = snapshot.members[slot.member].id;
                    if !own_placed && own_id < id {
                        ranking.sources.push((own_id, Source::Own));
                        ranking.reported.push(self.own_candidate());
                        own_placed = true;
                    }
                    ranking.sources.push((id, Source::Peer(slot.member)));
                    ranking.reported.push(candidate);
                }
            }
        }
        if !own_placed {
            ranking.sources.push((own_id, Source::Own));
            ranking.reported.push(self.own_candidate());
        }
        let herd = self.config.herd_control;
        ranking.predicted.clear();
        ranking.predicted.extend_from_slice(&ranking.reported);
        if herd {
            self.herd.fix_weight();
            for i in 0..ranking.sources.len() {
                self.predict(&mut ranking, i, now);
            }
            self.herd.forget_departed(&ranking.sources, self.config.limits.max_members);
        }

        let pending = std::mem::take(&mut self.pending);
        for handshake in &pending {
            self.rank_for(&mut ranking, handshake.salt);
            let mut entries: Vec<RankedEntry> = ranking
                .order
                .iter()
                .take(self.config.max_list_len)
                .map(|&i| {
                    let (id, source) = ranking.sources[i];
                    let endpoint = match (source, &self.snapshot) {
                        (Source::Peer(m), Some(snapshot)) => snapshot.members[m].endpoint.clone(),
                        _ => self.config.endpoint.clone(),
                    };
                    // A member predicted full is listed with its reported figures.
                    let predicted = ranking.predicted[i];
                    let workload = if predicted.workload.is_full() {
                        ranking.reported[i].workload
                    } else {
                        predicted.workload
                    };
                    RankedEntry { id, endpoint, workload }
                })
                .collect();
            // SPEC 2.7: never more than fits in one frame the client's decoder
            // takes with the default limits (long host names cut the list).
            entries.truncate(entries_that_fit(&entries, &self.reply_limits()));
            if let (true, Some(&head)) = (herd, ranking.order.first()) {
                let head_id = ranking.sources[head].0;
                self.herd.headed(head_id);
                let ttl = self.config.reservation_ttl;
                let limit = self.config.limits.max_reservations;
                let (replaced, _) =
                    self.herd.reserve(handshake.conn, head_id, now, ttl, limit, &mut self.stats);
                self.predict(&mut ranking, head, now);
                if let Some(i) = replaced.and_then(|old| ranking.index_of(old)) {
                    self.predict(&mut ranking, i, now);
                }
            }
            self.stats.ranked_replies += 1;
            if stale {
                self.stats.stale_replies += 1;
            }
            let outcome = HandshakeOutcome::Ranked(RankedList { stale, entries });
            self.reply_handshake(handshake.conn, handshake.request_id, outcome);
        }
        // Reuse the buffer, but let a burst's worth of it go.
        let mut pending = pending;
        pending.clear();
        pending.shrink_to(super::KEPT_CAPACITY);
        if self.pending.is_empty() {
            self.pending = pending;
        }
        self.ranking = ranking;
    }

    /// The limits a reply must fit: the wire's default frame, this
    /// instance's list length.
    fn reply_limits(&self) -> Limits {
        Limits::default().with_max_list_len(self.config.max_list_len)
    }

    /// Candidate `i`'s predicted figures: reported plus live reservations.
    fn predict(&mut self, ranking: &mut Ranking, i: usize, now: Instant) {
        let live = self.herd.live(ranking.sources[i].0, now, self.config.reservation_ttl, &mut self.stats);
        let extra = self.herd.predicted_sessions(live);
        let mut candidate = ranking.reported[i];
        candidate.workload.connected = candidate.workload.connected.saturating_add(extra);
        ranking.predicted[i] = candidate;
    }

    /// Fills `ranking.order` for one handshake: the rank of the predicted
    /// figures (the tie rule on top with herd control), then the members
    /// only predicted full (SPEC 2.4: listed last, never dropped), ranked by
    /// their reported figures.
    fn rank_for(&self, ranking: &mut Ranking, salt: u64) {
        let Ranking { sources, reported, predicted, tail, tail_order, order } = ranking;
        rank_into(predicted, salt, order);
        if !self.config.herd_control {
            return;
        }
        self.herd.least_recently_headed_first(predicted, sources, order);
        let predicted_full = |i: usize| predicted[i].workload.is_full() && reported[i].is_eligible();
        if !(0..reported.len()).any(predicted_full) {
            return;
        }
        tail.clear();
        tail.extend(reported.iter().enumerate().map(|(i, c)| Candidate {
            // Everyone else is already placed (or out): keep them out of the tail.
            accepting: c.accepting && predicted_full(i),
            ..*c
        }));
        rank_into(tail, salt, tail_order);
        order.extend_from_slice(tail_order);
    }
}

/// The figures of one round's ranking, kept between rounds for their capacity.
#[derive(Debug, Default)]
pub(super) struct Ranking {
    /// Who each candidate is, sorted by id.
    sources: Vec<(InstanceId, Source)>,
    /// Figures as reported (own: live).
    reported: Vec<Candidate>,
    /// Reported plus live reservations (equal to `reported` without herd control).
    predicted: Vec<Candidate>,
    /// Scratch for the predicted-full tail.
    tail: Vec<Candidate>,
    tail_order: Vec<usize>,
    /// One reply's order: indices into the vectors above.
    order: Vec<usize>,
}

impl Ranking {
    fn index_of(&self, id: InstanceId) -> Option<usize> {
        self.sources.binary_search_by_key(&id, |&(s, _)| s).ok()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.sources.capacity() * size_of::<(InstanceId, Source)>()
            + (self.reported.capacity() + self.predicted.capacity() + self.tail.capacity())
                * size_of::<Candidate>()
            + (self.tail_order.capacity() + self.order.capacity()) * size_of::<usize>()
    }
}
