//! The scenario's faults and admin actions, applied to an instance at their time.

use std::time::Duration;

use super::Simulation;
use crate::scenario::FaultKind;
use crate::SimError;

impl Simulation {
    pub(super) fn apply_fault(&mut self, now: Duration, index: usize) -> Result<(), SimError> {
        let fault = self.scenario.faults[index].clone();
        let inst = fault.instance;
        match fault.kind {
            FaultKind::Crash { host_down, clients_return, return_within, measure_returns } => {
                let s = &mut self.instances[inst as usize];
                if let Some(machine) = s.machine.take() {
                    self.retired_queries.0 += machine.stats().round.peer_queries;
                    self.retired_queries.1 += machine.stats().round.rounds;
                }
                s.deadline = None;
                s.life += 1;
                s.host_down = host_down;
                s.returns = clients_return.then_some((return_within, measure_returns));
                // In client order, as a pass over every client would find them:
                // each victim's return time is the next draw of the fault stream.
                let mut victims = s.holders.clone();
                victims.sort_unstable();
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
            // The embedder's commands: what an administrator decides.
            FaultKind::Drain | FaultKind::Undrain => {
                let accepting = matches!(fault.kind, FaultKind::Undrain);
                let instant = self.at(now);
                let s = &mut self.instances[inst as usize];
                s.accepting = accepting;
                if let Some(machine) = s.machine.as_mut() {
                    machine.set_accepting(accepting, instant);
                }
                self.drain_instance(now, inst)?;
            }
            FaultKind::SetMaxSessions { max_sessions } => {
                let instant = self.at(now);
                let s = &mut self.instances[inst as usize];
                s.max_sessions = max_sessions;
                if let Some(machine) = s.machine.as_mut() {
                    machine
                        .set_max_sessions(max_sessions, instant)
                        .map_err(|e| SimError::Usage(e.to_string()))?;
                }
                self.drain_instance(now, inst)?;
            }
        }
        Ok(())
    }
}
