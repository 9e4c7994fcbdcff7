//! The driver: real `Connector`s and `Instance`s wired through the simulated
//! network and registry, on the virtual clock.
//!
//! Nothing here decides protocol. The simulator only carries messages (as
//! [`Message`](aos_cluster::wire::Message) values: the codec is not on the
//! path, see the crate docs), fires timers at exactly the deadline each
//! machine asks for, applies the scenario's faults, and records what
//! happened. One concern per file:
//!
//! - `state`: what each party holds, the queued events, the seeded streams;
//! - `setup`: building a run from a scenario;
//! - `clients`: driving the real clients' `Connector`s;
//! - `instances`: driving the `Instance`s and carrying out their actions;
//! - `network`: transports between the parties, replies and closes;
//! - `faults`: the scenario's faults and admin actions;
//! - `flood`: hostile clients that handshake and never ask for a session;
//! - `observe`: samples, load snapshots and the run's metrics;
//! - `hash`: the lookup maps' hasher.

mod clients;
mod faults;
mod flood;
mod hash;
mod instances;
mod network;
mod observe;
mod setup;
mod state;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aos_cluster::instance::{self, Instance};
use aos_cluster::{ClientConfig, Endpoint, InstanceStats};

use self::hash::FastHash;
use self::state::{ClientState, Conn, Ev, InstanceState, Target};
use crate::metrics::{Admission, ClientRecord, InstanceLoad, RunMetrics};
use crate::net::{Fate, Link};
use crate::queue::EventQueue;
use crate::registry::Registry;
use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::strategy::Strategy;
use crate::SimError;

/// What a run records besides its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// Every event processed, as text (for replay checks; slow).
    pub trace: bool,
    /// Sessions per instance over time.
    pub series: bool,
}

/// Sessions per instance sampled over time.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Series {
    /// Sample times since the epoch.
    pub times: Vec<Duration>,
    /// `sessions[i][k]`: sessions on instance `i` at `times[k]`.
    pub sessions: Vec<Vec<u32>>,
}

/// Everything one run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The figures.
    pub metrics: RunMetrics,
    /// Every connection effort, in the order they began.
    pub clients: Vec<ClientRecord>,
    /// Sessions per instance over time (empty unless recorded).
    pub series: Series,
    /// Every event processed (empty unless recorded).
    pub trace: Vec<String>,
    /// When the run stopped, since the epoch.
    pub stopped_at: Duration,
    /// Each instance machine's counters when the run stopped, in index
    /// order (`None` for an instance not running then: its counters went
    /// with its process).
    pub instance_stats: Vec<Option<InstanceStats>>,
}

/// One simulation run: a scenario, a strategy and a seed.
pub struct Simulation {
    scenario: Scenario,
    strategy: Strategy,
    seed: u64,
    epoch: Instant,
    record: Record,
    queue: EventQueue<Ev>,
    net_rng: Rng,
    fault_rng: Rng,
    /// Hostile clients' draws (see [`state::FLOOD`]).
    flood_rng: Rng,
    registry: Registry,
    instances: Vec<InstanceState>,
    clients: Vec<ClientState>,
    client_template: ClientConfig,
    records: Vec<ClientRecord>,
    admissions: Vec<Admission>,
    endpoints: HashMap<Endpoint, Target, FastHash>,
    conns: HashMap<u64, Conn, FastHash>,
    next_conn: u64,
    /// Per flood: the instances its hostile clients handshake with.
    flood_targets: Vec<Vec<u32>>,
    /// Hostile handshakes sent, and answered (the reply reached its client).
    hostile_sent: u64,
    hostile_answered: u64,
    active_efforts: u32,
    active_measured: u32,
    pending_starts: u32,
    pending_measured: u32,
    admitted_while_draining: u32,
    /// Peer queries and rounds of instance processes that crashed (their
    /// counters went with them).
    retired_queries: (u64, u64),
    /// The most `QueryPeer` actions one drain of an instance produced: one
    /// round's queries (a round sends them all at once, and a drain starts
    /// at most one round).
    max_round_queries: u64,
    loads: Option<(Duration, Vec<InstanceLoad>)>,
    stop_scheduled: bool,
    steps: u64,
    max_steps: u64,
    series: Series,
    trace: Vec<String>,
}

impl Simulation {
    /// Chooses what to record besides the metrics.
    pub fn record(mut self, record: Record) -> Self {
        self.record = record;
        if record.series {
            self.queue.push(Duration::ZERO, Ev::Sample);
        }
        self
    }

    fn at(&self, t: Duration) -> Instant {
        self.epoch + t
    }

    /// Runs to the end: every client settled and nothing left to happen (plus
    /// the settle time), or the horizon.
    pub fn run(mut self) -> Result<Outcome, SimError> {
        let horizon = self.scenario.run.horizon;
        while let Some(at) = self.queue.peek_time() {
            if at > horizon {
                break;
            }
            let Some((now, ev)) = self.queue.pop() else { break };
            self.steps += 1;
            if self.steps > self.max_steps {
                return Err(SimError::StepBound { steps: self.max_steps, at: now });
            }
            if self.record.trace {
                self.trace.push(format!("{:?} {ev:?}", now));
            }
            if let Ev::Stop = ev {
                break;
            }
            self.step(now, ev)?;
            if !self.stop_scheduled && self.active_efforts == 0 && self.pending_starts == 0 {
                self.stop_scheduled = true;
                self.queue.push(now + self.scenario.run.settle, Ev::Stop);
            }
        }
        Ok(self.finish())
    }

    fn step(&mut self, now: Duration, ev: Ev) -> Result<(), SimError> {
        match ev {
            Ev::Arrive { client } => {
                self.pending_starts -= 1;
                let measured = self.scenario.arrivals[self.clients[client as usize].group].measured;
                if measured {
                    self.pending_measured -= 1;
                }
                self.begin_effort(now, client, measured)?;
            }
            Ev::Return { client } => {
                self.pending_starts -= 1;
                let measured = self.clients[client as usize].return_measured;
                if measured {
                    self.pending_measured -= 1;
                }
                self.begin_effort(now, client, measured)?;
            }
            Ev::ClientTimer { client } => {
                let c = &mut self.clients[client as usize];
                if c.deadline == Some(now) {
                    c.deadline = None;
                    if let Some(connector) = c.connector.as_mut() {
                        connector.handle_timeout(self.epoch + now);
                    }
                    self.drain_client(now, client)?;
                }
            }
            Ev::InstanceTimer { inst } => {
                let s = &mut self.instances[inst as usize];
                if s.deadline == Some(now) {
                    s.deadline = None;
                    if let Some(machine) = s.machine.as_mut() {
                        machine.handle_timeout(self.epoch + now);
                    }
                    self.drain_instance(now, inst)?;
                }
            }
            Ev::ToClient { client, effort, event } => self.deliver_to_client(now, client, effort, event)?,
            Ev::ToInstance { inst, life, event } => self.deliver_to_instance(now, inst, life, event)?,
            Ev::RegistryRead { inst, life, query_id } => {
                let event = if self.registry.is_down(now) {
                    instance::Event::RegistryFailed { query_id, reason: "registry unavailable".into() }
                } else {
                    let members = self.registry.snapshot(now, Some(&self.scenario.cluster));
                    instance::Event::RegistrySnapshot { query_id, members }
                };
                if let Fate::Arrive(d) =
                    self.scenario.network.fate(now, Link::Registry(inst), &mut self.net_rng)
                {
                    self.queue.push(now + d, Ev::ToInstance { inst, life, event });
                }
            }
            Ev::RegistryWrite { heartbeat } => self.registry.write(now, heartbeat),
            Ev::SessionEnd { client, effort } => self.end_session(now, client, effort)?,
            Ev::Fault { index } => {
                self.pending_starts -= 1;
                self.apply_fault(now, index)?;
            }
            Ev::Start { inst } => {
                self.pending_starts -= 1;
                self.start_instance(now, inst)?;
            }
            Ev::Hostile { flood } => self.hostile_handshake(now, flood)?,
            Ev::Sample => {
                self.series.times.push(now);
                for (i, s) in self.instances.iter().enumerate() {
                    self.series.sessions[i].push(s.machine.as_ref().map_or(0, Instance::connected));
                }
                self.queue.push(now + self.scenario.run.sample_every, Ev::Sample);
            }
            Ev::Stop => {}
        }
        Ok(())
    }
}
