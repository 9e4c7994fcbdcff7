//! The documented byte layout, and endpoints' text on the wire.

use aos_cluster::wire::*;
use aos_cluster::{InstanceId, Role, Workload};

use crate::support::*;

#[test]
fn layout_matches_the_documented_bytes() {
    let msg = Message::HandshakeReply(HandshakeReply {
        request_id: 0x0102_0304_0506_0708,
        outcome: HandshakeOutcome::Ranked(RankedList {
            stale: true,
            entries: vec![RankedEntry {
                id: InstanceId(9),
                endpoint: "AOS01@aos1:2713".parse().unwrap(),
                workload: Workload::new(3, 10),
            }],
        }),
    });
    let mut payload = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 0, 0, 1];
    payload.extend(raw_entry(9, 3, 10, "AOS01@aos1:2713"));
    assert_eq!(frame_of(&msg), raw_frame(1, 2, &payload));

    let report = Message::WorkloadReport(WorkloadReport {
        query_id: QueryId(5),
        id: InstanceId(0x0a0b_0c0d),
        role: Role::LoadBalancerOnly,
        accepting: true,
        workload: Workload::new(4, 10),
    });
    let payload = [0, 0, 0, 0, 0, 0, 0, 5, 10, 11, 12, 13, 1, 1, 0, 0, 0, 4, 0, 0, 0, 10];
    assert_eq!(frame_of(&report), raw_frame(1, 6, &payload));

    let request = Message::HandshakeRequest(HandshakeRequest {
        request_id: 1,
        salt: 2,
        load_balance: false,
        cluster: Some("ax".into()),
    });
    let payload = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 2, b'a', b'x'];
    assert_eq!(frame_of(&request), raw_frame(1, 1, &payload));

    let rejected = Message::SessionReply(SessionReply {
        request_id: 3,
        outcome: SessionOutcome::Rejected(RejectReason::NotServing),
    });
    assert_eq!(frame_of(&rejected), raw_frame(1, 4, &[0, 0, 0, 0, 0, 0, 0, 3, 1, 2]));
}

#[test]
fn ipv6_endpoints_are_written_bracketed_and_short_forms_are_read() {
    let list = raw_ranked(&[raw_entry(1, 0, 5, "[::1]:2712"), raw_entry(2, 0, 5, "AOS02@aos2")]);
    let Ok(Message::HandshakeReply(reply)) = decode_one(&list) else { panic!("valid list") };
    let HandshakeOutcome::Ranked(ranked) = &reply.outcome else { panic!("ranked") };
    assert_eq!(ranked.entries[0].endpoint.host(), "::1");
    assert_eq!(ranked.entries[1].endpoint.port(), aos_cluster::DEFAULT_PORT);
    // Re-encoding writes the canonical form of both.
    let again = frame_of(&Message::HandshakeReply(reply.clone()));
    assert_eq!(again, raw_ranked(&[raw_entry(1, 0, 5, "[::1]:2712"), raw_entry(2, 0, 5, "AOS02@aos2:2712")]));
}
