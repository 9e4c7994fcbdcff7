//! The reference model of one ranked reply: each candidate's predicted
//! workload (its report plus herd control's reservations on it) and the list
//! the instance must send.

use std::time::{Duration, Instant};

use aos_cluster::instance::ConnectionId;
use aos_cluster::wire::{RankedEntry, RankedList};
use aos_cluster::workload::{rank, Candidate, InstanceId, Workload};

use super::HerdModel;
use crate::instance_ops::endpoint_of;

/// `reported` plus `live` reservations at `weight = (landed, made)`:
/// scaled by `made` so the fraction compares exactly (sessions rounded up
/// where the scaled figures overflow).
fn predict(reported: Candidate, live: u32, (landed, made): (u32, u32)) -> Candidate {
    let w = reported.workload;
    let connected = u64::from(w.connected) * u64::from(made) + u64::from(live) * u64::from(landed);
    let max = u64::from(w.max_sessions) * u64::from(made);
    let workload = match (u32::try_from(connected), u32::try_from(max)) {
        (Ok(connected), Ok(max_sessions)) => Workload { connected, max_sessions },
        _ => {
            let extra = (u64::from(live) * u64::from(landed)).div_ceil(u64::from(made));
            Workload { connected: w.connected.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX)), ..w }
        }
    };
    Candidate { workload, ..reported }
}

/// Predicted figures as a reply lists them: unscaled, sessions rounded down.
pub(crate) fn shown(predicted: Workload, reported: Workload) -> Workload {
    if reported.max_sessions == 0 || predicted.max_sessions == reported.max_sessions {
        return predicted;
    }
    let scale = predicted.max_sessions / reported.max_sessions;
    Workload { connected: predicted.connected / scale.max(1), max_sessions: reported.max_sessions }
}

/// Each candidate's predicted figures: reported plus live reservations at
/// the round's weight (with herd control; without, the reported figures).
pub(crate) fn predicted(
    herd: &HerdModel,
    candidates: &[(InstanceId, Candidate)],
    herd_control: bool,
    now: Instant,
    ttl: Duration,
) -> Vec<Candidate> {
    candidates
        .iter()
        .map(
            |&(id, c)| {
                if herd_control {
                    predict(c, herd.predicted_sessions(id, now, ttl), herd.weight)
                } else {
                    c
                }
            },
        )
        .collect()
}

/// What one ranked reply is built from.
pub(crate) struct ReplyInput<'a> {
    /// Self and the peers that answered this round, sorted by id, with their
    /// reported figures (own: live).
    pub(crate) candidates: &'a [(InstanceId, Candidate)],
    pub(crate) herd_control: bool,
    pub(crate) salt: u64,
    pub(crate) conn: ConnectionId,
    pub(crate) now: Instant,
    pub(crate) reservation_ttl: Duration,
    pub(crate) max_reservations: usize,
    pub(crate) max_list_len: usize,
    pub(crate) stale: bool,
}

/// The exact reply for one handshake, updating the herd model as the
/// machine must (the head of the full order is reserved for `conn`).
///
/// SPEC 2.4-2.6: members eligible by their predicted figures (reported plus
/// live reservations) come first, ranked by those figures, with the head's
/// tie group ordered least recently headed first (never-headed members
/// first; equal records in `rank()`'s order). Members only
/// predicted full (reported eligible) follow, ranked by reported figures,
/// and are listed with their reported figures; the others with predicted.
pub(crate) fn expected_reply(herd: &mut HerdModel, input: &ReplyInput<'_>) -> RankedList {
    let ids: Vec<InstanceId> = input.candidates.iter().map(|&(id, _)| id).collect();
    let reported: Vec<Candidate> = input.candidates.iter().map(|&(_, c)| c).collect();
    let predicted = predicted(herd, input.candidates, input.herd_control, input.now, input.reservation_ttl);
    let mut order = rank(&predicted, input.salt);
    if input.herd_control {
        if let Some(&head) = order.first() {
            // The head's tie group, least recently headed first (never: 0),
            // ties between records in rank()'s order.
            let tied =
                order.iter().take_while(|&&i| predicted[i].workload == predicted[head].workload).count();
            let mut group: Vec<(u64, usize, usize)> = order[..tied]
                .iter()
                .enumerate()
                .map(|(pos, &i)| (herd.last_headed.get(&ids[i]).copied().unwrap_or(0), pos, i))
                .collect();
            group.sort();
            for (slot, (_, _, i)) in order.iter_mut().zip(group) {
                *slot = i;
            }
        }
        let tail: Vec<Candidate> = reported
            .iter()
            .zip(&predicted)
            .map(|(r, p)| Candidate {
                accepting: r.accepting && r.is_eligible() && p.workload.is_full(),
                ..*r
            })
            .collect();
        order.extend(rank(&tail, input.salt));
    }
    let entries = order
        .iter()
        .take(input.max_list_len)
        .map(|&i| {
            let workload = if predicted[i].workload.is_full() {
                reported[i].workload
            } else {
                shown(predicted[i].workload, reported[i].workload)
            };
            RankedEntry { id: ids[i], endpoint: endpoint_of(ids[i]), workload }
        })
        .collect();
    if let (true, Some(&head)) = (input.herd_control, order.first()) {
        herd.reserve(input.conn, ids[head], input, &ids);
    }
    RankedList { stale: input.stale, entries }
}
