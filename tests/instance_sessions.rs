//! The machine owns the protocol's bookkeeping: one session per
//! connection, herd control that floods cannot starve, saturation, and the
//! one message conversion on the instance's side.

mod common;

use std::time::Duration;

use aos_cluster::instance::{Action, ConnectionId, Event};
use aos_cluster::wire::{Message, QueryId, RejectReason, SessionOutcome, SessionRequest, WorkloadQuery};
use aos_cluster::workload::{Role, Workload};
use common::instance::*;

/// A serving instance alone in its cluster (the registry lists only itself),
/// its first heartbeat drained.
fn alone(max: u32) -> Harness {
    let mut h = Harness::new(config(1, Role::Serving, max));
    h.expect_heartbeat();
    h
}

/// A handshake on `conn` answered from the (cached or fresh) snapshot of a
/// cluster of one; returns the list's ids.
fn handshake_alone(h: &mut Harness, conn: u64, request_id: u64) -> Vec<u32> {
    h.event(Event::HandshakeRequest { conn: ConnectionId(conn), request: handshake(request_id, conn) });
    if let Some(Action::QueryRegistry { .. }) = h.queue.front() {
        let q = h.expect_registry_query();
        h.event(Event::RegistrySnapshot { query_id: q, members: vec![member(1, Role::Serving, 0, 10)] });
    }
    ids(&h.expect_ranked(conn, request_id))
}

#[test]
fn one_connection_holds_one_session_and_its_close_ends_it() {
    let mut h = alone(50);
    let first = h.accepted(7, 0);
    for request_id in 1..2000 {
        assert_eq!(h.rejected(7, request_id), RejectReason::AlreadyInSession);
    }
    h.expect_idle();
    assert_eq!(h.inst.connected(), 1, "one session, however many requests");
    assert_eq!(h.inst.stats().admission.rejected_already_in_session, 1999);
    assert_eq!(h.inst.stats().admission.sessions_accepted, 1);
    // Another connection still gets its own session.
    let second = h.accepted(8, 0);
    assert_ne!(first, second);
    assert_eq!(h.inst.connected(), 2);
    h.event(Event::ConnectionClosed { conn: ConnectionId(7) });
    assert_eq!(h.inst.connected(), 1, "closing the connection ended its session");
    h.event(Event::ConnectionClosed { conn: ConnectionId(7) });
    assert_eq!(h.inst.connected(), 1, "a second close changes nothing");
    h.event(Event::ConnectionClosed { conn: ConnectionId(8) });
    assert_eq!(h.inst.connected(), 0);
    assert_eq!(h.inst.stats().admission.sessions_ended, 2);
    // The ids are gone: ending them again is ignored, not double counted.
    h.event(Event::SessionEnded { session_id: first });
    assert_eq!(h.inst.stats().admission.ignored_session_ends, 1);
    h.expect_idle();
}

#[test]
fn three_hostile_connections_cannot_hold_the_cluster() {
    // Without the one-session-per-connection rule, three connections sending
    // 5 000 requests each would hold 297 of 300 sessions: each holds exactly
    // one, and none after closing.
    let mut h = alone(100);
    for conn in 0..3 {
        for request_id in 0..5000 {
            h.session(conn, request_id);
        }
    }
    assert_eq!(h.inst.connected(), 3);
    for conn in 0..3 {
        h.event(Event::ConnectionClosed { conn: ConnectionId(conn) });
    }
    assert_eq!(h.inst.connected(), 0);
    for conn in 10..110 {
        h.accepted(conn, 0);
    }
    assert_eq!(h.rejected(200, 0), RejectReason::Full, "every slot went to a real client");
}

#[test]
fn an_explicit_end_frees_the_connection_for_nothing_else() {
    let mut h = alone(5);
    let id = h.accepted(1, 0);
    h.event(Event::SessionEnded { session_id: id });
    assert_eq!(h.inst.connected(), 0);
    // The connection holds no session any more, so a new one may be admitted on it.
    h.accepted(1, 1);
    assert_eq!(h.inst.connected(), 1);
}

#[test]
fn handshakes_that_never_become_sessions_cannot_empty_the_lists() {
    // A cluster of one with room for 3: 500 handshakes on 500 connections,
    // none of which asks for a session. Predicted full after 3, the instance
    // is still listed (last), never dropped.
    let mut h = alone(3);
    for conn in 0..500 {
        assert_eq!(handshake_alone(&mut h, conn, conn), vec![1], "handshake {conn} got an empty list");
    }
    // A real client still connects.
    h.accepted(1000, 0);
    assert_eq!(h.inst.connected(), 1);
}

#[test]
fn a_connection_holds_one_reservation() {
    let mut h = alone(1000);
    for request_id in 0..50 {
        handshake_alone(&mut h, 9, request_id);
    }
    assert_eq!(h.inst.reservations(), 1, "each handshake on conn 9 replaced the last reservation");
    assert_eq!(h.inst.stats().herd.reservations_made, 50);
    assert_eq!(h.inst.stats().herd.reservations_replaced, 49);
    for conn in 100..110 {
        handshake_alone(&mut h, conn, 0);
    }
    assert_eq!(h.inst.reservations(), 11);
}

#[test]
fn unused_reservations_expire_and_are_counted() {
    let mut h = alone(1000);
    for conn in 0..4 {
        handshake_alone(&mut h, conn, 0);
    }
    assert_eq!(h.inst.reservations(), 4);
    h.advance(h.inst.config().reservation_ttl + Duration::from_millis(1));
    h.queue.clear();
    // The next ranking purges what expired.
    handshake_alone(&mut h, 50, 0);
    assert_eq!(h.inst.stats().herd.reservations_expired_unused, 4);
    assert_eq!(h.inst.reservations(), 1);
}

#[test]
fn a_predicted_full_peer_is_listed_last_with_its_reported_figures() {
    // Self at 1/2 heads the first list and is then predicted full (its one
    // session plus one reservation): the next list puts it last, with its
    // live figures, instead of dropping it.
    let mut h = Harness::new(config(1, Role::Serving, 2));
    h.expect_heartbeat();
    h.accepted(500, 0); // self at 1/2
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: handshake(1, 0) });
    let q = h.expect_registry_query();
    h.event(Event::RegistrySnapshot {
        query_id: q,
        members: vec![member(1, Role::Serving, 1, 2), member(2, Role::Serving, 0, 4)],
    });
    let q2 = h.expect_peer_query(2);
    h.event(Event::WorkloadReport { report: report(q2, 2, 3, 4) });
    let list = h.expect_ranked(1, 1);
    // Peer 2 at 3/4 vs self at 1/2: self first (1/2 < 3/4); self is then predicted 2/2.
    assert_eq!(ids(&list), vec![1, 2]);
    h.event(Event::HandshakeRequest { conn: ConnectionId(2), request: handshake(2, 0) });
    let q2 = h.expect_peer_query(2);
    h.event(Event::WorkloadReport { report: report(q2, 2, 3, 4) });
    let list = h.expect_ranked(2, 2);
    // Self predicted full (1 session + 1 reservation of 2): listed after peer 2, with its live figures.
    assert_eq!(ids(&list), vec![2, 1]);
    assert_eq!(list.entries[1].workload, Workload::new(1, 2));
}

#[test]
fn saturation_is_advertised_without_touching_the_admin_setting() {
    let mut h = alone(10);
    h.inst.set_saturated(true, h.now);
    let mut actions = Vec::new();
    while let Some(a) = h.inst.poll_action() {
        actions.push(a);
    }
    let Some(Action::PublishHeartbeat(hb)) = actions.first() else { panic!("a heartbeat, got {actions:?}") };
    assert!(!hb.accepting, "saturated: not accepting");
    assert!(h.inst.accepting(), "the admin setting is unchanged");
    h.event(Event::WorkloadQuery { conn: ConnectionId(3), query: WorkloadQuery { query_id: QueryId(9) } });
    match h.next() {
        Action::Reply { message: Message::WorkloadReport(report), .. } => assert!(!report.accepting),
        other => panic!("a report, got {other:?}"),
    }
    // A direct handshake gets an empty list: this instance cannot take one now.
    let mut request = handshake(4, 0);
    request.load_balance = false;
    h.event(Event::HandshakeRequest { conn: ConnectionId(4), request });
    assert!(h.expect_ranked(4, 4).entries.is_empty());
    h.inst.set_saturated(false, h.now);
    let Some(Action::PublishHeartbeat(hb)) = h.inst.poll_action() else { panic!("a heartbeat") };
    assert!(hb.accepting);
}

#[test]
fn only_requests_enter_from_inbound_connections_and_only_reports_from_peer_links() {
    let conn = ConnectionId(5);
    let request = Message::SessionRequest(SessionRequest { request_id: 1, credential: None });
    assert!(matches!(Event::from_message(conn, request.clone()), Ok(Event::SessionRequest { .. })));
    let report = Message::WorkloadReport(report(QueryId(1), 2, 0, 10));
    let error = Event::from_message(conn, report.clone()).expect_err("a client cannot pose as a peer");
    assert!(error.to_string().contains("WorkloadReport"), "{error}");
    assert!(matches!(Event::from_peer_reply(report), Ok(Event::WorkloadReport { .. })));
    assert!(Event::from_peer_reply(request).is_err());
    let mut h = alone(2);
    h.event(
        Event::from_message(
            conn,
            Message::SessionRequest(SessionRequest { request_id: 3, credential: None }),
        )
        .unwrap(),
    );
    match h.next() {
        Action::Reply { message: Message::SessionReply(reply), .. } => {
            assert!(matches!(reply.outcome, SessionOutcome::Accepted { .. }))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.next(), Action::SessionOpened { conn: c, .. } if c == conn));
}

#[test]
fn time_going_backwards_is_clamped_and_counted() {
    let mut h = alone(2);
    let later = h.now + Duration::from_secs(1);
    h.inst.handle_timeout(later);
    h.inst.handle_timeout(later - Duration::from_millis(500));
    h.inst.set_accepting(false, h.now);
    assert_eq!(h.inst.stats().clamped, 2);
    assert_eq!(h.inst.poll_timeout(), Some(later), "queued actions show at the latest time seen");
}

#[test]
fn a_session_after_its_reservation_expired_does_not_consume_it() {
    // Found by the instance_ops model: an admission used to consume an
    // expired, not yet purged reservation, so the expiry went uncounted and
    // the learned landing time grew from a prediction that never came true.
    let mut h = alone(10);
    handshake_alone(&mut h, 1, 1);
    assert_eq!(h.inst.reservations(), 1);
    h.advance(h.inst.config().reservation_ttl + Duration::from_secs(5));
    h.queue.clear();
    h.accepted(2, 0);
    assert_eq!(h.inst.reservations(), 0);
    assert_eq!(h.inst.stats().herd.reservations_expired_unused, 1);
}

#[test]
fn a_long_list_of_long_host_names_is_cut_to_one_decodable_frame() {
    use aos_cluster::wire::{encode, entries_that_fit, Decoder, Limits};
    use aos_cluster::Endpoint;
    // 1 024 members whose host names are 253 bytes (the longest a name may
    // be): the whole list would need ~340 KiB, the default frame holds 64.
    let long_host = |id: u32| {
        let label = format!("{id:0>63}");
        let name = format!("{label}.{label}.{label}.{}", "h".repeat(253 - 3 * 64));
        Endpoint::new(&name, 2712).expect("a 253-byte host name is valid")
    };
    // Every member asked live (the seed's full fan-out), so all 1 023 are listed.
    let mut c = config(1, Role::Serving, 10);
    c.fan_out = aos_cluster::FanOut::FULL;
    let mut h = Harness::new(c);
    h.expect_heartbeat();
    let mut members: Vec<_> = (2..=1024).map(|id| member(id, Role::Serving, 0, 10)).collect();
    for m in &mut members {
        m.endpoint = long_host(m.id.0);
    }
    h.event(Event::HandshakeRequest { conn: ConnectionId(1), request: handshake(1, 0) });
    let q = h.expect_registry_query();
    h.event(Event::RegistrySnapshot { query_id: q, members });
    let mut queries = Vec::new();
    while let Some(Action::QueryPeer { query_id, peer, .. }) = h.queue.front().cloned() {
        h.queue.pop_front();
        queries.push((query_id, peer));
    }
    assert_eq!(queries.len(), 1023);
    for (query_id, peer) in queries {
        h.event(Event::WorkloadReport { report: report(query_id, peer.0, 0, 10) });
    }
    let list = h.expect_ranked(1, 1);
    assert!(list.entries.len() > 100 && list.entries.len() < 1024, "cut to {}", list.entries.len());
    let reply = Message::HandshakeReply(aos_cluster::wire::HandshakeReply {
        request_id: 1,
        outcome: aos_cluster::wire::HandshakeOutcome::Ranked(list.clone()),
    });
    let mut bytes = Vec::new();
    encode(&reply, &mut bytes).expect("the cut list encodes under the default limits");
    let mut decoder = Decoder::new();
    decoder.feed(&bytes);
    assert_eq!(decoder.next(), Ok(Some(reply)), "and a default decoder takes it");
    // Cut at the last entry that fits: every entry kept fits, one more would not.
    assert_eq!(entries_that_fit(&list.entries, &Limits::default()), list.entries.len());
    let mut longer = list.entries.clone();
    let extra = aos_cluster::wire::RankedEntry {
        id: aos_cluster::InstanceId(5000),
        endpoint: long_host(5000),
        workload: Workload::new(0, 10),
    };
    longer.push(extra);
    assert_eq!(entries_that_fit(&longer, &Limits::default()), list.entries.len());
}

#[test]
fn a_session_denied_by_the_policy_is_answered_and_never_counts() {
    let mut h = alone(1);
    // The handshake leaves a reservation on this instance for connection 9.
    assert_eq!(handshake_alone(&mut h, 9, 1), vec![1]);
    let before = h.inst.workload();
    for (request_id, reason) in [(2, RejectReason::Unauthorized), (3, RejectReason::AddressLimit)] {
        let request = SessionRequest { request_id, credential: None };
        h.event(Event::SessionDenied { conn: ConnectionId(9), request, reason });
        match h.next() {
            Action::Reply { conn, message: Message::SessionReply(reply) } => {
                assert_eq!((conn, reply.request_id), (ConnectionId(9), request_id));
                assert_eq!(reply.outcome, SessionOutcome::Rejected(reason));
            }
            other => panic!("expected the rejection, got {other:?}"),
        }
        h.expect_idle();
    }
    assert_eq!(h.inst.connected(), 0, "a denied request never opens a session");
    assert_eq!(h.inst.workload(), before, "nor moves the workload");
    let stats = h.inst.stats();
    assert_eq!(
        (
            stats.admission.rejected_by_policy,
            stats.admission.sessions_rejected,
            stats.admission.sessions_accepted
        ),
        (2, 2, 0)
    );
    // The one slot is still free: the same connection, admitted by the
    // policy now, gets it.
    h.accepted(9, 4);
    assert_eq!(h.inst.workload(), Workload::new(1, 1));
    // On a connection that holds a session the machine's own rule answers first.
    let request = SessionRequest { request_id: 5, credential: None };
    h.event(Event::SessionDenied { conn: ConnectionId(9), request, reason: RejectReason::Unauthorized });
    match h.next() {
        Action::Reply { message: Message::SessionReply(reply), .. } => {
            assert_eq!(reply.outcome, SessionOutcome::Rejected(RejectReason::AlreadyInSession))
        }
        other => panic!("{other:?}"),
    }
}
