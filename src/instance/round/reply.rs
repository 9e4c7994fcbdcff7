//! The end of a query round (SPEC 2.4-2.7): the round's candidates (this
//! instance, the peers that answered, the members not asked with their
//! registry figures), their predicted figures, and one ranked reply per
//! waiting handshake, herd control reserving each reply's head.

use super::{Cx, PeerState, Phase, QueryRound, Source};
use crate::config::InstanceConfig;
use crate::instance::event::ConnectionId;
use crate::instance::rerank::{rank_full, Rerank, TailScratch};
use crate::instance::share::Weight;
use crate::instance::Timer;
use crate::wire::{entries_that_fit, HandshakeOutcome, Limits, RankedEntry, RankedList};
use crate::workload::{Candidate, InstanceId};

impl QueryRound {
    /// Answers every waiting handshake from the round's figures.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        cx.timers.stop(Timer::Peers);
        cx.timers.stop(Timer::Registry);
        let (peers, unasked, stale) = match self.phase.take() {
            Some(Phase::Peers { peers, unasked, stale, .. }) => (peers, unasked, stale),
            // Not reached: rounds finish only from the peer phase; answer with self alone.
            Some(Phase::Registry { .. }) => (Vec::new(), Vec::new(), true),
            None => return,
        };
        self.stats.peer_silent +=
            peers.iter().filter(|p| matches!(p.state, PeerState::Waiting)).count() as u64;

        let mut ranking = std::mem::take(&mut self.ranking);
        ranking.reported.clear();
        ranking.sources.clear();
        // Candidates ordered by id, so tie rotation by salt is deterministic.
        let own_id = cx.config.id;
        let own = cx.own;
        let mut own_placed = false;
        if let Some(snapshot) = &self.snapshot {
            // Both lists hold member indices in ascending order (hence id
            // order): merge them.
            let mut answered = peers
                .iter()
                .filter_map(|slot| match slot.state {
                    PeerState::Answered(candidate) => Some((slot.member, candidate)),
                    _ => None,
                })
                .peekable();
            let mut registry = unasked.iter().map(|&m| (m, snapshot.members[m].figures)).peekable();
            loop {
                let take_answered = match (answered.peek(), registry.peek()) {
                    (Some(a), Some(r)) => a.0 < r.0,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_answered { answered.next() } else { registry.next() };
                let Some((member, candidate)) = next else { break };
                let id = snapshot.members[member].id;
                if !own_placed && own_id < id {
                    ranking.sources.push((own_id, Source::Own));
                    ranking.reported.push(own);
                    own_placed = true;
                }
                ranking.sources.push((id, Source::Peer(member)));
                ranking.reported.push(candidate);
            }
        }
        if !own_placed {
            ranking.sources.push((own_id, Source::Own));
            ranking.reported.push(own);
        }
        let herd = cx.config.herd_control;
        ranking.predicted.clear();
        ranking.predicted.extend_from_slice(&ranking.reported);
        if herd {
            let ttl = cx.config.reservation_ttl;
            cx.herd.fix_weight(now, ttl);
            cx.herd.live_each(&ranking.sources, now, ttl, &mut ranking.live);
            for ((p, r), &live) in ranking.predicted.iter_mut().zip(&ranking.reported).zip(&ranking.live) {
                *p = cx.herd.predict(*r, live);
            }
            cx.herd.forget_departed(&ranking.sources, cx.config.limits.max_members);
        }
        // One waiting handshake (the usual case below a burst) is one full
        // rank; keeping the order for later replies pays only for several
        // (the two give the same lists: see `rerank/tests.rs`).
        let pending = std::mem::take(&mut self.pending);
        let incremental = pending.len() > 1;
        if incremental {
            let Ranking { sources, reported, predicted, rerank, .. } = &mut ranking;
            let record = &*cx.herd;
            rerank.build(reported, predicted, herd, |i| record.last_headed(sources[i].0));
        }
        for handshake in &pending {
            let Ranking { sources, reported, predicted, rerank, list, scratch, .. } = &mut ranking;
            if incremental {
                rerank.list(reported, predicted, handshake.salt, cx.config.max_list_len, list);
            } else {
                let herd = herd.then_some(&*cx.herd);
                rank_full(herd, sources, reported, predicted, handshake.salt, scratch, list);
                list.truncate(cx.config.max_list_len);
            }
            let mut entries: Vec<RankedEntry> = ranking
                .list
                .iter()
                .map(|&i| {
                    let (id, source) = ranking.sources[i];
                    let endpoint = match (source, &self.snapshot) {
                        (Source::Peer(m), Some(snapshot)) => snapshot.members[m].endpoint.clone(),
                        _ => cx.config.endpoint.clone(),
                    };
                    // A member predicted full is listed with its reported figures.
                    let predicted = ranking.predicted[i];
                    let reported = ranking.reported[i].workload;
                    let workload = if predicted.workload.is_full() {
                        reported
                    } else {
                        Weight::shown(predicted.workload, reported)
                    };
                    RankedEntry { id, endpoint, workload }
                })
                .collect();
            // SPEC 2.7: never more than fits in one frame the client's decoder
            // takes with the default limits (long host names cut the list).
            entries.truncate(entries_that_fit(&entries, &reply_limits(cx.config)));
            if let (true, Some(&head)) = (herd, ranking.list.first()) {
                reserve_head(cx, &mut ranking, head, handshake.conn, incremental);
            }
            self.stats.ranked_replies += 1;
            if stale {
                self.stats.stale_replies += 1;
            }
            let outcome = HandshakeOutcome::Ranked(RankedList { stale, entries });
            cx.reply_handshake(handshake.conn, handshake.request_id, outcome);
        }
        // Reuse the buffer, but let a burst's worth of it go.
        let mut pending = pending;
        pending.clear();
        pending.shrink_to(crate::instance::KEPT_CAPACITY);
        if self.pending.is_empty() {
            self.pending = pending;
        }
        self.ranking = ranking;
    }
}

/// Herd control after a reply headed by candidate `head`: record it, count
/// a reservation on it for the client on `conn`, and move the members
/// whose predicted figures changed (the head, and the member whose
/// reservation this one replaced) to their new places.
/// (`incremental`: the kept order is in use this round).
fn reserve_head(cx: &mut Cx<'_>, ranking: &mut Ranking, head: usize, conn: ConnectionId, incremental: bool) {
    let head_id = ranking.sources[head].0;
    if incremental {
        ranking.rerank.remove(&ranking.reported, &ranking.predicted, head);
    }
    cx.herd.headed(head_id);
    let ttl = cx.config.reservation_ttl;
    let limit = cx.config.limits.max_reservations;
    let (replaced, _) = cx.herd.reserve(conn, head_id, cx.now, ttl, limit);
    predict(cx, ranking, head);
    if incremental {
        ranking.rerank.set_last_headed(head, cx.herd.last_headed(head_id));
        ranking.rerank.insert(&ranking.reported, &ranking.predicted, head);
    }
    if let Some(i) = replaced.and_then(|old| ranking.index_of(old)) {
        if incremental {
            ranking.rerank.remove(&ranking.reported, &ranking.predicted, i);
        }
        predict(cx, ranking, i);
        if incremental {
            ranking.rerank.insert(&ranking.reported, &ranking.predicted, i);
        }
    }
}

/// The limits a reply must fit: the wire's default frame, this
/// instance's list length.
fn reply_limits(config: &InstanceConfig) -> Limits {
    Limits::default().with_max_list_len(config.max_list_len)
}

/// Candidate `i`'s predicted figures: reported plus live reservations.
fn predict(cx: &mut Cx<'_>, ranking: &mut Ranking, i: usize) {
    let live = cx.herd.live(ranking.sources[i].0, cx.now, cx.config.reservation_ttl);
    ranking.predicted[i] = cx.herd.predict(ranking.reported[i], live);
}

/// The figures of one round's ranking, kept between rounds for their capacity.
#[derive(Debug, Default)]
pub(super) struct Ranking {
    /// Who each candidate is, sorted by id.
    sources: Vec<(InstanceId, Source)>,
    /// Figures as reported (own: live; members not asked: registry).
    reported: Vec<Candidate>,
    /// Reported plus live reservations (equal to `reported` without herd control).
    predicted: Vec<Candidate>,
    /// The candidates kept in rank order between replies.
    rerank: Rerank,
    /// One reply's list: indices into the vectors above.
    list: Vec<usize>,
    /// Scratch for a full rank (a round with one waiting handshake).
    scratch: TailScratch,
    /// Scratch: live reservations per candidate.
    live: Vec<u32>,
}

impl Ranking {
    fn index_of(&self, id: InstanceId) -> Option<usize> {
        self.sources.binary_search_by_key(&id, |&(s, _)| s).ok()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.sources.capacity() * size_of::<(InstanceId, Source)>()
            + (self.reported.capacity() + self.predicted.capacity()) * size_of::<Candidate>()
            + self.rerank.heap_bytes()
            + self.list.capacity() * size_of::<usize>()
            + self.scratch.heap_bytes()
            + self.live.capacity() * size_of::<u32>()
    }
}
