//! The blocking client against scripted fake instances on loopback. The
//! fakes run on a tokio runtime of their own; the client starts none.

#[allow(dead_code)]
mod client_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use aos_cluster::wire::SessionId;
use aos_cluster::{ClientConfig, InstanceId};
use aos_cluster_tokio::blocking::{Client, ConnectError, Session};
use aos_cluster_tokio::ClientOptions;
use client_support::{eventually, AllDead, Direct, SlowWalk, Stagger, Story, A_ID, GREETING, SESSION};
use tokio::runtime::Runtime;

const LIMIT: Duration = Duration::from_secs(5);

fn fakes() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The greeting sent with the SessionReply comes first, then bytes go both ways.
fn round_trip(session: &mut Session) {
    session.get_ref().set_read_timeout(Some(LIMIT)).expect("read timeout");
    let mut greeting = vec![0; GREETING.len()];
    session.read_exact(&mut greeting).expect("greeting");
    assert_eq!(greeting, GREETING);
    let ping = b"ping over the balanced session".repeat(100);
    session.write_all(&ping).expect("write");
    let mut echo = vec![0; ping.len()];
    session.read_exact(&mut echo).expect("echo");
    assert_eq!(echo, ping);
}

#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

#[test]
fn the_seed_story_ends_connected_to_a_with_every_attempt_logged() {
    let rt = fakes();
    let story = rt.block_on(Story::start());
    let mut session = seeded(&story.config, 7).connect().expect("connected");
    assert_eq!(session.endpoint(), &story.a.endpoint);
    assert_eq!(session.instance(), Some(InstanceId(A_ID)));
    assert_eq!(session.session_id(), SessionId(SESSION));
    story.check_log(session.attempts());

    round_trip(&mut session);
    let closed = eventually(LIMIT, || story.non_session_transports_closed());
    assert!(closed, "seed {:?}, B {:?}", story.seed.conns(), story.b.conns());
    let a = story.a.conns();
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].accepted && !a[0].eof, "the session's transport must stay open: {a:?}");

    session.shutdown().expect("shutdown");
    assert!(eventually(LIMIT, || story.a.conns()[0].eof), "{:?}", story.a.conns());
}

#[test]
fn a_black_holed_seed_does_not_stall_a_staggered_walk() {
    let rt = fakes();
    let stagger = rt.block_on(Stagger::start());
    let began = clock();
    let mut session = seeded(&stagger.config, 7).connect().expect("connected");
    let elapsed = began.elapsed();
    let half = stagger.config.handshake_timeout / 2;
    assert!(session.time_to_session() < half, "time to session {:?}", session.time_to_session());
    assert!(elapsed < half, "connect took {elapsed:?}");
    assert_eq!(session.endpoint(), &stagger.a.endpoint);
    stagger.check_log(session.attempts());

    round_trip(&mut session);
    let closed = eventually(LIMIT, || stagger.non_session_transports_closed());
    assert!(closed, "silent {:?}, seed {:?}", stagger.silent.conns(), stagger.seed.conns());

    drop(session);
    assert!(eventually(LIMIT, || stagger.a.conns()[0].eof), "{:?}", stagger.a.conns());
}

#[test]
fn all_seeds_dead_fails_with_every_attempt() {
    let rt = fakes();
    let dead = rt.block_on(AllDead::start());
    let began = clock();
    let error = Client::new(dead.config.clone()).connect().expect_err("no seed can answer");
    assert!(began.elapsed() < LIMIT);
    dead.check_error(&error);
    assert!(
        eventually(LIMIT, || dead.transports_closed()),
        "silent {:?}, garbage {:?}",
        dead.silent.conns(),
        dead.garbage.conns()
    );
}

#[test]
fn an_invalid_configuration_attempts_nothing() {
    let error = Client::new(ClientConfig::default()).connect().expect_err("no seeds");
    assert!(matches!(error, ConnectError::Config(_)), "{error}");
    assert!(error.attempts().is_empty());
}

#[test]
fn a_timed_out_transport_is_closed_while_the_walk_goes_on() {
    let rt = fakes();
    let walk = rt.block_on(SlowWalk::start());
    let config = walk.config.clone();
    let running = std::thread::spawn(move || seeded(&config, 3).connect());
    // Seed 0 times out at 1 s and must be closed then; seed 1 at 2 s (wide
    // margins: a loaded CI machine delays threads by hundreds of ms).
    // The driver closes seed 0 and then dials seed 1: wait for both, or the
    // check can fall between the two.
    let first_closed = eventually(Duration::from_millis(1800), || {
        let seen = walk.seen();
        seen[0] == (1, 1) && seen[1].0 == 1
    });
    let seen = walk.seen();
    assert!(first_closed, "{seen:?}");
    assert!(!running.is_finished(), "connect must still be walking");
    assert_eq!(seen[1], (1, 0), "seed 1's attempt is still pending: {seen:?}");
    let error = running.join().expect("joined").expect_err("all silent");
    assert_eq!(error.attempts().len(), 3, "{error}");
    assert!(eventually(LIMIT, || walk.seen() == [(1, 1); 3]), "{:?}", walk.seen());
}

#[test]
fn direct_mode_takes_the_session_on_the_seed_that_answers() {
    let rt = fakes();
    let direct = rt.block_on(Direct::start());
    let mut session = seeded(&direct.config, 7).connect().expect("connected");
    assert_eq!(session.endpoint(), &direct.seed.endpoint);
    assert_eq!(session.instance(), Some(InstanceId(A_ID)), "the seed listed itself");
    direct.check_log(session.attempts());
    round_trip(&mut session);
    assert!(eventually(LIMIT, || direct.handshake_closed_session_open()), "{:?}", direct.seed.conns());
}

/// A client whose connects are seeded with `seed` (reproducible attempts).
fn seeded(config: &ClientConfig, seed: u64) -> Client {
    Client::with_options(config.clone(), ClientOptions::new().with_rng_seed(seed))
}
