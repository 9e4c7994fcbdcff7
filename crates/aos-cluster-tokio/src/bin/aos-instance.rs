//! `aos-instance`: one instance (AOS) of a cluster, configured by a TOML file,
//! with a Prometheus and admin endpoint.
//!
//! ```text
//! aos-instance check instance-1.toml   # validate; print the effective configuration
//! aos-instance run instance-1.toml     # register, serve, stop on Ctrl-C / SIGTERM / POST /shutdown
//! ```
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
  curl -s -X POST http://ADMIN/shutdown                graceful stop (registry row removed)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register in the registry, serve sessions and the admin endpoint until
    /// Ctrl-C, SIGTERM or `POST /shutdown`; then stop gracefully.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match InstanceFile::load(&config) {
            Ok(file) => {
                print!("{}", file.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let file = match InstanceFile::load(&config) {
                Ok(file) => file,
                Err(e) => {
                    eprintln!("{e}");
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
            runtime.block_on(run(file))
        }
    }
}

async fn run(file: InstanceFile) -> ExitCode {
    let token = match file.admin_token_value() {
        Ok(token) => token,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
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
        _ = signal() => { info!("stopping: signal"); false }
        _ = wait_stopped(&handle) => true,
    };
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

async fn wait_stopped(handle: &aos_cluster_tokio::ServerHandle) {
    // The handle exposes no future for this; a coarse poll is enough here.
    while !handle.is_stopped() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(unix)]
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn signal() {
    let _ = tokio::signal::ctrl_c().await;
}
