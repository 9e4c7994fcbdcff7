//! Hostile clients (a scenario's floods): each handshakes on a new
//! connection, waits for the reply, closes, and never asks for a session.
//!
//! They are not `Connector`s: a hostile client follows no protocol beyond
//! one well-formed `HandshakeRequest`, which is all it takes to make an
//! instance run a ranking (and, with herd control, reserve the head of its
//! list). Every draw they make (times, targets, salts, latencies) comes from
//! their own stream, so the real clients' network draws stay the
//! flood-free run's until the machines themselves behave differently.

use std::time::Duration;

use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::wire::{HandshakeRequest, Message};

use super::state::{Conn, ConnKind, Ev};
use super::Simulation;
use crate::dist::exponential_unit;
use crate::net::{Fate, Link};
use crate::SimError;

impl Simulation {
    /// Queues flood `flood`'s next handshake after an exponential gap (a
    /// Poisson process at its rate), unless the flood is over by then.
    pub(super) fn schedule_next_hostile(&mut self, now: Duration, flood: usize) {
        let f = &self.scenario.floods[flood];
        let from = now.max(f.start);
        let gap = exponential_unit(&mut self.flood_rng) / f.rate_per_sec;
        let at = from + Duration::from_secs_f64(gap);
        if at < f.start + f.duration {
            self.queue.push(at, Ev::Hostile { flood });
        }
    }

    /// One hostile handshake on a new connection.
    pub(super) fn hostile_handshake(&mut self, now: Duration, flood: usize) -> Result<(), SimError> {
        self.schedule_next_hostile(now, flood);
        let targets = &self.flood_targets[flood];
        let Some(last) = targets.len().checked_sub(1) else { return Ok(()) };
        let inst = targets[self.flood_rng.below_or_eq(last as u64) as usize];
        self.hostile_sent += 1;
        let s = &self.instances[inst as usize];
        if s.host_down || s.machine.is_none() || s.refuse_clients {
            // Refused or unanswered: the hostile client simply moves on.
            return Ok(());
        }
        let life = s.life;
        let Fate::Arrive(d) = self.scenario.network.fate(now, Link::Client(inst), &mut self.flood_rng) else {
            return Ok(());
        };
        let conn = self.new_conn(Conn {
            client: u32::MAX,
            effort: 0,
            attempt: None,
            answered: false,
            inst,
            life,
            kind: ConnKind::Hostile,
            session: None,
        });
        let request = HandshakeRequest {
            request_id: conn,
            salt: self.flood_rng.next_u64(),
            load_balance: true,
            cluster: Some(self.scenario.cluster.clone()),
        };
        let event = instance::Event::from_message(ConnectionId(conn), Message::HandshakeRequest(request))
            .map_err(|e| SimError::Driver(e.to_string()))?;
        self.queue.push(now + d, Ev::ToInstance { inst, life, event });
        Ok(())
    }

    /// Instance `inst` answered hostile connection `conn_id`: the client
    /// closes it once the reply is in (or, if the reply is lost, once its
    /// handshake timeout gives up), and the close travels back.
    pub(super) fn hostile_reply(&mut self, now: Duration, inst: u32, conn_id: u64) {
        let Some(conn) = self.conns.remove(&conn_id) else { return };
        let waited = match self.scenario.network.fate(now, Link::Client(inst), &mut self.flood_rng) {
            Fate::Arrive(d) => {
                self.hostile_answered += 1;
                d
            }
            Fate::Refused(rtt) => rtt,
            Fate::Lost => self.client_template.handshake_timeout,
        };
        let back = self.scenario.network.client_latency.sample(&mut self.flood_rng);
        let event = instance::Event::ConnectionClosed { conn: ConnectionId(conn_id) };
        self.queue.push(now + waited + back, Ev::ToInstance { inst: conn.inst, life: conn.life, event });
    }
}
