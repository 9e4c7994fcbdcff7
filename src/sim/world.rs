//! The driver: real `Connector`s and `Instance`s wired through the simulated
//! network and registry, on the virtual clock.
//!
//! Nothing here decides protocol. The simulator only carries messages (as
//! [`Message`] values: the codec is not on the path, see the module docs),
//! fires timers at exactly the deadline each machine asks for, applies the
//! scenario's faults, and records what happened.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::arrivals::ArrivalGroup;
use super::dist::SessionLength;
use super::metrics::{Admission, ClientOutcome, ClientRecord, InstanceLoad, RunData, RunMetrics};
use super::net::{Fate, Link};
use super::queue::EventQueue;
use super::registry::Registry;
use super::scenario::{FaultKind, Scenario, Seed};
use super::strategy::Strategy;
use super::SimError;
use crate::client::{self, AttemptId, Connector};
use crate::endpoint::Endpoint;
use crate::instance::{self, ConnectionId, Instance};
use crate::rng::Rng;
use crate::wire::{HandshakeOutcome, Message, QueryId, RejectReason, SessionId, SessionOutcome};
use crate::workload::{InstanceId, Role};
use crate::{ClientConfig, InstanceConfig};

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
}

#[derive(Debug)]
enum Ev {
    Arrive { client: u32 },
    Return { client: u32 },
    ClientTimer { client: u32 },
    InstanceTimer { inst: u32 },
    ToClient { client: u32, effort: u32, event: client::Event },
    ToInstance { inst: u32, life: u32, event: instance::Event },
    RegistryRead { inst: u32, life: u32, query_id: QueryId },
    RegistryWrite { heartbeat: crate::registry::Heartbeat },
    SessionEnd { client: u32, effort: u32 },
    Fault { index: usize },
    Start { inst: u32 },
    Sample,
    Stop,
}

/// Where an endpoint leads.
#[derive(Debug, Clone, Copy)]
enum Target {
    Instance(u32),
    Blackhole,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKind {
    Handshake,
    Session,
    /// A workload query from instance `from` (in its life `life`).
    Peer {
        from: u32,
        life: u32,
        query_id: QueryId,
    },
}

#[derive(Debug)]
struct Conn {
    client: u32,
    effort: u32,
    attempt: Option<AttemptId>,
    /// The instance has replied on it (nothing waits there any more).
    answered: bool,
    inst: u32,
    life: u32,
    kind: ConnKind,
    /// A session the instance admitted on this connection and nobody ended yet.
    session: Option<SessionId>,
}

struct ClientState {
    connector: Option<Connector>,
    effort: u32,
    record: usize,
    deadline: Option<Duration>,
    attempts: Vec<(AttemptId, u64)>,
    /// Connected: the instance, its life, the session id and the connection.
    session: Option<(u32, u32, SessionId, u64)>,
    group: usize,
    rng: Rng,
    baseline_attempts: u64,
    return_measured: bool,
}

struct InstanceState {
    machine: Option<Instance>,
    config: InstanceConfig,
    life: u32,
    deadline: Option<Duration>,
    host_down: bool,
    refuse_clients: bool,
    silent_peers: bool,
    slow_peers: Duration,
    accepting: bool,
    max_sessions: u32,
    over_capacity: bool,
    /// Crash policy: clients return within this window, measured or not.
    returns: Option<(Duration, bool)>,
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
    registry: Registry,
    instances: Vec<InstanceState>,
    clients: Vec<ClientState>,
    client_template: ClientConfig,
    records: Vec<ClientRecord>,
    admissions: Vec<Admission>,
    endpoints: HashMap<Endpoint, Target, FastHash>,
    conns: HashMap<u64, Conn, FastHash>,
    next_conn: u64,
    active_efforts: u32,
    active_measured: u32,
    pending_starts: u32,
    pending_measured: u32,
    admitted_while_draining: u32,
    loads: Option<(Duration, Vec<InstanceLoad>)>,
    stop_scheduled: bool,
    steps: u64,
    max_steps: u64,
    series: Series,
    trace: Vec<String>,
}

/// A 64-bit mix of the run seed and a stream name, so each party's randomness
/// depends on the seed and on who it is, never on the order of draws elsewhere:
/// two strategies see the same arrivals and session lengths.
fn derive(seed: u64, stream: u64) -> u64 {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

const ARRIVALS: u64 = 1;
const NETWORK: u64 = 2;
const FAULTS: u64 = 3;
const INSTANCE: u64 = 1 << 32;
const CLIENT: u64 = 2 << 32;
const CLIENT_LIST: u64 = 3 << 32;

/// The maps below are looked up on every message and never iterated, so
/// their order cannot leak; SipHash's flood resistance buys nothing against
/// the simulator's own keys, and costs a large share of a step.
type FastHash = BuildHasherDefault<MultiplyHasher>;

/// A multiply-rotate hasher (the Fx scheme): a few cycles per word.
#[derive(Default)]
struct MultiplyHasher(u64);

impl MultiplyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for MultiplyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.mix(u64::from(byte));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

fn endpoint(host: &str) -> Result<Endpoint, SimError> {
    Endpoint::new(host, crate::endpoint::DEFAULT_PORT).map_err(|e| SimError::Scenario(e.to_string()))
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

        let n_instances = instances.len() as u64;
        let total_clients = u64::from(scenario.client_count());
        let max_steps = if scenario.run.max_steps > 0 {
            scenario.run.max_steps
        } else {
            1_000_000 + 64 * (2 * total_clients + 1) * (n_instances + 8)
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
            active_efforts: 0,
            active_measured: 0,
            pending_starts: 0,
            pending_measured: 0,
            admitted_while_draining: 0,
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
        Ok(sim)
    }

    /// Chooses what to record besides the metrics.
    pub fn record(mut self, record: Record) -> Self {
        self.record = record;
        if record.series {
            self.queue.push(Duration::ZERO, Ev::Sample);
        }
        self
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

    fn at(&self, t: Duration) -> Instant {
        self.epoch + t
    }

    fn new_conn(&mut self, conn: Conn) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, conn);
        id
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

    // ----- clients -----

    fn begin_effort(&mut self, now: Duration, client: u32, measured: bool) -> Result<(), SimError> {
        let record = self.records.len();
        self.records.push(ClientRecord {
            client,
            measured,
            arrived: now,
            outcome: ClientOutcome::Pending,
            full_rejections: 0,
            attempts: 0,
        });
        self.active_efforts += 1;
        if measured {
            self.active_measured += 1;
        }
        let instant = self.at(now);
        for (_, conn) in std::mem::take(&mut self.clients[client as usize].attempts) {
            self.close_conn(now, conn);
        }
        let c = &mut self.clients[client as usize];
        c.record = record;
        c.effort += 1;
        c.session = None;
        // Attempts are counted from before the effort's first handshake is queued.
        let stats = c.connector.as_ref().map(|k| *k.stats()).unwrap_or_default();
        c.baseline_attempts = stats.handshakes + stats.session_requests;
        match c.connector.as_mut() {
            Some(connector) => connector.reconnect(instant).map_err(|e| SimError::Usage(e.to_string()))?,
            None => {
                let rng_seed = derive(self.seed, CLIENT + u64::from(client));
                let connector = Connector::new(self.client_template.clone(), instant, rng_seed)
                    .map_err(|e| SimError::Config(e.to_string()))?;
                c.connector = Some(connector);
            }
        }
        self.drain_client(now, client)
    }

    fn settle_effort(&mut self, now: Duration, client: u32, outcome: ClientOutcome) {
        let c = &self.clients[client as usize];
        let stats = c.connector.as_ref().map(|k| *k.stats()).unwrap_or_default();
        let attempts = (stats.handshakes + stats.session_requests - c.baseline_attempts) as u32;
        let record = &mut self.records[c.record];
        record.outcome = outcome;
        record.attempts = attempts;
        self.active_efforts -= 1;
        if record.measured {
            self.active_measured -= 1;
            if self.active_measured == 0 && self.pending_measured == 0 {
                self.snapshot_loads(now);
            }
        }
    }

    fn snapshot_loads(&mut self, now: Duration) {
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

    fn drain_client(&mut self, now: Duration, client: u32) -> Result<(), SimError> {
        loop {
            let c = &mut self.clients[client as usize];
            let Some(action) = c.connector.as_mut().and_then(Connector::poll_action) else { break };
            self.client_action(now, client, action)?;
        }
        let c = &mut self.clients[client as usize];
        let next = c.connector.as_ref().and_then(Connector::poll_timeout);
        reschedule(&mut self.queue, self.epoch, now, &mut c.deadline, next, Ev::ClientTimer { client });
        Ok(())
    }

    fn client_action(&mut self, now: Duration, client: u32, action: client::Action) -> Result<(), SimError> {
        let effort = self.clients[client as usize].effort;
        match action {
            client::Action::SendHandshake { attempt, endpoint, request, .. } => {
                let event = |conn| instance::Event::HandshakeRequest { conn, request };
                self.send_from_client(now, client, effort, attempt, &endpoint, ConnKind::Handshake, event);
            }
            client::Action::SendSessionRequest { attempt, endpoint, request, .. } => {
                let event = |conn| instance::Event::SessionRequest { conn, request };
                self.send_from_client(now, client, effort, attempt, &endpoint, ConnKind::Session, event);
            }
            client::Action::Close { attempt } => {
                let c = &mut self.clients[client as usize];
                if let Some(pos) = c.attempts.iter().position(|(a, _)| *a == attempt) {
                    let (_, conn) = c.attempts.swap_remove(pos);
                    self.close_conn(now, conn);
                }
            }
            client::Action::Connected { attempt, session_id, .. } => {
                let c = &mut self.clients[client as usize];
                let conn_id = c.attempts.iter().find(|(a, _)| *a == attempt).map(|&(_, conn)| conn);
                let conn = conn_id.and_then(|id| self.conns.get(&id).map(|k| (id, k.inst, k.life)));
                let Some((conn_id, inst, life)) = conn else {
                    return Err(SimError::Driver(format!("client {client} connected on an unknown attempt")));
                };
                c.session = Some((inst, life, session_id, conn_id));
                self.settle_effort(now, client, ClientOutcome::Connected { instance: inst, at: now });
                let alive = {
                    let s = &self.instances[inst as usize];
                    s.machine.is_some() && s.life == life
                };
                if !alive {
                    // Admitted just before the crash; the reset follows the reply.
                    self.lose_session(now, client)?;
                    return Ok(());
                }
                let group = self.clients[client as usize].group;
                let length = self.scenario.arrivals[group].session.clone();
                let mut rng = Rng::new(derive(self.seed, CLIENT + u64::from(client)) ^ u64::from(effort));
                if let Some(len) = SessionLength::sample(&length, &mut rng) {
                    self.queue.push(now + len, Ev::SessionEnd { client, effort });
                }
            }
            client::Action::Failed(error) => {
                let c = &mut self.clients[client as usize];
                for (_, conn) in std::mem::take(&mut c.attempts) {
                    self.close_conn(now, conn);
                }
                self.settle_effort(
                    now,
                    client,
                    ClientOutcome::Failed { at: now, attempt_log: error.to_string() },
                );
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn send_from_client(
        &mut self,
        now: Duration,
        client: u32,
        effort: u32,
        attempt: AttemptId,
        endpoint: &Endpoint,
        kind: ConnKind,
        event: impl FnOnce(ConnectionId) -> instance::Event,
    ) {
        let refused = |sim: &mut Self, rtt: Duration| {
            let event = client::Event::TransportFailed { attempt, reason: "connection refused".into() };
            sim.queue.push(now + rtt, Ev::ToClient { client, effort, event });
        };
        let inst = match self.endpoints.get(endpoint).copied() {
            Some(Target::Instance(i)) => i,
            Some(Target::Refused) => {
                let rtt = self.client_rtt();
                refused(self, rtt);
                return;
            }
            Some(Target::Blackhole) | None => return,
        };
        let s = &self.instances[inst as usize];
        let life = s.life;
        if s.host_down {
            return;
        }
        if s.machine.is_none() || s.refuse_clients {
            let rtt = self.client_rtt();
            refused(self, rtt);
            return;
        }
        match self.scenario.network.fate(now, Link::Client(inst), &mut self.net_rng) {
            Fate::Lost => {}
            Fate::Refused(rtt) => refused(self, rtt),
            Fate::Arrive(d) => {
                let attempt = Some(attempt);
                let conn = self.new_conn(Conn {
                    client,
                    effort,
                    attempt,
                    answered: false,
                    inst,
                    life,
                    kind,
                    session: None,
                });
                self.clients[client as usize].attempts.extend(attempt.map(|a| (a, conn)));
                let event = event(ConnectionId(conn));
                self.queue.push(now + d, Ev::ToInstance { inst, life, event });
            }
        }
    }

    fn client_rtt(&mut self) -> Duration {
        let l = &self.scenario.network.client_latency;
        l.sample(&mut self.net_rng) + l.sample(&mut self.net_rng)
    }

    /// The client closed an attempt's transport: the instance drops what waits
    /// on it, and a session it admitted there (the client never used) ends.
    fn close_conn(&mut self, now: Duration, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let latency = self.scenario.network.client_latency.sample(&mut self.net_rng);
        let (inst, life) = (c.inst, c.life);
        // Ends what waits there and the session it holds: the machine knows which.
        let event = instance::Event::ConnectionClosed { conn: ConnectionId(conn) };
        self.queue.push(now + latency, Ev::ToInstance { inst, life, event });
    }

    fn deliver_to_client(
        &mut self,
        now: Duration,
        client: u32,
        effort: u32,
        mut event: client::Event,
    ) -> Result<(), SimError> {
        let c = &mut self.clients[client as usize];
        let current = c.effort == effort && c.connector.is_some();
        let attempt = match &event {
            client::Event::HandshakeReply { attempt, .. }
            | client::Event::SessionReply { attempt, .. }
            | client::Event::TransportFailed { attempt, .. } => Some(*attempt),
            _ => None,
        };
        let conn = attempt.and_then(|a| c.attempts.iter().find(|(x, _)| *x == a).map(|&(_, conn)| conn));
        if !current {
            // A reply for an effort that is over: the transport was closed.
            if let Some(conn) = conn {
                self.close_conn(now, conn);
            }
            return Ok(());
        }
        match &mut event {
            client::Event::HandshakeReply { reply, .. } => {
                if let HandshakeOutcome::Ranked(list) = &mut reply.outcome {
                    self.strategy.reorder(&mut list.entries, &mut c.rng);
                }
            }
            client::Event::SessionReply { reply, .. }
                if reply.outcome == SessionOutcome::Rejected(RejectReason::Full) =>
            {
                self.records[c.record].full_rejections += 1;
            }
            _ => {}
        }
        let connector = c.connector.as_mut().ok_or_else(|| SimError::Driver("no connector".into()))?;
        connector.handle_event(event, self.epoch + now).map_err(|e| SimError::Usage(e.to_string()))?;
        // The machine names every transport it no longer needs (`Close`).
        self.drain_client(now, client)
    }

    fn end_session(&mut self, now: Duration, client: u32, effort: u32) -> Result<(), SimError> {
        let c = &mut self.clients[client as usize];
        if c.effort != effort {
            return Ok(());
        }
        let Some((_, _, _, conn)) = c.session.take() else { return Ok(()) };
        if let Some(connector) = c.connector.as_mut() {
            connector
                .handle_event(client::Event::SessionEnded, self.epoch + now)
                .map_err(|e| SimError::Usage(e.to_string()))?;
        }
        self.drain_client(now, client)?;
        self.close_conn(now, conn);
        Ok(())
    }

    /// The client's session died with its instance; it comes back if the
    /// crash policy says so.
    fn lose_session(&mut self, now: Duration, client: u32) -> Result<(), SimError> {
        let c = &mut self.clients[client as usize];
        let Some((inst, _, _, conn)) = c.session.take() else { return Ok(()) };
        self.conns.remove(&conn);
        if let Some(connector) = c.connector.as_mut() {
            let lost = client::Event::SessionLost { reason: format!("instance {inst} crashed") };
            connector.handle_event(lost, self.epoch + now).map_err(|e| SimError::Usage(e.to_string()))?;
        }
        self.drain_client(now, client)?;
        if let Some((within, measured)) = self.instances[inst as usize].returns {
            let span = within.as_nanos().min(u128::from(u64::MAX)) as u64;
            let back = Duration::from_nanos(self.fault_rng.below_or_eq(span));
            self.clients[client as usize].return_measured = measured;
            self.pending_starts += 1;
            if measured {
                self.pending_measured += 1;
            }
            self.queue.push(now + back, Ev::Return { client });
        }
        Ok(())
    }

    // ----- instances -----

    fn start_instance(&mut self, now: Duration, inst: u32) -> Result<(), SimError> {
        let instant = self.at(now);
        let s = &mut self.instances[inst as usize];
        s.life += 1;
        s.host_down = false;
        s.accepting = s.config.accepting;
        s.max_sessions = s.config.max_sessions;
        let rng_seed = derive(self.seed, INSTANCE + u64::from(inst)) ^ u64::from(s.life);
        let machine = Instance::new(s.config.clone(), instant, rng_seed)
            .map_err(|e| SimError::Config(e.to_string()))?;
        s.machine = Some(machine);
        self.drain_instance(now, inst)
    }

    fn drain_instance(&mut self, now: Duration, inst: u32) -> Result<(), SimError> {
        loop {
            let s = &mut self.instances[inst as usize];
            let Some(action) = s.machine.as_mut().and_then(Instance::poll_action) else { break };
            self.instance_action(now, inst, action)?;
        }
        let s = &mut self.instances[inst as usize];
        let next = s.machine.as_ref().and_then(Instance::poll_timeout);
        reschedule(&mut self.queue, self.epoch, now, &mut s.deadline, next, Ev::InstanceTimer { inst });
        Ok(())
    }

    fn instance_action(
        &mut self,
        now: Duration,
        inst: u32,
        action: instance::Action,
    ) -> Result<(), SimError> {
        let life = self.instances[inst as usize].life;
        match action {
            instance::Action::QueryRegistry { query_id, .. } => {
                if let Fate::Arrive(d) =
                    self.scenario.network.fate(now, Link::Registry(inst), &mut self.net_rng)
                {
                    self.queue.push(now + d, Ev::RegistryRead { inst, life, query_id });
                }
            }
            instance::Action::PublishHeartbeat(heartbeat) => {
                if let Fate::Arrive(d) =
                    self.scenario.network.fate(now, Link::Registry(inst), &mut self.net_rng)
                {
                    self.queue.push(now + d, Ev::RegistryWrite { heartbeat });
                }
            }
            instance::Action::QueryPeer { query_id, peer, endpoint, query } => {
                let unreachable = |sim: &mut Self, delay: Duration, reason: &str| {
                    let event = instance::Event::PeerUnreachable { query_id, peer, reason: reason.into() };
                    sim.queue.push(now + delay, Ev::ToInstance { inst, life, event });
                };
                let Some(Target::Instance(to)) = self.endpoints.get(&endpoint).copied() else {
                    unreachable(self, Duration::ZERO, "unknown endpoint");
                    return Ok(());
                };
                let p = &self.instances[to as usize];
                if p.host_down {
                    return Ok(());
                }
                let peer_life = p.life;
                if p.machine.is_none() {
                    let rtt = self.scenario.network.peer_latency.sample(&mut self.net_rng) * 2;
                    unreachable(self, rtt, "connection refused");
                    return Ok(());
                }
                match self.scenario.network.fate(now, Link::Peer(inst, to), &mut self.net_rng) {
                    Fate::Lost => {}
                    Fate::Refused(rtt) => unreachable(self, rtt, "connection refused"),
                    Fate::Arrive(d) => {
                        let conn = self.new_conn(Conn {
                            client: u32::MAX,
                            effort: 0,
                            attempt: None,
                            answered: false,
                            inst: to,
                            life: peer_life,
                            kind: ConnKind::Peer { from: inst, life, query_id },
                            session: None,
                        });
                        let event = instance::Event::WorkloadQuery { conn: ConnectionId(conn), query };
                        self.queue.push(now + d, Ev::ToInstance { inst: to, life: peer_life, event });
                    }
                }
            }
            instance::Action::Reply { conn, message } => self.instance_reply(now, inst, conn.0, message),
            instance::Action::SessionOpened { conn, session_id } => {
                // For the metrics only: the machine keeps the pairing itself.
                let measured = match self.conns.get_mut(&conn.0) {
                    Some(c) => {
                        c.session = Some(session_id);
                        self.records[self.clients[c.client as usize].record].measured
                    }
                    // The client closed it already; its `ConnectionClosed` is on the way.
                    None => false,
                };
                self.note_admission(now, inst, measured);
            }
        }
        Ok(())
    }

    fn instance_reply(&mut self, now: Duration, inst: u32, conn_id: u64, message: Message) {
        // A closed connection takes the reply with it (and its session, if
        // the reply admitted one, through its `ConnectionClosed`).
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        conn.answered = true;
        match (conn.kind, message) {
            (ConnKind::Peer { from, life, .. }, Message::WorkloadReport(report)) => {
                self.conns.remove(&conn_id);
                let s = &self.instances[inst as usize];
                if s.silent_peers {
                    return;
                }
                let extra = s.slow_peers;
                if let Fate::Arrive(d) =
                    self.scenario.network.fate(now, Link::Peer(inst, from), &mut self.net_rng)
                {
                    let event = instance::Event::WorkloadReport { report };
                    self.queue.push(now + d + extra, Ev::ToInstance { inst: from, life, event });
                }
            }
            (ConnKind::Handshake, Message::HandshakeReply(reply)) => {
                let (client, effort) = (conn.client, conn.effort);
                let Some(attempt) = conn.attempt else { return };
                let event = client::Event::HandshakeReply { attempt, reply };
                self.reply_to_client(now, inst, client, effort, event);
            }
            (ConnKind::Session, Message::SessionReply(reply)) => {
                let (client, effort) = (conn.client, conn.effort);
                let Some(attempt) = conn.attempt else { return };
                let event = client::Event::SessionReply { attempt, reply };
                self.reply_to_client(now, inst, client, effort, event);
            }
            // A message kind that does not answer the request: the client's
            // Connector judges it (a malformed reply fails the attempt).
            (ConnKind::Handshake | ConnKind::Session, other) => {
                let (client, effort) = (conn.client, conn.effort);
                let Some(attempt) = conn.attempt else { return };
                let event = client::Event::TransportFailed {
                    attempt,
                    reason: format!("unexpected message {other:?}"),
                };
                self.reply_to_client(now, inst, client, effort, event);
            }
            (ConnKind::Peer { .. }, _) => {}
        }
    }

    fn note_admission(&mut self, now: Duration, inst: u32, measured: bool) {
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

    fn reply_to_client(&mut self, now: Duration, inst: u32, client: u32, effort: u32, event: client::Event) {
        if let Fate::Arrive(d) = self.scenario.network.fate(now, Link::Client(inst), &mut self.net_rng) {
            self.queue.push(now + d, Ev::ToClient { client, effort, event });
        }
    }

    fn deliver_to_instance(
        &mut self,
        now: Duration,
        inst: u32,
        life: u32,
        event: instance::Event,
    ) -> Result<(), SimError> {
        let s = &mut self.instances[inst as usize];
        if s.life != life || s.machine.is_none() {
            // The process that was sent to is gone: a new connection is
            // refused (unless the host is down too), anything else vanishes.
            if !s.host_down {
                self.bounce(now, event);
            }
            return Ok(());
        }
        if let Some(machine) = s.machine.as_mut() {
            machine.handle_event(event, self.epoch + now).map_err(|e| SimError::Usage(e.to_string()))?;
        }
        self.drain_instance(now, inst)
    }

    fn bounce(&mut self, now: Duration, event: instance::Event) {
        let conn = match &event {
            instance::Event::HandshakeRequest { conn, .. }
            | instance::Event::SessionRequest { conn, .. }
            | instance::Event::WorkloadQuery { conn, .. } => conn.0,
            _ => return,
        };
        let Some(c) = self.conns.remove(&conn) else { return };
        match c.kind {
            ConnKind::Peer { from, life, query_id } => {
                let event = instance::Event::PeerUnreachable {
                    query_id,
                    peer: InstanceId(c.inst),
                    reason: "connection refused".into(),
                };
                let d = self.scenario.network.peer_latency.sample(&mut self.net_rng);
                self.queue.push(now + d, Ev::ToInstance { inst: from, life, event });
            }
            ConnKind::Handshake | ConnKind::Session => {
                let Some(attempt) = c.attempt else { return };
                let event = client::Event::TransportFailed { attempt, reason: "connection refused".into() };
                let d = self.scenario.network.client_latency.sample(&mut self.net_rng);
                self.queue.push(now + d, Ev::ToClient { client: c.client, effort: c.effort, event });
            }
        }
    }

    fn apply_fault(&mut self, now: Duration, index: usize) -> Result<(), SimError> {
        let fault = self.scenario.faults[index].clone();
        let inst = fault.instance;
        let admin = |sim: &mut Self, event: instance::Event| -> Result<(), SimError> {
            let s = &mut sim.instances[inst as usize];
            if let Some(machine) = s.machine.as_mut() {
                machine.handle_event(event, sim.epoch + now).map_err(|e| SimError::Usage(e.to_string()))?;
            }
            sim.drain_instance(now, inst)
        };
        match fault.kind {
            FaultKind::Crash { host_down, clients_return, return_within, measure_returns } => {
                let s = &mut self.instances[inst as usize];
                s.machine = None;
                s.deadline = None;
                s.life += 1;
                s.host_down = host_down;
                s.returns = clients_return.then_some((return_within, measure_returns));
                let victims: Vec<u32> = (0..self.clients.len() as u32)
                    .filter(|&c| self.clients[c as usize].session.is_some_and(|(i, ..)| i == inst))
                    .collect();
                for client in victims {
                    self.lose_session(now, client)?;
                }
                if clients_return && measure_returns {
                    // The placeholder counted at scheduling: each return now counts itself.
                    self.pending_measured -= 1;
                }
            }
            FaultKind::Restart => {
                if self.instances[inst as usize].machine.is_none() {
                    self.start_instance(now, inst)?;
                }
            }
            FaultKind::RefuseClients => self.instances[inst as usize].refuse_clients = true,
            FaultKind::AcceptClients => self.instances[inst as usize].refuse_clients = false,
            FaultKind::SlowPeerAnswers { extra } => self.instances[inst as usize].slow_peers = extra,
            FaultKind::SilentPeerAnswers => self.instances[inst as usize].silent_peers = true,
            FaultKind::NormalPeerAnswers => {
                let s = &mut self.instances[inst as usize];
                s.silent_peers = false;
                s.slow_peers = Duration::ZERO;
            }
            FaultKind::Drain | FaultKind::Undrain => {
                let accepting = matches!(fault.kind, FaultKind::Undrain);
                self.instances[inst as usize].accepting = accepting;
                admin(self, instance::Event::SetAccepting(accepting))?;
            }
            FaultKind::SetMaxSessions { max_sessions } => {
                self.instances[inst as usize].max_sessions = max_sessions;
                admin(self, instance::Event::SetMaxSessions(max_sessions))?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Outcome {
        let stopped_at = self.queue.now();
        if self.loads.is_none() {
            self.snapshot_loads(stopped_at);
        }
        let (end_of_arrivals, loads) = self.loads.take().unwrap_or_default();
        let over_capacity = self.instances.iter().filter(|s| s.over_capacity).count() as u32;
        let metrics = RunMetrics::compute(&RunData {
            seed: self.seed,
            clients: &self.records,
            admissions: &self.admissions,
            loads: &loads,
            end_of_arrivals,
            window: self.scenario.run.window,
            over_capacity,
            admitted_while_draining: self.admitted_while_draining,
            steps: self.steps,
        });
        Outcome { metrics, clients: self.records, series: self.series, trace: self.trace, stopped_at }
    }
}

/// Queues a machine's next deadline (as an offset from `epoch`, never before
/// `now`) when it moved; an unchanged deadline is already queued, and a timer
/// queued for an old deadline is skipped on arrival (it no longer matches).
fn reschedule(
    queue: &mut EventQueue<Ev>,
    epoch: Instant,
    now: Duration,
    deadline: &mut Option<Duration>,
    next: Option<Instant>,
    timer: Ev,
) {
    let next = next.map(|t| t.saturating_duration_since(epoch).max(now));
    if next != *deadline {
        *deadline = next;
        if let Some(t) = next {
            queue.push(t, timer);
        }
    }
}
