//! Driving the instances: each `Instance` machine started, fed and drained,
//! and its actions carried out (registry reads and writes, peer queries,
//! replies, session notices).

use std::time::Duration;

use aos_cluster::instance::{self, ConnectionId, Instance};
use aos_cluster::wire::Message;

use super::network::reschedule;
use super::state::{derive, Conn, ConnKind, Ev, Target, INSTANCE};
use super::Simulation;
use crate::net::{Fate, Link};
use crate::SimError;

impl Simulation {
    pub(super) fn start_instance(&mut self, now: Duration, inst: u32) -> Result<(), SimError> {
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

    pub(super) fn drain_instance(&mut self, now: Duration, inst: u32) -> Result<(), SimError> {
        let mut queries = 0;
        loop {
            let s = &mut self.instances[inst as usize];
            let Some(action) = s.machine.as_mut().and_then(Instance::poll_action) else { break };
            queries += u64::from(matches!(action, instance::Action::QueryPeer { .. }));
            self.instance_action(now, inst, action)?;
        }
        self.max_round_queries = self.max_round_queries.max(queries);
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
                        let event =
                            instance::Event::from_message(ConnectionId(conn), Message::WorkloadQuery(query))
                                .map_err(|e| SimError::Driver(e.to_string()))?;
                        self.queue.push(now + d, Ev::ToInstance { inst: to, life: peer_life, event });
                    }
                }
            }
            instance::Action::Reply { conn, message } => self.instance_reply(now, inst, conn.0, message)?,
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
            // An action added to the machine after this simulator: carrying it
            // out wrongly would skew every figure, so the run stops instead.
            other => return Err(SimError::Driver(format!("instance {inst}: unmodelled action {other:?}"))),
        }
        Ok(())
    }

    pub(super) fn deliver_to_instance(
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
}
