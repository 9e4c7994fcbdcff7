//! Encode and decode of a 99-entry ranked list (a `HandshakeReply`; AX allows
//! up to 99 instances per environment), our codec against `postcard` through
//! serde on mirror types holding the same values.
//!
//! Two postcard baselines: `postcard` mirrors entries with `Endpoint` (its serde
//! form is the text, parsed on the way in: the same validated values our
//! decoder produces, minus the duplicate check); `postcard_string` keeps the
//! endpoint as a plain `String` (no parsing at all: a lower bound, not an
//! equivalent).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use aos_cluster::wire::{
    encode, Decoder, HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RefuseReason,
};
use aos_cluster::{Endpoint, InstanceId, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

#[derive(Serialize, Deserialize, PartialEq, Debug)]
enum MirrorMessage<E> {
    // Stands in for the other messages, so the reply has a non-zero variant index as on our wire.
    HandshakeRequest,
    HandshakeReply(MirrorReply<E>),
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct MirrorReply<E> {
    request_id: u64,
    outcome: MirrorOutcome<E>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
enum MirrorOutcome<E> {
    Ranked(MirrorList<E>),
    Refused(RefuseReason),
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct MirrorList<E> {
    stale: bool,
    entries: Vec<MirrorEntry<E>>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct MirrorEntry<E> {
    id: InstanceId,
    endpoint: E,
    workload: Workload,
}

fn ranked_reply(n: u32) -> Message {
    let entries = (0..n)
        .map(|i| RankedEntry {
            id: InstanceId(1000 + i),
            endpoint: Endpoint::with_instance(
                Some(&format!("AOS{i:02}")),
                &format!("aos{i}.contoso.com"),
                2712,
            )
            .unwrap(),
            workload: Workload::new(i * 7 % 500, 500),
        })
        .collect();
    Message::HandshakeReply(HandshakeReply {
        request_id: 0x1234_5678,
        outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries }),
    })
}

fn mirror<E>(msg: &Message, endpoint: impl Fn(&Endpoint) -> E) -> MirrorMessage<E> {
    let Message::HandshakeReply(reply) = msg else { unreachable!("the bench message is a reply") };
    let HandshakeOutcome::Ranked(list) = &reply.outcome else { unreachable!("the bench reply is ranked") };
    MirrorMessage::HandshakeReply(MirrorReply {
        request_id: reply.request_id,
        outcome: MirrorOutcome::Ranked(MirrorList {
            stale: list.stale,
            entries: list
                .entries
                .iter()
                .map(|e| MirrorEntry { id: e.id, endpoint: endpoint(&e.endpoint), workload: e.workload })
                .collect(),
        }),
    })
}

fn codec(c: &mut Criterion) {
    let msg = ranked_reply(99);
    let mut frame = Vec::new();
    encode(&msg, &mut frame).unwrap();
    let with_endpoint = mirror(&msg, Endpoint::clone);
    let with_string = mirror(&msg, Endpoint::to_string);
    let postcard_bytes = postcard::to_allocvec(&with_endpoint).unwrap();
    assert_eq!(postcard_bytes, postcard::to_allocvec(&with_string).unwrap());
    let mut slice = vec![0u8; postcard_bytes.len() * 2];

    // The three decoders agree before anything is timed.
    let mut decoder = Decoder::new();
    decoder.feed(&frame);
    assert_eq!(decoder.next(), Ok(Some(msg.clone())));
    assert_eq!(postcard::from_bytes::<MirrorMessage<Endpoint>>(&postcard_bytes).unwrap(), with_endpoint);
    assert_eq!(postcard::from_bytes::<MirrorMessage<String>>(&postcard_bytes).unwrap(), with_string);

    let mut group = c.benchmark_group("ranked_99");
    group.throughput(Throughput::Elements(1));
    println!("frame bytes: ours {}, postcard {}", frame.len(), postcard_bytes.len());

    let mut out = Vec::with_capacity(frame.len());
    group.bench_function(BenchmarkId::new("encode", "ours"), |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&msg), &mut out).unwrap();
            black_box(out.len())
        })
    });
    group.bench_function(BenchmarkId::new("encode", "postcard"), |b| {
        b.iter(|| postcard::to_slice(black_box(&with_endpoint), &mut slice).unwrap().len())
    });
    group.bench_function(BenchmarkId::new("encode", "postcard_string"), |b| {
        b.iter(|| postcard::to_slice(black_box(&with_string), &mut slice).unwrap().len())
    });

    let mut decoder = Decoder::new();
    group.bench_function(BenchmarkId::new("decode", "ours"), |b| {
        b.iter(|| {
            decoder.feed(black_box(&frame));
            decoder.next().unwrap().unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("decode", "postcard"), |b| {
        b.iter(|| postcard::from_bytes::<MirrorMessage<Endpoint>>(black_box(&postcard_bytes)).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", "postcard_string"), |b| {
        b.iter(|| postcard::from_bytes::<MirrorMessage<String>>(black_box(&postcard_bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
