//! How the pair carries out the machines' actions (dial, reply, close,
//! heartbeats into the shared registry) and delivers the bytes in flight.

use super::*;

impl Pair {
    /// Carries out every queued action of every running machine; `false` when
    /// there was none.
    pub(super) fn carry_out_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.client.as_mut().and_then(Connector::poll_action) {
            any = true;
            self.client_log.push((self.now, action.clone()));
            self.client_action(action);
        }
        for node in 0..self.nodes.len() {
            while self.nodes[node].health == Health::Up {
                let Some(action) = self.nodes[node].machine.poll_action() else { break };
                any = true;
                self.instance_action(node, action);
            }
        }
        any
    }

    fn attempt_conn(&self, attempt: AttemptId) -> Option<usize> {
        self.conns.iter().position(|c| c.owner == Owner::Attempt(attempt))
    }

    fn dial(&mut self, attempt: AttemptId, endpoint: &Endpoint, message: Message) {
        match self.node_at(endpoint) {
            Some(node) if self.nodes[node].health != Health::Down => {
                let conn = self.open(node, Owner::Attempt(attempt));
                self.write(conn, &message);
            }
            _ => {
                self.refused.insert(attempt);
                let reason = format!("{endpoint}: connection refused");
                self.client_event(client::Event::TransportFailed { attempt, reason });
            }
        }
    }

    fn client_action(&mut self, action: client::Action) {
        match action {
            client::Action::SendHandshake { attempt, endpoint, message, .. }
            | client::Action::SendSessionRequest { attempt, endpoint, message, .. } => {
                self.dial(attempt, &endpoint, message)
            }
            client::Action::Close { attempt } => {
                assert!(self.closed.insert(attempt), "{attempt} closed twice");
                match self.attempt_conn(attempt) {
                    Some(conn) => self.close(conn),
                    None => assert!(self.refused.contains(&attempt), "Close for unknown {attempt}"),
                }
            }
            client::Action::Connected { attempt, .. } => {
                let conn = self.attempt_conn(attempt).expect("the session's connection");
                assert!(self.conns[conn].open, "session on a closed connection");
                self.conns[conn].session = true;
            }
            _ => {}
        }
    }

    fn instance_action(&mut self, node: usize, action: instance::Action) {
        match action {
            instance::Action::QueryRegistry { query_id, cluster } => {
                let members = self
                    .registry
                    .values()
                    .filter(|(hb, _)| hb.cluster.as_deref() == Some(cluster.as_str()))
                    .map(|(hb, at)| MemberRecord {
                        id: hb.id,
                        endpoint: hb.endpoint.clone(),
                        role: hb.role,
                        accepting: hb.accepting,
                        workload: hb.workload,
                        heartbeat_age: self.now.saturating_duration_since(*at),
                    })
                    .collect();
                self.instance_event(node, instance::Event::RegistrySnapshot { query_id, members });
            }
            instance::Action::QueryPeer { query_id, peer, endpoint, query } => {
                match self.node_at(&endpoint) {
                    Some(target) if self.nodes[target].health != Health::Down => {
                        let conn = self.open(target, Owner::Peer { from: node });
                        self.write(conn, &Message::WorkloadQuery(query));
                    }
                    _ => {
                        let reason = "connection refused".to_owned();
                        self.instance_event(
                            node,
                            instance::Event::PeerUnreachable { query_id, peer, reason },
                        );
                    }
                }
            }
            instance::Action::Reply { conn, message } => {
                let c = self.conns.iter_mut().find(|c| c.node == node && c.id == conn).expect("known conn");
                if c.open {
                    encode(&message, &mut c.to_dialler).expect("encodable reply");
                }
            }
            instance::Action::PublishHeartbeat(heartbeat) => {
                self.registry.insert(heartbeat.id, (heartbeat, self.now));
            }
            // The pair keeps reading the session's connection: the test plays
            // the application there.
            _ => {}
        }
    }

    /// Delivers every byte in flight; `false` when there was none.
    pub(super) fn deliver_bytes(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.conns.len() {
            if !self.conns[i].open {
                continue;
            }
            let up = std::mem::take(&mut self.conns[i].to_instance);
            if !up.is_empty() {
                any = true;
                self.at_instance(i, &up);
            }
            let down = std::mem::take(&mut self.conns[i].to_dialler);
            if !down.is_empty() && self.conns[i].open {
                any = true;
                self.at_dialler(i, &down);
            }
        }
        any
    }

    fn at_instance(&mut self, conn: usize, bytes: &[u8]) {
        let node = self.conns[conn].node;
        if self.nodes[node].health != Health::Up {
            return; // a crashed process reads nothing
        }
        self.conns[conn].at_instance.feed(bytes);
        while let Some(message) = self.conns[conn].at_instance.next().expect("frames the encoder wrote") {
            let id = self.conns[conn].id;
            let event = instance::Event::from_message(id, message).expect("a request");
            self.instance_event(node, event);
        }
    }

    fn at_dialler(&mut self, conn: usize, bytes: &[u8]) {
        self.conns[conn].at_dialler.feed(bytes);
        while let Some(message) = self.conns[conn].at_dialler.next().expect("frames the encoder wrote") {
            let c = &self.conns[conn];
            match c.owner {
                Owner::Attempt(attempt) if !c.session => {
                    let event = client::Event::from_message(attempt, message).expect("a reply");
                    self.client_event(event);
                }
                Owner::Attempt(_) | Owner::Raw => self.conns[conn].inbox.push(message),
                Owner::Peer { from } => {
                    let event = instance::Event::from_peer_reply(message).expect("a report");
                    self.instance_event(from, event);
                    // One query per link: the querier hangs up.
                    self.close(conn);
                }
            }
        }
    }
}
