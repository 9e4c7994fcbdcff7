//! Driving the real clients: one `Connector` per client, an effort per
//! arrival or return, its actions carried out and its replies delivered.

use std::time::Duration;

use aos_cluster::client::{self, Connector};
use aos_cluster::wire::{HandshakeOutcome, RejectReason, SessionId, SessionOutcome};

use super::network::reschedule;
use super::state::{derive, ConnKind, Ev, CLIENT};
use super::Simulation;
use crate::dist::SessionLength;
use crate::metrics::{ClientOutcome, ClientRecord};
use crate::rng::Rng;
use crate::SimError;

impl Simulation {
    pub(super) fn begin_effort(
        &mut self,
        now: Duration,
        client: u32,
        measured: bool,
    ) -> Result<(), SimError> {
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
        self.release(client);
        let c = &mut self.clients[client as usize];
        c.record = record;
        c.effort += 1;
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

    /// `client` now holds `session` (instance, its life, session id, connection).
    fn hold(&mut self, client: u32, session: (u32, u32, SessionId, u64)) {
        self.release(client);
        let holders = &mut self.instances[session.0 as usize].holders;
        let c = &mut self.clients[client as usize];
        c.holder_slot = holders.len();
        c.session = Some(session);
        holders.push(client);
    }

    /// `client`'s session, if any, is over: it leaves its instance's holders.
    pub(super) fn release(&mut self, client: u32) -> Option<(u32, u32, SessionId, u64)> {
        let c = &mut self.clients[client as usize];
        let session = c.session.take()?;
        let slot = std::mem::replace(&mut c.holder_slot, usize::MAX);
        let holders = &mut self.instances[session.0 as usize].holders;
        if holders.get(slot) == Some(&client) {
            holders.swap_remove(slot);
            if let Some(&moved) = holders.get(slot) {
                self.clients[moved as usize].holder_slot = slot;
            }
        }
        Some(session)
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

    pub(super) fn drain_client(&mut self, now: Duration, client: u32) -> Result<(), SimError> {
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
            client::Action::SendHandshake { attempt, endpoint, message, .. } => {
                self.send_from_client(now, client, effort, attempt, &endpoint, ConnKind::Handshake, message)?;
            }
            client::Action::SendSessionRequest { attempt, endpoint, message, .. } => {
                self.send_from_client(now, client, effort, attempt, &endpoint, ConnKind::Session, message)?;
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
                self.hold(client, (inst, life, session_id, conn_id));
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

    pub(super) fn deliver_to_client(
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

    pub(super) fn end_session(&mut self, now: Duration, client: u32, effort: u32) -> Result<(), SimError> {
        if self.clients[client as usize].effort != effort {
            return Ok(());
        }
        let Some((_, _, _, conn)) = self.release(client) else { return Ok(()) };
        let c = &mut self.clients[client as usize];
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
    pub(super) fn lose_session(&mut self, now: Duration, client: u32) -> Result<(), SimError> {
        let Some((inst, _, _, conn)) = self.release(client) else { return Ok(()) };
        self.conns.remove(&conn);
        let c = &mut self.clients[client as usize];
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
}
