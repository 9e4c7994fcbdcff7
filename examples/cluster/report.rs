//! What the demo shows: the live progress line and the table per instance.

use super::*;

/// Redraws one progress line (every 100 ms on a terminal, a plain line every
/// second otherwise) until `wave` ends.
pub(crate) async fn progress_until(
    mut wave: tokio::task::JoinHandle<()>,
    nodes: &[Node],
    counters: &Counters,
    total: usize,
) {
    let terminal = std::io::stdout().is_terminal();
    // On a terminal the line is redrawn in place by indicatif; elsewhere it is
    // printed once a second as plain lines.
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stdout());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut tick =
        tokio::time::interval(if terminal { Duration::from_millis(100) } else { Duration::from_secs(1) });
    loop {
        let finished = tokio::select! {
            _ = &mut wave => true,
            _ = tick.tick() => false,
        };
        let mut per_instance = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let load = match node.handle.stats().await {
                Ok(s) => format!("{}/{}", s.workload.connected, s.workload.max_sessions),
                Err(_) => "down".to_owned(),
            };
            per_instance.push(format!("#{} {load}", i + 1));
        }
        let line = format!(
            "  [{:>5}/{total} started] connected {:>5}  failed {:>3}  exchanges {:>6}  | {}",
            counters.started.load(Ordering::Relaxed),
            counters.connected.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            counters.exchanges.load(Ordering::Relaxed),
            per_instance.join("  ")
        );
        match &bar {
            Some(bar) if finished => bar.finish_with_message(line),
            Some(bar) => bar.set_message(line),
            None => println!("{line}"),
        }
        if finished {
            return;
        }
    }
}

pub(crate) async fn print_table(nodes: &[Node]) {
    let mut rows = Vec::new();
    for node in nodes {
        rows.push(node.handle.stats().await.ok().map(|s| s.workload));
    }
    let total: u32 = rows.iter().flatten().map(|w| w.connected).sum();
    let capacity: u32 = nodes.iter().map(|n| n.capacity).sum();
    println!(
        "\n{:<9} {:>13} {:>7} {:>9} {:>6} {:>9} {:>9} {:>9}",
        "instance", "connected/max", "share", "cap share", "ratio", "requests", "bytes in", "bytes out"
    );
    for (i, (node, workload)) in nodes.iter().zip(&rows).enumerate() {
        let Some(w) = workload else { continue };
        println!(
            "{:<9} {:>13} {:>6.1}% {:>8.1}% {:>6.3} {:>9} {:>9} {:>9}",
            format!("#{}", i + 1),
            format!("{}/{}", w.connected, w.max_sessions),
            100.0 * f64::from(w.connected) / f64::from(total.max(1)),
            100.0 * f64::from(w.max_sessions) / f64::from(capacity),
            f64::from(w.connected) / f64::from(w.max_sessions),
            node.traffic.requests.load(Ordering::Relaxed),
            node.traffic.bytes_in.load(Ordering::Relaxed),
            node.traffic.bytes_out.load(Ordering::Relaxed),
        );
    }
}
