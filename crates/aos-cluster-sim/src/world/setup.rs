//! Building a run: instances, seed lists, arrivals, faults and floods
//! scheduled from the scenario.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aos_cluster::workload::{InstanceId, Role};
use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, DEFAULT_PORT};

use super::state::{
    derive, ClientState, Ev, InstanceState, Target, ARRIVALS, CLIENT_LIST, FAULTS, FLOOD, NETWORK,
};
use super::{Record, Series, Simulation};
use crate::arrivals::ArrivalGroup;
use crate::queue::EventQueue;
use crate::registry::Registry;
use crate::rng::Rng;
use crate::scenario::{FaultKind, Scenario, Seed};
use crate::strategy::Strategy;
use crate::SimError;

fn endpoint(host: &str) -> Result<Endpoint, SimError> {
    Endpoint::new(host, DEFAULT_PORT).map_err(|e| SimError::Scenario(e.to_string()))
}

impl Simulation {
    /// Builds a run. Every time it reports is a `Duration` since `epoch`; the
    /// machines see `epoch + t`. Same scenario, strategy and seed: the same run.
    pub fn new(scenario: &Scenario, strategy: Strategy, seed: u64, epoch: Instant) -> Result<Self, SimError> {
        scenario.validate().map_err(SimError::Scenario)?;
        let mut endpoints = HashMap::default();
        let mut instances = Vec::new();
        for group in &scenario.instances {
            for _ in 0..group.count {
                let index = instances.len() as u32;
                let ep = endpoint(&format!("aos{index}"))?;
                endpoints.insert(ep.clone(), Target::Instance(index));
                let config = InstanceConfig {
                    id: InstanceId(index),
                    endpoint: ep,
                    cluster: (group.role != Role::Standalone).then(|| scenario.cluster.clone()),
                    role: group.role,
                    max_sessions: group.max_sessions,
                    accepting: group.accepting,
                    herd_control: strategy.herd_control(),
                    fan_out: strategy.fan_out(),
                    ..scenario.instance.clone()
                };
                config.validate().map_err(|e| SimError::Config(format!("instance {index}: {e}")))?;
                instances.push(InstanceState {
                    machine: None,
                    accepting: group.accepting,
                    max_sessions: group.max_sessions,
                    config,
                    life: 0,
                    deadline: None,
                    host_down: false,
                    refuse_clients: false,
                    silent_peers: false,
                    slow_peers: Duration::ZERO,
                    over_capacity: false,
                    returns: None,
                    holders: Vec::new(),
                });
            }
        }
        let mut seeds = Vec::new();
        let default_seeds: Vec<Seed> = (0..instances.len().min(3) as u32).map(Seed::Instance).collect();
        let seed_specs = if scenario.seeds.is_empty() { &default_seeds } else { &scenario.seeds };
        for (j, spec) in seed_specs.iter().enumerate() {
            let ep = match *spec {
                Seed::Instance(i) => instances[i as usize].config.endpoint.clone(),
                Seed::Blackhole => {
                    let ep = endpoint(&format!("blackhole{j}"))?;
                    endpoints.insert(ep.clone(), Target::Blackhole);
                    ep
                }
                Seed::Refused => {
                    let ep = endpoint(&format!("refused{j}"))?;
                    endpoints.insert(ep.clone(), Target::Refused);
                    ep
                }
            };
            seeds.push(ep);
        }
        let client_template =
            ClientConfig { seeds, cluster: Some(scenario.cluster.clone()), ..scenario.client.clone() };
        client_template.validate().map_err(|e| SimError::Config(format!("client: {e}")))?;
        // A flood without targets goes where every real client handshakes
        // first: the first instance of the seed list.
        let first_seed = seed_specs.iter().find_map(|s| match *s {
            Seed::Instance(i) => Some(i),
            Seed::Blackhole | Seed::Refused => None,
        });
        let flood_targets =
            scenario.floods.iter().map(|f| f.targets_or(first_seed.into_iter().collect())).collect();

        let n_instances = instances.len() as u64;
        let total_clients = u64::from(scenario.client_count());
        let max_steps = if scenario.run.max_steps > 0 {
            scenario.run.max_steps
        } else {
            // A hostile handshake costs a handful of events (send, reply,
            // close), plus its share of the query rounds it joins.
            1_000_000
                + 64 * (2 * total_clients + 1) * (n_instances + 8)
                + scenario.floods.iter().map(|f| 16 * f.expected_handshakes()).sum::<u64>()
        };
        let mut sim = Simulation {
            scenario: scenario.clone(),
            strategy,
            seed,
            epoch,
            record: Record::default(),
            queue: EventQueue::default(),
            net_rng: Rng::new(derive(seed, NETWORK)),
            fault_rng: Rng::new(derive(seed, FAULTS)),
            flood_rng: Rng::new(derive(seed, FLOOD)),
            registry: Registry::new(scenario.registry.clone()),
            series: Series { times: Vec::new(), sessions: vec![Vec::new(); instances.len()] },
            instances,
            clients: Vec::new(),
            client_template,
            records: Vec::new(),
            admissions: Vec::new(),
            endpoints,
            conns: HashMap::default(),
            next_conn: 0,
            flood_targets,
            hostile_sent: 0,
            hostile_answered: 0,
            active_efforts: 0,
            active_measured: 0,
            pending_starts: 0,
            pending_measured: 0,
            admitted_while_draining: 0,
            retired_queries: (0, 0),
            max_round_queries: 0,
            loads: None,
            stop_scheduled: false,
            steps: 0,
            max_steps,
            trace: Vec::new(),
        };
        sim.schedule_arrivals();
        for (i, group_start) in sim.instance_starts().into_iter().enumerate() {
            sim.pending_starts += 1;
            sim.queue.push(group_start, Ev::Start { inst: i as u32 });
        }
        let mut faults: Vec<(usize, Duration)> =
            sim.scenario.faults.iter().map(|f| f.at).enumerate().collect();
        faults.sort_by_key(|&(i, at)| (at, i));
        for (index, at) in faults {
            sim.pending_starts += 1;
            if let FaultKind::Crash { clients_return: true, measure_returns: true, .. } =
                sim.scenario.faults[index].kind
            {
                sim.pending_measured += 1;
            }
            sim.queue.push(at, Ev::Fault { index });
        }
        // Floods are background: they do not keep the run going (not
        // counted in `pending_starts`), and they come last so the queue's
        // order of everything else is the flood-free run's.
        for flood in 0..sim.scenario.floods.len() {
            sim.schedule_next_hostile(Duration::ZERO, flood);
        }
        Ok(sim)
    }

    fn instance_starts(&self) -> Vec<Duration> {
        self.scenario.instances.iter().flat_map(|g| (0..g.count).map(move |_| g.start_at)).collect()
    }

    fn schedule_arrivals(&mut self) {
        let mut rng = Rng::new(derive(self.seed, ARRIVALS));
        let groups: Vec<ArrivalGroup> = self.scenario.arrivals.clone();
        for (g, group) in groups.iter().enumerate() {
            for offset in group.process.offsets(&mut rng) {
                let client = self.clients.len() as u32;
                self.clients.push(ClientState {
                    connector: None,
                    effort: 0,
                    record: usize::MAX,
                    deadline: None,
                    attempts: Vec::new(),
                    session: None,
                    holder_slot: usize::MAX,
                    group: g,
                    rng: Rng::new(derive(self.seed, CLIENT_LIST + u64::from(client))),
                    baseline_attempts: 0,
                    return_measured: false,
                });
                self.pending_starts += 1;
                if group.measured {
                    self.pending_measured += 1;
                }
                self.queue.push(group.start + offset, Ev::Arrive { client });
            }
        }
    }
}
