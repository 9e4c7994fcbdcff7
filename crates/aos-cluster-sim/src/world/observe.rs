//! What the run records: admissions, the load snapshot at the end of the
//! arrivals, and the metrics when the run stops.
//!
//! Only real clients are measured. Hostile clients of a flood never ask for
//! a session, so every session an instance counts is a real client's, and
//! the time-to-session figures come from real clients' records alone; the
//! flood shows only in its own counters.

use std::time::Duration;

use aos_cluster::instance::Instance;
use aos_cluster::workload::Role;

use super::{Outcome, Simulation};
use crate::metrics::{Admission, InstanceLoad, RunData, RunMetrics};

impl Simulation {
    pub(super) fn note_admission(&mut self, now: Duration, inst: u32, measured: bool) {
        let s = &mut self.instances[inst as usize];
        if let Some(machine) = &s.machine {
            if machine.connected() > s.max_sessions {
                s.over_capacity = true;
            }
        }
        if !s.accepting {
            self.admitted_while_draining += 1;
        }
        self.admissions.push(Admission { at: now, instance: inst, measured });
    }

    pub(super) fn snapshot_loads(&mut self, now: Duration) {
        let loads = self
            .instances
            .iter()
            .map(|s| InstanceLoad {
                connected: s.machine.as_ref().map_or(0, Instance::connected),
                max_sessions: s.max_sessions,
                survivor: s.machine.is_some()
                    && s.config.role == Role::Serving
                    && s.accepting
                    && !s.refuse_clients
                    && !s.host_down,
            })
            .collect();
        self.loads = Some((now, loads));
    }

    pub(super) fn finish(mut self) -> Outcome {
        let stopped_at = self.queue.now();
        if self.loads.is_none() {
            self.snapshot_loads(stopped_at);
        }
        let (end_of_arrivals, loads) = self.loads.take().unwrap_or_default();
        let over_capacity = self.instances.iter().filter(|s| s.over_capacity).count() as u32;
        let metrics = RunMetrics::compute(&RunData {
            rng_seed: self.seed,
            clients: &self.records,
            admissions: &self.admissions,
            loads: &loads,
            end_of_arrivals,
            window: self.scenario.run.window,
            over_capacity,
            admitted_while_draining: self.admitted_while_draining,
            steps: self.steps,
            hostile_handshakes: self.hostile_sent,
            hostile_answered: self.hostile_answered,
            peer_queries: self.retired_queries.0
                + self
                    .instances
                    .iter()
                    .filter_map(|s| s.machine.as_ref())
                    .map(|m| m.stats().round.peer_queries)
                    .sum::<u64>(),
            rounds: self.retired_queries.1
                + self
                    .instances
                    .iter()
                    .filter_map(|s| s.machine.as_ref())
                    .map(|m| m.stats().round.rounds)
                    .sum::<u64>(),
            max_peer_queries_in_a_round: self.max_round_queries,
        });
        let instance_stats =
            self.instances.iter().map(|s| s.machine.as_ref().map(|m| m.stats().clone())).collect();
        Outcome {
            metrics,
            clients: self.records,
            series: self.series,
            trace: self.trace,
            stopped_at,
            instance_stats,
        }
    }
}
