//! Ranks a cluster described in a TOML file and prints the list an instance
//! would send to a client (SPEC.md phase 2, items 4-5), with the members left
//! out and why.
//!
//! ```text
//! cargo run -p aos-cluster-examples --bin rank                              # the embedded examples/cluster.toml
//! cargo run -p aos-cluster-examples --bin rank -- examples/cluster.toml 7   # a file, and a salt
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use aos_cluster::config::duration;
use aos_cluster::workload::{rank, Candidate, InstanceId, Role, Workload};
use aos_cluster::Endpoint;

const EMBEDDED: &str = include_str!("cluster.toml");

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cluster {
    #[serde(with = "duration")]
    member_ttl: Duration,
    instance: Vec<Row>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: InstanceId,
    endpoint: Endpoint,
    role: Role,
    accepting: bool,
    connected: u32,
    max_sessions: u32,
    #[serde(with = "duration")]
    heartbeat_age: Duration,
}

impl Row {
    fn candidate(&self, member_ttl: Duration) -> Candidate {
        // A stale row is left out, as the Instance leaves it out of every
        // round: here by not letting it accept.
        let fresh = self.heartbeat_age < member_ttl;
        Candidate {
            role: self.role,
            accepting: self.accepting && fresh,
            workload: Workload::new(self.connected, self.max_sessions),
        }
    }

    fn left_out_because(&self, member_ttl: Duration) -> &'static str {
        if self.heartbeat_age >= member_ttl {
            "stale heartbeat"
        } else if self.role != Role::Serving {
            "not serving"
        } else if !self.accepting {
            "draining"
        } else {
            "full"
        }
    }
}

/// `connected / max_sessions` as a percentage with two decimals, in integers.
fn percent(w: Workload) -> String {
    match w.max_sessions {
        0 => "-".to_owned(),
        max => {
            let hundredths = u64::from(w.connected) * 10_000 / u64::from(max);
            format!("{}.{:02}%", hundredths / 100, hundredths % 100)
        }
    }
}

fn line(report: &mut String, text: &str) {
    report.push_str(text);
    report.push('\n');
}

/// Ranks a cluster file's members exactly as an instance would.
#[derive(Debug, clap::Parser)]
#[command(name = "rank")]
struct Args {
    /// The cluster file (default: the embedded `examples/cluster.toml`).
    cluster: Option<String>,
    /// The request's salt, which rotates tied members.
    #[arg(default_value_t = 0)]
    salt: u64,
}

/// The report for `args`, or what is wrong with them.
fn run(args: &Args) -> Result<String, String> {
    let (name, text) = match &args.cluster {
        Some(path) => {
            (path.clone(), std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?)
        }
        None => ("embedded examples/cluster.toml".to_owned(), EMBEDDED.to_owned()),
    };
    let salt = args.salt;
    let cluster: Cluster = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let mut ids: Vec<InstanceId> = cluster.instance.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
        return Err(format!("{name}: instance id {} appears more than once", pair[0]));
    }

    let candidates: Vec<Candidate> =
        cluster.instance.iter().map(|r| r.candidate(cluster.member_ttl)).collect();
    let ranked = rank(&candidates, salt);
    let mut report = String::new();

    line(&mut report, &format!("{name}: {} members, salt {salt}", cluster.instance.len()));
    report.push('\n');
    line(
        &mut report,
        &format!(
            "{:>3}  {:<5} {:<32} {:>13} {:>8} {:>6}",
            "pos", "id", "endpoint", "connected/max", "workload", "free"
        ),
    );
    for (position, &i) in ranked.iter().enumerate() {
        let row = &cluster.instance[i];
        let w = candidates[i].workload;
        line(
            &mut report,
            &format!(
                "{:>3}  {:<5} {:<32} {:>13} {:>8} {:>6}",
                position + 1,
                row.id.to_string(),
                row.endpoint.to_string(),
                format!("{}/{}", w.connected, w.max_sessions),
                percent(w),
                w.free()
            ),
        );
    }
    let left_out: Vec<&Row> =
        (0..cluster.instance.len()).filter(|i| !ranked.contains(i)).map(|i| &cluster.instance[i]).collect();
    if !left_out.is_empty() {
        report.push('\n');
        line(&mut report, "left out:");
        for row in left_out {
            line(
                &mut report,
                &format!(
                    "     {:<5} {:<32} {}",
                    row.id.to_string(),
                    row.endpoint.to_string(),
                    row.left_out_because(cluster.member_ttl)
                ),
            );
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(&args) {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Ok(report) => match std::io::stdout().write_all(report.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the report: {e}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
