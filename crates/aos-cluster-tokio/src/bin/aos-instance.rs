//! `aos-instance`: one instance (AOS) of a cluster, configured by a TOML file,
//! with a Prometheus and admin endpoint.
//!
//! ```text
//! aos-instance check instance-1.toml   # validate; print the effective configuration
//! aos-instance run instance-1.toml     # register, serve, stop on Ctrl-C / SIGTERM / POST /shutdown
//! ```
//!
//! Stopping (Ctrl-C, SIGTERM or `POST /shutdown`) drains first: new sessions
//! are refused and the instance stops advertising itself as accepting; open
//! sessions have `shutdown_grace` (default 30 s) to end by themselves, then
//! the rest are closed, the registry row is removed and the process exits 0.
//! A second signal (or request) during the drain stops at once.
//!
//! Admitted sessions get an echo service (every byte is sent back) so a
//! cluster can be tried with no application of one's own.
//!
//! Exit codes: 0 stopped gracefully (or `check` found the file valid);
//! 1 failed while running; 2 usage or configuration error; 3 could not start
//! (a port in use, the registry unreachable, the id held by a live process).
//! Logs go to stderr (`RUST_LOG`, default `info`); the one line on stdout
//! says where the instance and its admin endpoint listen.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aos_cluster_tokio::admin::{Admin, Metrics};
use aos_cluster_tokio::config_file::InstanceFile;
use aos_cluster_tokio::{registry, Server};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::{error, info};

/// Configuration error (also clap's code for usage errors).
const EXIT_CONFIG: u8 = 2;
/// Could not start.
const EXIT_START: u8 = 3;
/// Failed while running.
const EXIT_RUNTIME: u8 = 1;

/// One instance of an aos-cluster: balanced sessions without a dedicated load balancer.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
Exit codes: 0 ok; 1 failed while running; 2 usage or configuration error; 3 could not start.

Admin endpoint (address `admin` in the file, loopback by default):
  curl -s http://ADMIN/metrics                         Prometheus metrics
  curl -s http://ADMIN/stats                           figures as JSON
  curl -s -X POST --data on http://ADMIN/drain         reject new clients (`off`: admit again)
  curl -s -X POST --data 50 http://ADMIN/max-sessions  Max concurrent sessions
  curl -s -X POST http://ADMIN/shutdown                graceful stop: drain up to shutdown_grace, then stop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register in the registry, serve sessions and the admin endpoint until
    /// Ctrl-C, SIGTERM or `POST /shutdown`; then drain for up to
    /// `shutdown_grace` and stop (a second signal stops at once).
    Run {
        /// The configuration file (TOML).
        config: PathBuf,
    },
    /// Validate the configuration file and print it with every default filled in.
    Check {
        /// The configuration file (TOML).
        config: PathBuf,
    },
}

/// Reads `config`, printing every warning and error on stderr before anything else.
fn load(config: &std::path::Path) -> Result<InstanceFile, ExitCode> {
    match InstanceFile::load(config) {
        Ok(file) => {
            for warning in file.warnings() {
                eprintln!("{}: warning: {warning}", config.display());
            }
            Ok(file)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(file) => {
                print!("{}", file.to_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let file = match load(&config) {
                Ok(file) => file,
                Err(code) => return code,
            };
            // The token is part of the configuration: a problem with it is
            // reported like any other, before logging starts.
            let token = match file.admin_token_value() {
                Ok(token) => token,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_START);
                }
            };
            runtime.block_on(run(file, token))
        }
    }
}

async fn run(file: InstanceFile, token: Option<String>) -> ExitCode {
    // Listening for signals from the start: a signal during start-up or the
    // drain is never lost, and never kills the process half-way.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot listen for signals: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let grace = file.server.shutdown_grace;
    let registry = match registry::open(&file.registry).await {
        Ok(r) => r,
        Err(e) => {
            error!("cannot open the registry: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let admin_listener = match tokio::net::TcpListener::bind(file.admin).await {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on the admin address {}: {e}", file.admin);
            return ExitCode::from(EXIT_START);
        }
    };
    let admin_addr = admin_listener.local_addr().unwrap_or(file.admin);
    let mut server = match Server::bind(file.server, registry).await {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start the instance: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let handle = server.handle();
    let metrics = Arc::new(Metrics::new());
    handle.set_rank_observer(metrics.rank_observer());
    let shutdown = Arc::new(Notify::new());
    let admin = Admin::new(handle.clone(), metrics, shutdown.clone(), token);
    let admin_task = tokio::spawn(admin.serve(admin_listener));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "aos-instance listen={} endpoint={} admin=http://{}",
            server.local_addr(),
            server.endpoint(),
            admin_addr
        );
        let _ = out.flush();
    }
    let sessions = tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let stopped_by_itself = tokio::select! {
        _ = shutdown.notified() => { info!("stopping: admin request"); false }
        signal = signals.next() => { info!("stopping: {signal}"); false }
        _ = handle.stopped() => true,
    };
    if !stopped_by_itself {
        // Drain first; a second signal (or request) stops at once.
        info!(?grace, "draining: new sessions refused; open ones have the grace period to end");
        tokio::select! {
            _ = handle.shutdown_graceful(grace) => {}
            signal = signals.next() => {
                info!("{signal} again: stopping at once");
                handle.shutdown().await;
            }
            _ = shutdown.notified() => {
                info!("admin request again: stopping at once");
                handle.shutdown().await;
            }
        }
    }
    handle.shutdown().await;
    admin_task.abort();
    sessions.abort();
    if stopped_by_itself {
        error!("the server stopped on its own");
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    }
}

/// The stop signals: SIGTERM and SIGINT (Ctrl-C), listened for once for the
/// whole run.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
