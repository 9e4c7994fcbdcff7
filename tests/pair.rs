//! The seed's story, failover and the one-session rule, run through the
//! byte-level pair (`common::pair`): one Connector and three Instances that
//! exchange encoded frames only, with a shared in-memory registry.

mod common;

use std::time::Duration;

use aos_cluster::client::{Action, AttemptOutcome, State};
use aos_cluster::config::ClientConfig;
use aos_cluster::endpoint::Endpoint;
use aos_cluster::wire::{Message, RejectReason, SessionOutcome, SessionReply, SessionRequest};
use aos_cluster::workload::{InstanceId, Role};
use common::instance::{config, endpoint, CLUSTER};
use common::pair::{Health, Pair};

const STEPS: usize = 500;

/// Instances 1, 2 and 3 (nodes 0, 1, 2) at `aos1..3:2712`, each admitting
/// `max[i]` sessions, all registered.
fn cluster(max: [u32; 3]) -> Pair {
    let configs = (0..3).map(|i| config(i as u32 + 1, Role::Serving, max[i])).collect();
    let mut pair = Pair::new(common::base(), configs);
    pair.drive_until(STEPS, |p| p.registered() == 3);
    pair
}

/// The seed list aos1, aos2, aos3 of the cluster, with 1 s timeouts.
fn client_config() -> ClientConfig {
    let mut config = ClientConfig::with_seeds((1..=3).map(endpoint).collect());
    config.cluster = Some(CLUSTER.to_owned());
    config.handshake_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config
}

/// The client's actions, named compactly: `hs<seed>`, `sr<rank>@<host>`,
/// `close`, `connected@<host>`, `round-failed`, `failed`.
fn story(pair: &Pair) -> Vec<String> {
    pair.client_actions()
        .into_iter()
        .map(|a| match a {
            Action::SendHandshake { seed_index, .. } => format!("hs{seed_index}"),
            Action::SendSessionRequest { rank, endpoint, .. } => format!("sr{rank}@{}", endpoint.host()),
            Action::Close { .. } => "close".to_owned(),
            Action::Connected { endpoint, .. } => format!("connected@{}", endpoint.host()),
            Action::RoundFailed { .. } => "round-failed".to_owned(),
            Action::Failed(_) => "failed".to_owned(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn outcomes(pair: &Pair) -> Vec<AttemptOutcome> {
    pair.client().attempts().iter().map(|r| r.outcome.clone()).collect()
}

fn connected_to(pair: &Pair) -> (Endpoint, Option<InstanceId>) {
    let session = pair.client().session().expect("a session");
    (session.endpoint.clone(), session.instance)
}

#[test]
fn the_seeds_story_over_bytes() {
    let mut pair = cluster([10, 10, 10]);
    // Instance 2 already serves two rival clients; instance 1 (seed 0) goes
    // down after registering, so its heartbeat is still fresh.
    pair.raw_session(1, STEPS);
    pair.raw_session(1, STEPS);
    pair.nodes[0].health = Health::Down;
    pair.start_client(client_config(), 7);
    pair.drive(STEPS);

    // Seed 0 refuses the connection, seed 1 ranks, the least loaded (3)
    // admits; seed 1's connection stays open until then.
    assert_eq!(story(&pair), ["hs0", "close", "hs1", "sr0@aos3", "close", "connected@aos3"]);
    assert!(matches!(
        outcomes(&pair)[..],
        [
            AttemptOutcome::TransportFailed(_),
            // Instance 1 answers no workload query, so only 3 and 2 are listed.
            AttemptOutcome::Ranked { entries: 2, stale: false },
            AttemptOutcome::Accepted { .. },
        ]
    ));
    assert_eq!(connected_to(&pair), (endpoint(3), Some(InstanceId(3))));
    assert_eq!(pair.nodes[1].machine.stats().round.peer_unreachable, 1, "instance 1 was asked and refused");
    assert_eq!([pair.nodes[1].machine.connected(), pair.nodes[2].machine.connected()], [2, 1]);
    pair.assert_attempt_transports_closed();
    // The close told the ranking instance its client is no longer on its way.
    let balancer = pair.nodes[1].machine.stats();
    assert_eq!((balancer.herd.reservations_made, balancer.herd.reservations_released), (1, 1));
    assert_eq!(pair.nodes[1].machine.reservations(), 0);

    // The session stays on its connection: a minute of heartbeats and
    // registry traffic later, nothing has moved.
    let conn = pair.session_conn();
    assert_eq!(pair.conns[conn].node, 2);
    let actions = pair.client_log.len();
    pair.run_for(Duration::from_secs(60), STEPS);
    assert_eq!(pair.client().state(), State::Connected);
    assert_eq!(pair.client_log.len(), actions, "the client did nothing more");
    assert!(pair.conns[conn].open && pair.conns[conn].session);
    assert_eq!(pair.nodes[2].machine.connected(), 1);
    assert!(pair.nodes[2].machine.stats().heartbeats > 10, "time passed with heartbeats");
}

#[test]
fn a_full_head_rejects_and_the_next_entry_admits() {
    // Instance 2 has one seat and heads the list (0/1 beats 1/10 and 2/10).
    let mut pair = cluster([10, 1, 10]);
    pair.raw_session(0, STEPS);
    pair.raw_session(0, STEPS);
    pair.raw_session(2, STEPS);
    let mut config = client_config();
    config.seeds.truncate(1);
    pair.start_client(config, 7);
    // While the ranked list is on its way to the client, a rival takes the
    // last seat on the head: admission is the authority, the list advice.
    pair.drive_until(STEPS, |p| p.nodes[0].machine.stats().round.ranked_replies == 1);
    let rival = pair.open_raw(1);
    pair.write(rival, &Message::SessionRequest(SessionRequest { request_id: 1, credential: None }));
    pair.drive(STEPS);

    assert_eq!(story(&pair), ["hs0", "sr0@aos2", "close", "sr1@aos3", "close", "connected@aos3"]);
    assert!(matches!(
        outcomes(&pair)[..],
        [
            AttemptOutcome::Ranked { entries: 3, .. },
            AttemptOutcome::Rejected(RejectReason::Full),
            AttemptOutcome::Accepted { .. },
        ]
    ));
    assert_eq!(connected_to(&pair), (endpoint(3), Some(InstanceId(3))));
    assert!(matches!(
        pair.conns[rival].inbox[..],
        [Message::SessionReply(SessionReply { outcome: SessionOutcome::Accepted { .. }, .. })]
    ));
    let connected: Vec<u32> = pair.nodes.iter().map(|n| n.machine.connected()).collect();
    assert_eq!(connected, [2, 1, 2], "the rejected attempt left no session behind");
    pair.assert_attempt_transports_closed();
}

#[test]
fn crashed_instances_are_skipped_after_timeouts() {
    let mut pair = cluster([10, 10, 10]);
    pair.raw_session(1, STEPS);
    // Instance 1 crashes: connections open, nothing answers.
    pair.nodes[0].health = Health::Crashed;
    let start = pair.now;
    pair.start_client(client_config(), 7);
    // Instance 3 heads the list, then crashes before the session request.
    pair.drive_until(STEPS, |p| p.nodes[1].machine.stats().round.ranked_replies == 1);
    pair.nodes[2].health = Health::Crashed;
    pair.drive(STEPS);

    assert_eq!(
        story(&pair),
        ["hs0", "close", "hs1", "sr0@aos3", "close", "sr1@aos2", "close", "connected@aos2"]
    );
    assert!(matches!(
        outcomes(&pair)[..],
        [
            AttemptOutcome::TimedOut,
            AttemptOutcome::Ranked { entries: 2, .. },
            AttemptOutcome::TimedOut,
            AttemptOutcome::Accepted { .. },
        ]
    ));
    assert_eq!(connected_to(&pair), (endpoint(2), Some(InstanceId(2))));
    // Handshake timeout (1 s), the silent peer's timeout (500 ms), connect
    // timeout (1 s): delivery itself takes no time.
    let peer_timeout = pair.nodes[1].machine.config().peer_timeout;
    let at = pair.client_log.last().expect("actions").0;
    assert_eq!(at - start, Duration::from_secs(2) + peer_timeout);
    assert_eq!(pair.nodes[1].machine.stats().round.peer_silent, 1);
    assert_eq!(pair.nodes[1].machine.connected(), 2);
    pair.assert_attempt_transports_closed();
}

#[test]
fn one_session_per_connection_and_its_close_ends_it() {
    let mut pair = cluster([10, 10, 10]);
    pair.start_client(client_config(), 7);
    pair.drive(STEPS);
    let conn = pair.session_conn();
    let node = pair.conns[conn].node;
    assert_eq!(pair.nodes[node].machine.connected(), 1);

    // The application writes a second SessionRequest on the session's
    // connection: the instance says AlreadyInSession, and still counts one.
    pair.write(conn, &Message::SessionRequest(SessionRequest { request_id: 99, credential: None }));
    pair.drive(STEPS);
    assert_eq!(
        pair.conns[conn].inbox,
        [Message::SessionReply(SessionReply {
            request_id: 99,
            outcome: SessionOutcome::Rejected(RejectReason::AlreadyInSession),
        })]
    );
    assert_eq!(pair.nodes[node].machine.connected(), 1);
    assert_eq!(pair.client().state(), State::Connected);

    // Closing the connection ends the session on the instance.
    pair.close(conn);
    let now = pair.now;
    pair.client
        .as_mut()
        .expect("client")
        .handle_event(aos_cluster::client::Event::SessionEnded, now)
        .unwrap();
    pair.drive(STEPS);
    assert_eq!(pair.nodes[node].machine.connected(), 0);
    assert_eq!(pair.nodes[node].machine.stats().admission.sessions_ended, 1);
    assert_eq!(pair.client().state(), State::Closed);
    assert!(matches!(pair.client_actions().last(), Some(Action::SessionClosed { lost: None, .. })));
    let connected: u32 = pair.nodes.iter().map(|n| n.machine.connected()).sum();
    assert_eq!(connected, 0, "no session left anywhere");
}
