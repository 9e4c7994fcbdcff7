//! The blocking client: `std::net` only, no async runtime. Opens one
//! balanced session with [`aos_cluster_tokio::blocking::Client`], prints the
//! attempt log, then exchanges lines over the session (the `instance`
//! example answers each line prefixed with its id).
//!
//! ```text
//! cargo run -p aos-cluster-examples --bin blocking_client -- [--no-balance] [--stagger] [--cluster NAME]
//!     [--send LINE]... SEED...
//! cargo run -p aos-cluster-examples --bin blocking_client -- --cluster demo AOS01@127.0.0.1:2712 127.0.0.1:2713
//! ```
//!
//! Exits 1 when no session could be opened, 2 on bad arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use aos_cluster::config::DEFAULT_ATTEMPT_DELAY;
use aos_cluster::{ClientConfig, Endpoint};
use clap::Parser;

/// One balanced session over blocking std sockets.
#[derive(Parser)]
#[command(name = "blocking_client")]
struct Args {
    /// Direct mode (AX's -loadbalance=0): the answering seed is the target.
    #[arg(long)]
    no_balance: bool,
    /// Stagger handshakes (RFC 8305 attempt delay, 250 ms).
    #[arg(long)]
    stagger: bool,
    /// The cluster name the instances must belong to.
    #[arg(long)]
    cluster: Option<String>,
    /// Lines to send over the session, one exchange each.
    #[arg(long = "send", default_values_t = ["hello".to_owned(), "goodbye".to_owned()])]
    lines: Vec<String>,
    /// The seed list, in order: host, host:port, instance@host:port, `[v6]:port`.
    #[arg(required = true)]
    seeds: Vec<Endpoint>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = ClientConfig {
        cluster: args.cluster,
        load_balance: !args.no_balance,
        attempt_delay: args.stagger.then_some(DEFAULT_ATTEMPT_DELAY),
        ..ClientConfig::with_seeds(args.seeds)
    };
    let session = match aos_cluster_tokio::blocking::Client::new(config.clone()).connect() {
        Ok(session) => session,
        Err(e) => {
            eprintln!("{e}");
            return if e.attempts().is_empty() { ExitCode::from(2) } else { ExitCode::FAILURE };
        }
    };
    for record in session.attempts() {
        println!("  {record}");
    }
    let id = session.instance().map_or("unknown id".to_owned(), |i| i.to_string());
    println!("connected to {} ({id}), session {}", session.endpoint(), session.session_id());
    match exchange(session, &args.lines) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("the session failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line out, one line back, for each of `lines`.
fn exchange(session: aos_cluster_tokio::blocking::Session, lines: &[String]) -> std::io::Result<()> {
    session.get_ref().set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut session = BufReader::new(session);
    for line in lines {
        session.get_mut().write_all(format!("{line}\n").as_bytes())?;
        let mut reply = String::new();
        (&mut session).take(4096).read_line(&mut reply)?;
        if reply.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the instance closed the session",
            ));
        }
        println!("> {line}\n< {}", reply.trim_end());
    }
    Ok(())
}
