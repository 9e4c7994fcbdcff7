//! Phase 3: the walk down the ranked list (or, in direct mode, the one
//! answering seed), one session request at a time, until one is accepted.

use std::time::Instant;

use super::event::Session;
use super::handshake::HandshakeWalk;
use super::log::{AttemptId, AttemptOutcome, Phase};
use super::{Action, Connector, Stage, Timer};
use crate::endpoint::Endpoint;
use crate::wire::{RankedEntry, SessionOutcome, SessionReply, SessionRequest};
use crate::workload::InstanceId;

/// Where phase 3 may go.
#[derive(Debug)]
pub(super) enum Targets {
    /// The ranked list, best first, cut and without repeats.
    Ranked(Vec<RankedEntry>),
    /// Direct mode: the seed that answered.
    Direct { endpoint: Endpoint, instance: Option<InstanceId> },
}

impl Targets {
    pub(super) fn len(&self) -> usize {
        match self {
            Targets::Ranked(entries) => entries.len(),
            Targets::Direct { .. } => 1,
        }
    }

    fn get(&self, rank: usize) -> Option<(&Endpoint, Option<InstanceId>)> {
        match self {
            Targets::Ranked(entries) => entries.get(rank).map(|e| (&e.endpoint, Some(e.id))),
            Targets::Direct { endpoint, instance } => (rank == 0).then_some((endpoint, *instance)),
        }
    }
}

/// The target walk of one round.
#[derive(Debug)]
pub(super) struct TargetWalk {
    targets: Targets,
    /// The position of the current (or next) session attempt.
    rank: usize,
    /// The session request in flight, if any.
    pub(super) attempt: Option<AttemptId>,
}

impl TargetWalk {
    pub(super) fn new(targets: Targets) -> Self {
        TargetWalk { targets, rank: 0, attempt: None }
    }
}

/// Buffers of finished stages, so later rounds reuse their capacity instead
/// of allocating again.
#[derive(Debug, Default)]
pub(super) struct Spare {
    walk: HandshakeWalk,
    targets: Vec<RankedEntry>,
    order: Vec<(u64, usize)>,
    repeat: Vec<bool>,
}

impl Spare {
    pub(super) fn with_seeds(seeds: usize) -> Self {
        let mut spare = Spare::default();
        spare.walk.order.reserve(seeds);
        spare.walk.pending.reserve(seeds);
        spare
    }

    /// An empty walk with the capacity of the last one.
    pub(super) fn take_walk(&mut self) -> HandshakeWalk {
        let mut walk = std::mem::take(&mut self.walk);
        walk.order.clear();
        walk.pending.clear();
        walk.next = 0;
        walk.held = None;
        walk
    }

    pub(super) fn keep_walk(&mut self, walk: HandshakeWalk) {
        self.walk = walk;
    }

    pub(super) fn keep_targets(&mut self, walk: TargetWalk) {
        if let Targets::Ranked(mut entries) = walk.targets {
            entries.clear();
            self.targets = entries;
        }
    }

    /// Drops every entry whose target or instance id appeared earlier.
    pub(super) fn drop_repeats(&mut self, entries: &mut Vec<RankedEntry>) {
        dedup_entries(entries, &mut self.order, &mut self.repeat);
    }
}

impl Connector {
    /// The session request in flight, if any.
    pub(super) fn session_attempt(&self) -> Option<AttemptId> {
        match &self.stage {
            Stage::Connecting(walk) => walk.attempt,
            _ => None,
        }
    }

    /// Sends the session request to the target at the current rank, or ends
    /// the round when the list is used up.
    pub(super) fn next_target(&mut self, now: Instant) {
        let Stage::Connecting(walk) = &mut self.stage else { return };
        if walk.attempt.take().is_some() {
            walk.rank += 1;
        }
        let rank = walk.rank;
        let Some((endpoint, _)) = walk.targets.get(rank) else {
            self.timers.stop(Timer::Session);
            return self.round_failed(now);
        };
        let endpoint = endpoint.clone();
        let attempt = self.log.start(self.round, Phase::Session, rank, &endpoint, now);
        walk.attempt = Some(attempt);
        self.timers.set(Timer::Session, now + self.config.connect_timeout);
        self.stats.session_requests += 1;
        let request = SessionRequest { request_id: attempt.request_id() };
        self.actions.push_back(Action::SendSessionRequest { attempt, rank, endpoint, request });
    }

    pub(super) fn on_session_reply(&mut self, attempt: AttemptId, reply: SessionReply, now: Instant) {
        if self.session_attempt() != Some(attempt) {
            return self.ignore_or_misfit(attempt, now);
        }
        if !self.echoes_request_id(attempt, reply.request_id, now) {
            return;
        }
        let session_id = match reply.outcome {
            SessionOutcome::Rejected(reason) => {
                return self.fail_attempt(attempt, AttemptOutcome::Rejected(reason), now)
            }
            SessionOutcome::Accepted { session_id } => session_id,
        };
        let Stage::Connecting(walk) = &self.stage else { return };
        let Some((endpoint, instance)) = walk.targets.get(walk.rank) else { return };
        let endpoint = endpoint.clone();
        self.finish(attempt, AttemptOutcome::Accepted { session_id }, now);
        self.timers.stop_all();
        let session =
            Session { attempt, endpoint: endpoint.clone(), instance, session_id, round: self.round };
        self.enter(Stage::Connected(session));
        self.actions.push_back(Action::Connected { attempt, endpoint, instance, session_id });
    }
}

/// Lists up to this long are deduplicated by direct comparison; longer ones
/// through sorted indices, so a 1024-entry list costs O(n log n), not O(n^2).
const SMALL_LIST: usize = 16;

/// Drops every entry whose endpoint or instance id appeared earlier in the
/// list (a repeat of anything earlier, kept or not), preserving order, in
/// place. `order` and `repeat` are scratch space whose capacity is reused.
fn dedup_entries(entries: &mut Vec<RankedEntry>, order: &mut Vec<(u64, usize)>, repeat: &mut Vec<bool>) {
    repeat.clear();
    if entries.len() <= SMALL_LIST {
        repeat.extend((0..entries.len()).map(|i| {
            entries[..i].iter().any(|e| e.endpoint == entries[i].endpoint || e.id == entries[i].id)
        }));
    } else {
        repeat.resize(entries.len(), false);
        // Sorting by (key, position) puts each key's first occurrence first in
        // its run. Endpoints are keyed by a fingerprint (equal endpoints, equal
        // fingerprints), so the sort compares integers, not text; only a run
        // of equal fingerprints is then sorted by the endpoints themselves.
        order.clear();
        order.extend(entries.iter().enumerate().map(|(i, e)| (fingerprint(&e.endpoint), i)));
        order.sort_unstable();
        for run in order.chunk_by_mut(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            run.sort_unstable_by(|&(_, a), &(_, b)| {
                entries[a].endpoint.cmp(&entries[b].endpoint).then(a.cmp(&b))
            });
            for pair in run.windows(2) {
                if entries[pair[0].1].endpoint == entries[pair[1].1].endpoint {
                    repeat[pair[1].1] = true;
                }
            }
        }
        order.clear();
        order.extend(entries.iter().enumerate().map(|(i, e)| (u64::from(e.id.0), i)));
        order.sort_unstable();
        for pair in order.windows(2) {
            if pair[0].0 == pair[1].0 {
                repeat[pair[1].1] = true;
            }
        }
    }
    let mut position = 0;
    entries.retain(|_| {
        position += 1;
        !repeat[position - 1]
    });
}

/// FNV-1a over an endpoint's parts: equal endpoints give equal values.
fn fingerprint(endpoint: &Endpoint) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    // `@` never occurs in a name, so it keeps instance and host apart.
    for &byte in
        endpoint.instance().unwrap_or("").as_bytes().iter().chain(b"@").chain(endpoint.host().as_bytes())
    {
        eat(byte);
    }
    endpoint.port().to_le_bytes().into_iter().for_each(eat);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;
    use proptest::prelude::*;

    proptest! {
        /// Both dedup paths (short and long lists) keep exactly the entries
        /// whose endpoint and id appear nowhere earlier, in order.
        #[test]
        fn dedup_keeps_first_occurrences(keys in proptest::collection::vec((0..12u16, 0..12u32), 0..40)) {
            let mut entries: Vec<RankedEntry> = keys
                .iter()
                .map(|&(port, id)| RankedEntry {
                    id: InstanceId(id),
                    endpoint: Endpoint::new("aos", port + 1).expect("valid"),
                    workload: Workload::new(0, 1),
                })
                .collect();
            let expected: Vec<(u16, u32)> = keys
                .iter()
                .enumerate()
                .filter(|(i, k)| !keys[..*i].iter().any(|e| e.0 == k.0 || e.1 == k.1))
                .map(|(_, &k)| k)
                .collect();
            dedup_entries(&mut entries, &mut Vec::new(), &mut Vec::new());
            let got: Vec<(u16, u32)> = entries.iter().map(|e| (e.endpoint.port() - 1, e.id.0)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
