//! The readable comparison table.

use std::fmt::Write;

use crate::metrics::{Stat, Summary};

fn pair(s: Stat, digits: usize) -> String {
    format!("{:.digits$} / {:.digits$}", s.p50, s.p99)
}

/// One row per summary: every metric as `p50 / p99` over seeds.
pub fn table(rows: &[Summary]) -> String {
    let header = [
        "scenario",
        "strategy",
        "seeds",
        "busiest/mean",
        "spread pts",
        "full rej/sess",
        "attempts/sess",
        "tts p50 ms",
        "tts p99 ms",
        "tts max ms",
        "peak/fair 100ms",
        "peer q/round",
        "events/sess",
        "lost",
        "failed",
        "over cap",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.strategy.clone(),
                r.runs.to_string(),
                pair(r.busiest_over_mean, 3),
                pair(r.spread_points, 1),
                pair(r.full_rejections_per_session, 3),
                pair(r.attempts_per_session, 2),
                pair(r.time_to_session_p50_ms, 0),
                pair(r.time_to_session_p99_ms, 0),
                pair(r.time_to_session_max_ms, 0),
                // 0 everywhere: no window had a share large enough to judge.
                if r.arrival_peak_ratio.p99 == 0.0 { "n/a".into() } else { pair(r.arrival_peak_ratio, 2) },
                pair(r.peer_queries_per_round, 1),
                pair(r.events_per_session, 0),
                r.lost.to_string(),
                r.failed.to_string(),
                r.over_capacity.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| cells.iter().map(|row| row[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, row: &[&str]| {
        let parts: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "| {} |", parts.join(" | "));
    };
    line(&mut out, &header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &refs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RunMetrics;

    #[test]
    fn table_has_a_row_per_summary_with_aligned_columns() {
        let run = RunMetrics {
            rng_seed: 0,
            clients: 10,
            sessions: 10,
            failed: 0,
            lost: 0,
            busiest_over_mean: 1.25,
            admitted_busiest_over_mean: 1.0,
            spread_points: 3.0,
            over_capacity: 0,
            admitted_while_draining: 0,
            full_rejections_per_session: 0.5,
            attempts_per_session: 2.0,
            time_to_session_p50_ms: 20.0,
            time_to_session_p99_ms: 40.0,
            time_to_session_max_ms: 41.0,
            arrival_peak_ratio: 1.5,
            end_of_arrivals_ms: 1000.0,
            utilisation: vec![],
            steps: 5,
            rounds: 3,
            peer_queries_per_round: 7.0,
            max_peer_queries_in_a_round: 7,
            events_per_session: 12.0,
            hostile_handshakes: 0,
            hostile_answered: 0,
        };
        let unjudged = RunMetrics { arrival_peak_ratio: 0.0, ..run.clone() };
        let rows = [
            Summary::of("s", "default", std::slice::from_ref(&run)),
            Summary::of("s", "ax-plain", &[unjudged]),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
        assert!(lines[2].contains("1.250 / 1.250") && lines[2].contains("1.50 / 1.50"));
        assert!(lines[3].contains("ax-plain") && lines[3].contains("| n/a "));
    }
}
