//! The world's state: what each simulated party holds, the events the queue
//! carries, and the seeded streams every party draws from.

use std::time::Duration;

use aos_cluster::client::{self, AttemptId, Connector};
use aos_cluster::instance::{self, Instance};
use aos_cluster::registry::Heartbeat;
use aos_cluster::wire::{QueryId, SessionId};
use aos_cluster::InstanceConfig;

use crate::rng::Rng;

/// Everything the event queue carries.
#[derive(Debug)]
pub(super) enum Ev {
    Arrive {
        client: u32,
    },
    Return {
        client: u32,
    },
    ClientTimer {
        client: u32,
    },
    InstanceTimer {
        inst: u32,
    },
    ToClient {
        client: u32,
        effort: u32,
        event: client::Event,
    },
    ToInstance {
        inst: u32,
        life: u32,
        event: instance::Event,
    },
    RegistryRead {
        inst: u32,
        life: u32,
        query_id: QueryId,
    },
    RegistryWrite {
        heartbeat: Heartbeat,
    },
    SessionEnd {
        client: u32,
        effort: u32,
    },
    Fault {
        index: usize,
    },
    Start {
        inst: u32,
    },
    /// The next hostile handshake of flood `flood` is due.
    Hostile {
        flood: usize,
    },
    Sample,
    Stop,
}

/// Where an endpoint leads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Instance(u32),
    Blackhole,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnKind {
    Handshake,
    Session,
    /// A workload query from instance `from` (in its life `life`).
    Peer {
        from: u32,
        life: u32,
        query_id: QueryId,
    },
    /// A hostile client's handshake: it closes the connection once the
    /// reply arrives and never asks for a session.
    Hostile,
}

/// One simulated transport, from its opener to instance `inst`.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) client: u32,
    pub(super) effort: u32,
    pub(super) attempt: Option<AttemptId>,
    /// The instance has replied on it (nothing waits there any more).
    pub(super) answered: bool,
    pub(super) inst: u32,
    pub(super) life: u32,
    pub(super) kind: ConnKind,
    /// A session the instance admitted on this connection and nobody ended yet.
    pub(super) session: Option<SessionId>,
}

/// A real client: its machine and what the simulator knows of its effort.
pub(super) struct ClientState {
    pub(super) connector: Option<Connector>,
    pub(super) effort: u32,
    pub(super) record: usize,
    pub(super) deadline: Option<Duration>,
    pub(super) attempts: Vec<(AttemptId, u64)>,
    /// Connected: the instance, its life, the session id and the connection.
    /// Set and cleared only through `Simulation::hold` and `Simulation::release`,
    /// which keep the instance's `holders` in step.
    pub(super) session: Option<(u32, u32, SessionId, u64)>,
    /// This client's position in its session instance's `holders`.
    pub(super) holder_slot: usize,
    pub(super) group: usize,
    pub(super) rng: Rng,
    pub(super) baseline_attempts: u64,
    pub(super) return_measured: bool,
}

/// An instance: its machine (none while crashed or not started) and the
/// faults and admin settings the scenario applied to it.
pub(super) struct InstanceState {
    pub(super) machine: Option<Instance>,
    pub(super) config: InstanceConfig,
    pub(super) life: u32,
    pub(super) deadline: Option<Duration>,
    pub(super) host_down: bool,
    pub(super) refuse_clients: bool,
    pub(super) silent_peers: bool,
    pub(super) slow_peers: Duration,
    pub(super) accepting: bool,
    pub(super) max_sessions: u32,
    pub(super) over_capacity: bool,
    /// Crash policy: clients return within this window, measured or not.
    pub(super) returns: Option<(Duration, bool)>,
    /// The clients holding a session here (any order), so a crash finds its
    /// victims without a pass over every client.
    pub(super) holders: Vec<u32>,
}

/// A 64-bit mix of the run seed and a stream name, so each party's randomness
/// depends on the seed and on who it is, never on the order of draws elsewhere:
/// two strategies see the same arrivals and session lengths.
pub(super) fn derive(seed: u64, stream: u64) -> u64 {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

pub(super) const ARRIVALS: u64 = 1;
pub(super) const NETWORK: u64 = 2;
pub(super) const FAULTS: u64 = 3;
/// Hostile handshakes draw their own stream (times, targets, salts and
/// latencies), so a flood leaves every other party's draws as they were.
pub(super) const FLOOD: u64 = 4;
pub(super) const INSTANCE: u64 = 1 << 32;
pub(super) const CLIENT: u64 = 2 << 32;
pub(super) const CLIENT_LIST: u64 = 3 << 32;
