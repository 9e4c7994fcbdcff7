//! Log capture for a test binary: one global subscriber, because servers and
//! registries log from tokio's worker and blocking threads, which a
//! per-thread one would miss. Tests look for lines naming their own file,
//! row or hook.

use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Every log line at `level` or above since the first call, which installs
/// the capture (at that first call's level: one per binary).
pub fn capture(level: tracing::Level) -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || LogWriter(logs))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

/// The captured lines that contain `needle`.
pub fn lines_containing(logs: &Mutex<Vec<u8>>, needle: &str) -> Vec<String> {
    let logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logs).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
