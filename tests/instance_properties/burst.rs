//! Bursts of handshakes against the reference ranking: one round, one reply each.

use super::*;

/// Instance 1 with peers 2..=peers+1; returns the instance, the first handshake's
/// registry query answered, and the peer query ids.
fn cluster(
    peers: u32,
    herd_control: bool,
    figures: &[(u32, u32)],
) -> (Instance, std::time::Instant, Vec<QueryId>) {
    let now = base();
    let mut c = config(1, Role::Serving, 10);
    c.herd_control = herd_control;
    let mut inst = Instance::new(c, now, 3).expect("valid");
    while inst.poll_action().is_some() {}
    let members: Vec<_> = (2..peers + 2)
        .map(|id| {
            let (connected, max) = figures[(id - 2) as usize];
            member(id, Role::Serving, connected, max)
        })
        .collect();
    inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(0), request: handshake(0, 0) }, now)
        .expect("usable");
    let Some(Action::QueryRegistry { query_id, .. }) = inst.poll_action() else { panic!("registry query") };
    inst.handle_event(Event::RegistrySnapshot { query_id, members }, now).expect("usable");
    let mut queries = Vec::new();
    while let Some(action) = inst.poll_action() {
        let Action::QueryPeer { query_id, .. } = action else { panic!("peer queries only, got {action:?}") };
        queries.push(query_id);
    }
    (inst, now, queries)
}

fn figures(peers: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((1u32..20).prop_flat_map(|max| (0..=max, Just(max))), peers)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// K concurrent handshakes cost one registry query and one query per
    /// peer; with every peer silent each gets exactly one reply, at
    /// `peer_timeout` after the queries went out (one timeout step).
    #[test]
    fn a_burst_shares_one_round_even_when_every_peer_is_silent(k in 1usize..300, figures in figures(1..8)) {
        let peers = figures.len() as u32;
        let (mut inst, now, queries) = cluster(peers, true, &figures);
        prop_assert_eq!(queries.len(), peers as usize);
        for r in 1..k as u64 {
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: handshake(r, r) }, now)
                .expect("usable");
            prop_assert_eq!(inst.poll_action(), None, "a joining handshake costs no query");
        }
        let mut replied = vec![0u32; k];
        let collect = |inst: &mut Instance, replied: &mut Vec<u32>| {
            while let Some(action) = inst.poll_action() {
                let Action::Reply { conn, message: Message::HandshakeReply(reply) } = action else {
                    panic!("only handshake replies, got {action:?}");
                };
                assert_eq!(conn.0, reply.request_id);
                assert!(matches!(reply.outcome, HandshakeOutcome::Ranked(_)));
                replied[conn.0 as usize] += 1;
            }
        };
        {
            let deadline = inst.poll_timeout().expect("peer timer");
            prop_assert_eq!(deadline, now + inst.config().peer_timeout);
            inst.handle_timeout(deadline - Duration::from_nanos(1));
            collect(&mut inst, &mut replied);
            prop_assert!(replied.iter().all(|&n| n == 0), "no reply before the timeout");
            inst.handle_timeout(deadline);
        }
        collect(&mut inst, &mut replied);
        prop_assert!(replied.iter().all(|&n| n == 1), "exactly one reply each");
        prop_assert_eq!(inst.stats().round.registry_queries, 1);
        prop_assert_eq!(inst.stats().round.peer_queries, u64::from(peers));
    }

    /// Herd control on, one round: the replies equal a sequential reference
    /// model that ranks the predicted figures, orders the head's tie group
    /// least recently headed first (never first, equal records in `rank()`'s
    /// order), lists the members predicted full (free by their reports) last,
    /// ranked by and showing their reported figures, and adds one session to
    /// each reply's first entry (a tail member when all are predicted full);
    /// with it off, every reply is `rank()` of the reported figures.
    #[test]
    fn burst_replies_match_the_reference_model(
        salts in prop::collection::vec(any::<u64>(), 1..40),
        figures in figures(0..8),
        own_max in 1u32..20,
        herd_control in any::<bool>(),
    ) {
        let peers = figures.len() as u32;
        let now = base();
        let mut c = config(1, Role::Serving, own_max);
        c.herd_control = herd_control;
        let mut inst = Instance::new(c, now, 3).expect("valid");
        while inst.poll_action().is_some() {}
        let members: Vec<_> = (0..peers).map(|i| member(i + 2, Role::Serving, 0, 1)).collect();
        for (r, &salt) in salts.iter().enumerate() {
            let r = r as u64;
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: handshake(r, salt) }, now)
                .expect("usable");
        }
        let mut queries = Vec::new();
        let mut replies = Vec::new();
        while let Some(action) = inst.poll_action() {
            match action {
                Action::QueryRegistry { query_id, .. } => {
                    inst.handle_event(Event::RegistrySnapshot { query_id, members: members.clone() }, now)
                        .expect("usable");
                }
                Action::QueryPeer { query_id, peer, .. } => queries.push((query_id, peer)),
                reply @ Action::Reply { .. } => replies.push(reply),
                other => panic!("unexpected {other:?}"),
            }
        }
        for &(query_id, peer) in &queries {
            let (connected, max) = figures[(peer.0 - 2) as usize];
            inst.handle_event(Event::WorkloadReport { report: report(query_id, peer.0, connected, max) }, now)
                .expect("usable");
        }
        replies.extend(std::iter::from_fn(|| inst.poll_action()));
        let mut replies = replies.into_iter();
        // The model: self first by id (1), then peers 2.. in id order.
        let mut ids = vec![InstanceId(1)];
        let mut model = vec![Candidate { role: Role::Serving, accepting: true, workload: Workload::new(0, own_max) }];
        for (i, &(connected, max)) in figures.iter().enumerate() {
            ids.push(InstanceId(i as u32 + 2));
            model.push(Candidate { role: Role::Serving, accepting: true, workload: Workload::new(connected, max) });
        }
        let reported = model.clone();
        // The reply number at which each model member last headed a list.
        let mut headed_at: Vec<Option<usize>> = vec![None; model.len()];
        for (r, &salt) in salts.iter().enumerate() {
            let Some(Action::Reply { conn, message: Message::HandshakeReply(reply) }) = replies.next() else {
                panic!("one reply per handshake, in arrival order");
            };
            prop_assert_eq!(conn, ConnectionId(r as u64));
            let HandshakeOutcome::Ranked(list) = reply.outcome else { panic!("ranked") };
            let mut order = rank(&model, salt);
            if herd_control && !order.is_empty() {
                // The head's tie group, least recently headed first (never
                // first), equal records in rank()'s order.
                let tied = order.iter().take_while(|&&i| model[i].workload == model[order[0]].workload).count();
                let mut group: Vec<usize> = order[..tied].to_vec();
                group.sort_by_key(|&i| headed_at[i].map_or(0, |r| r + 1));
                order[..tied].copy_from_slice(&group);
            }
            if herd_control {
                // Members free by their reports but predicted full follow,
                // ranked by their reported figures (SPEC 2.4: never dropped).
                let tail: Vec<Candidate> = reported
                    .iter()
                    .zip(&model)
                    .map(|(r, p)| Candidate { accepting: r.accepting && p.workload.is_full(), ..*r })
                    .collect();
                order.extend(rank(&tail, salt));
            }
            let shown = |i: usize| if model[i].workload.is_full() { reported[i].workload } else { model[i].workload };
            let want: Vec<(InstanceId, Workload)> = order.iter().map(|&i| (ids[i], shown(i))).collect();
            let got: Vec<(InstanceId, Workload)> = list.entries.iter().map(|e| (e.id, e.workload)).collect();
            prop_assert_eq!(got, want);
            let free = reported.iter().filter(|c| c.is_eligible()).count();
            prop_assert_eq!(list.entries.len(), free, "never dropped, never empty while one is free");
            if herd_control {
                if let Some(&first) = order.first() {
                    headed_at[first] = Some(r);
                    model[first].workload.connected += 1;
                }
            }
        }
        prop_assert!(replies.next().is_none());
    }
}
