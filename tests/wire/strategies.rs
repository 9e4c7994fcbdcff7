//! proptest strategies for the six messages and their parts.

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::support::*;

pub fn endpoint() -> impl Strategy<Value = Endpoint> {
    let name_host = "[A-Za-z0-9._-]{1,20}";
    let long_host = "[a-z0-9.-]{240,253}";
    // Bracketed hosts must be real IPv6 addresses, in any of their textual forms.
    let ipv6_host = any::<u128>().prop_map(|bits| std::net::Ipv6Addr::from(bits).to_string());
    let host = prop_oneof![4 => name_host.prop_map(String::from), 1 => long_host.prop_map(String::from), 2 => ipv6_host];
    let instance = proptest::option::of(prop_oneof!["[A-Za-z0-9._-]{1,12}", "[A-Za-z0-9._-]{64}"]);
    (instance, host, 1..=u16::MAX).prop_map(|(instance, host, port)| {
        Endpoint::with_instance(instance.as_deref(), &host, port).expect("strategy builds valid endpoints")
    })
}

pub fn workload() -> impl Strategy<Value = Workload> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Workload::new(a, b))
}

pub fn ranked_list(max_len: usize) -> impl Strategy<Value = RankedList> {
    let entry = (any::<u32>(), endpoint(), workload()).prop_map(|(id, endpoint, workload)| RankedEntry {
        id: InstanceId(id),
        endpoint,
        workload,
    });
    (any::<bool>(), vec(entry, 0..=max_len)).prop_map(|(stale, mut entries)| {
        // Keep first occurrences only: a valid list repeats no id or target.
        let mut kept: Vec<RankedEntry> = Vec::new();
        entries.retain(|e| {
            let fresh = kept.iter().all(|k| k.id != e.id && !k.endpoint.same_target(&e.endpoint));
            if fresh {
                kept.push(e.clone());
            }
            fresh
        });
        RankedList { stale, entries }
    })
}

pub fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    prop_oneof![Just(RefuseReason::Busy), Just(RefuseReason::WrongCluster)]
}

pub fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        Just(RejectReason::Full),
        Just(RejectReason::Draining),
        Just(RejectReason::NotServing),
        Just(RejectReason::Busy),
        Just(RejectReason::AlreadyInSession),
        Just(RejectReason::Unauthorized),
        Just(RejectReason::AddressLimit)
    ]
}

/// Empty, short, or around the 4 KiB cap.
pub fn credential() -> impl Strategy<Value = Credential> {
    let len = prop_oneof![4 => 0usize..=40, 1 => (MAX_CREDENTIAL_LEN - 3)..=MAX_CREDENTIAL_LEN];
    (len, any::<u8>()).prop_map(|(len, seed)| {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        Credential::new(bytes).expect("at most the cap")
    })
}

pub fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Serving), Just(Role::LoadBalancerOnly), Just(Role::Standalone)]
}

pub fn message() -> impl Strategy<Value = Message> {
    let cluster = proptest::option::of(prop_oneof![".{0,16}", "[a-z]{255}", "é{127}"]);
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<bool>(), cluster).prop_map(
            |(request_id, salt, load_balance, cluster)| {
                Message::HandshakeRequest(HandshakeRequest { request_id, salt, load_balance, cluster })
            }
        ),
        (any::<u64>(), ranked_list(12)).prop_map(|(request_id, list)| {
            Message::HandshakeReply(HandshakeReply { request_id, outcome: HandshakeOutcome::Ranked(list) })
        }),
        (any::<u64>(), refuse_reason()).prop_map(|(request_id, reason)| {
            Message::HandshakeReply(HandshakeReply { request_id, outcome: HandshakeOutcome::Refused(reason) })
        }),
        (any::<u64>(), proptest::option::of(credential())).prop_map(|(request_id, credential)| {
            Message::SessionRequest(SessionRequest { request_id, credential })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(request_id, session_id)| {
            Message::SessionReply(SessionReply {
                request_id,
                outcome: SessionOutcome::Accepted { session_id: SessionId(session_id) },
            })
        }),
        (any::<u64>(), reject_reason()).prop_map(|(request_id, reason)| {
            Message::SessionReply(SessionReply { request_id, outcome: SessionOutcome::Rejected(reason) })
        }),
        any::<u64>()
            .prop_map(|query_id| Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(query_id) })),
        (any::<u64>(), any::<u32>(), role(), any::<bool>(), any::<u32>(), any::<u32>()).prop_map(
            |(query_id, id, role, accepting, a, b)| {
                // Reports on the wire satisfy connected <= max_sessions.
                let workload = Workload::new(a.min(b), a.max(b));
                Message::WorkloadReport(WorkloadReport {
                    query_id: QueryId(query_id),
                    id: InstanceId(id),
                    role,
                    accepting,
                    workload,
                })
            }
        ),
    ]
}

/// Frames with version 1, a correct length and a random type and payload, and
/// now and then raw bytes: reaches the payload errors, not only the header ones.
pub fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        4 => (0u8..8, vec(any::<u8>(), 0..48)).prop_map(|(t, p)| raw_frame(1, t, &p)),
        1 => vec(any::<u8>(), 0..8),
    ];
    vec(segment, 0..10).prop_map(|segments| segments.concat())
}
