//! The end of a query round (SPEC 2.4-2.7): the round's candidates (this
//! instance, the peers that answered, the members not asked with their
//! registry figures), their predicted figures, and one ranked reply per
//! waiting handshake, herd control reserving each reply's head.

use std::time::Instant;

use super::rerank::{rank_full, Rerank, TailScratch};
use super::round::{PeerState, Round, Source};
use super::share::Weight;
use super::{Instance, Timer};
use crate::wire::{entries_that_fit, HandshakeOutcome, Limits, RankedEntry, RankedList};
use crate::workload::{Candidate, InstanceId};

impl Instance {
    /// Answers every waiting handshake from the round's figures.
    pub(super) fn finish_round(&mut self, now: Instant) {
        self.timers.stop(Timer::Peers);
        self.timers.stop(Timer::Registry);
        let (peers, unasked, stale) = match self.round.take() {
            Some(Round::Peers { peers, unasked, stale, .. }) => (peers, unasked, stale),
            // Not reached: rounds finish only from the peer phase; answer with self alone.
            Some(Round::Registry { .. }) => (Vec::new(), Vec::new(), true),
            None => return,
        };
        self.stats.peer_silent +=
            peers.iter().filter(|p| matches!(p.state, PeerState::Waiting)).count() as u64;

        let mut ranking = std::mem::take(&mut self.ranking);
        ranking.reported.clear();
        ranking.sources.clear();
        // Candidates ordered by id, so tie rotation by salt is deterministic.
        let own_id = self.config.id;
        let own = self.own_candidate();
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
        let herd = self.config.herd_control;
        ranking.predicted.clear();
        ranking.predicted.extend_from_slice(&ranking.reported);
        if herd {
            let ttl = self.config.reservation_ttl;
            self.herd.fix_weight(now, ttl);
            self.herd.live_each(&ranking.sources, now, ttl, &mut self.stats, &mut ranking.live);
            for ((p, r), &live) in ranking.predicted.iter_mut().zip(&ranking.reported).zip(&ranking.live) {
                *p = self.herd.predict(*r, live);
            }
            self.herd.forget_departed(&ranking.sources, self.config.limits.max_members);
        }
        // One waiting handshake (the usual case below a burst) is one full
        // rank; keeping the order for later replies pays only for several
        // (the two give the same lists: see `rerank_tests.rs`).
        let pending = std::mem::take(&mut self.pending);
        let incremental = pending.len() > 1;
        if incremental {
            let Ranking { sources, reported, predicted, rerank, .. } = &mut ranking;
            rerank.build(reported, predicted, herd, |i| self.herd.last_headed(sources[i].0));
        }
        for handshake in &pending {
            let Ranking { sources, reported, predicted, rerank, list, scratch, .. } = &mut ranking;
            if incremental {
                rerank.list(reported, predicted, handshake.salt, self.config.max_list_len, list);
            } else {
                let herd = herd.then_some(&self.herd);
                rank_full(herd, sources, reported, predicted, handshake.salt, scratch, list);
                list.truncate(self.config.max_list_len);
            }
            let mut entries: Vec<RankedEntry> = ranking
                .list
                .iter()
                .map(|&i| {
                    let (id, source) = ranking.sources[i];
                    let endpoint = match (source, &self.snapshot) {
                        (Source::Peer(m), Some(snapshot)) => snapshot.members[m].endpoint.clone(),
                        _ => self.config.endpoint.clone(),
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
            entries.truncate(entries_that_fit(&entries, &self.reply_limits()));
            if let (true, Some(&head)) = (herd, ranking.list.first()) {
                self.reserve_head(&mut ranking, head, handshake.conn, now, incremental);
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

    /// Herd control after a reply headed by candidate `head`: record it, count
    /// a reservation on it for the client on `conn`, and move the members
    /// whose predicted figures changed (the head, and the member whose
    /// reservation this one replaced) to their new places.
    /// (`incremental`: the kept order is in use this round).
    fn reserve_head(
        &mut self,
        ranking: &mut Ranking,
        head: usize,
        conn: super::ConnectionId,
        now: Instant,
        incremental: bool,
    ) {
        let head_id = ranking.sources[head].0;
        if incremental {
            ranking.rerank.remove(&ranking.reported, &ranking.predicted, head);
        }
        self.herd.headed(head_id);
        let ttl = self.config.reservation_ttl;
        let limit = self.config.limits.max_reservations;
        let (replaced, _) = self.herd.reserve(conn, head_id, now, ttl, limit, &mut self.stats);
        self.predict(ranking, head, now);
        if incremental {
            ranking.rerank.set_last_headed(head, self.herd.last_headed(head_id));
            ranking.rerank.insert(&ranking.reported, &ranking.predicted, head);
        }
        if let Some(i) = replaced.and_then(|old| ranking.index_of(old)) {
            if incremental {
                ranking.rerank.remove(&ranking.reported, &ranking.predicted, i);
            }
            self.predict(ranking, i, now);
            if incremental {
                ranking.rerank.insert(&ranking.reported, &ranking.predicted, i);
            }
        }
    }

    /// The limits a reply must fit: the wire's default frame, this
    /// instance's list length.
    fn reply_limits(&self) -> Limits {
        Limits::default().with_max_list_len(self.config.max_list_len)
    }

    /// Candidate `i`'s predicted figures: reported plus live reservations.
    fn predict(&mut self, ranking: &mut Ranking, i: usize, now: Instant) {
        let live = self.herd.live(ranking.sources[i].0, now, self.config.reservation_ttl, &mut self.stats);
        ranking.predicted[i] = self.herd.predict(ranking.reported[i], live);
    }
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
