//! The configuration file of the `aos-instance` binary: a [`ServerConfig`]
//! (its fields at the top level, the instance in an `[instance]` table) plus
//! the registry URL and the admin address.
//!
//! ```toml
//! registry = "sqlite://cluster.db"
//! admin = "127.0.0.1:9711"      # default 127.0.0.1:0 (a free loopback port)
//! listen = "127.0.0.1:2712"
//!
//! [instance]
//! id = 1
//! endpoint = "127.0.0.1:2712"
//! cluster = "prod"
//! max_sessions = 100
//! ```
//!
//! Errors are plain sentences naming the file, the line and the field:
//! `instance.toml:7: instance: `max_sessions` must not be zero`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::ServerConfig;

/// Everything `aos-instance run` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFile {
    /// The registry: `sqlite://PATH`, `sqlite::memory:`, `postgres://...` or
    /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (with feature `etcd`).
    pub registry: String,
    /// Where the admin endpoint (`/metrics`, `/stats`, `/drain`, ...) listens.
    /// Default `127.0.0.1:0` (loopback, a free port, printed at start).
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// Where the bearer token that mutating admin calls (`POST`) must carry
    /// comes from: `env:NAME` (an environment variable) or `file:PATH` (the
    /// file's text, trimmed). Required when `admin` is not on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The server: `listen`, the limits and the `[instance]` table.
    #[serde(flatten)]
    pub server: ServerConfig,
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The 1-based line the problem is on, when it could be found.
    pub line: Option<usize>,
    /// The plain sentence.
    pub message: String,
}

/// Why a configuration file was not usable: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Every problem, in the order found.
    pub problems: Vec<FileProblem>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{name}:{line}: {}", p.message)?,
                None => write!(f, "{name}: {}", p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}

impl InstanceFile {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<InstanceFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_owned(),
            problems: vec![FileProblem { line: None, message: format!("cannot read the file: {e}") }],
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<InstanceFile, FileError> {
        let error = |problems| FileError { path: path.to_owned(), problems };
        let file: InstanceFile = toml::from_str(text).map_err(|e| error(vec![parse_problem(text, &e)]))?;
        let problems = file.problems(text);
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(error(problems))
        }
    }

    /// The effective configuration, every default filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    fn problems(&self, text: &str) -> Vec<FileProblem> {
        let mut out = Vec::new();
        let mut push = |field: Option<String>, message: String| {
            let line = field.as_deref().and_then(|f| locate(text, f));
            out.push(FileProblem { line, message });
        };
        if let Err(e) = self.server.instance.validate() {
            for p in &e.problems {
                let message = p.to_string();
                let field = first_field(&message).map(|f| format!("instance.{f}"));
                push(field, format!("instance: {message}"));
            }
        }
        if let Err(crate::ServerError::Config(text)) = self.server.validate() {
            // The instance's problems were listed above, one by one.
            for message in text.split("; ").filter(|m| !m.starts_with("instance: ")) {
                push(first_field(message).map(str::to_owned), message.to_owned());
            }
        }
        if let Err(e) = check_registry_url(&self.registry) {
            push(Some("registry".into()), format!("`registry`: {e}"));
        }
        match &self.admin_token {
            Some(source) if !(source.starts_with("env:") || source.starts_with("file:")) => {
                push(Some("admin_token".into()), "`admin_token`: expected `env:NAME` or `file:PATH`".into())
            }
            None if !self.admin.ip().is_loopback() => push(
                Some("admin".into()),
                format!(
                    "`admin` {} is not on loopback: set `admin_token` (`env:NAME` or `file:PATH`) so that \
                     drain, max-sessions and shutdown need a bearer token",
                    self.admin
                ),
            ),
            _ => {}
        }
        out
    }

    /// The bearer token `admin_token` names, read now; `None` without one.
    pub fn admin_token_value(&self) -> Result<Option<String>, String> {
        let Some(source) = &self.admin_token else { return Ok(None) };
        let token = if let Some(name) = source.strip_prefix("env:") {
            std::env::var(name).map_err(|e| format!("`admin_token` {source}: {e}"))?
        } else if let Some(path) = source.strip_prefix("file:") {
            std::fs::read_to_string(path).map_err(|e| format!("`admin_token` {source}: {e}"))?
        } else {
            return Err("`admin_token`: expected `env:NAME` or `file:PATH`".into());
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(format!("`admin_token` {source}: the token is empty"));
        }
        Ok(Some(token))
    }
}

fn check_registry_url(url: &str) -> Result<(), String> {
    let known = url == "sqlite::memory:"
        || url.starts_with("sqlite://")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || url.starts_with("etcd://");
    if known {
        Ok(())
    } else {
        Err("expected `sqlite://PATH`, `sqlite::memory:`, `postgres://USER@HOST:PORT/DB` \
             or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`"
            .into())
    }
}

/// The first `backquoted` name in a message, or a leading bare field name.
fn first_field(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The 1-based line of a dotted field (`instance.max_sessions`,
/// `instance.limits.max_members`, `listen`): the line of its key in its table,
/// or the table's header if the key is not written (a default).
fn locate(text: &str, field: &str) -> Option<usize> {
    let (table, key) = match field.rsplit_once('.') {
        Some((table, key)) => (table, key),
        None => ("", field),
    };
    let mut current = String::new();
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
            if current == table {
                header = Some(i + 1);
            }
            continue;
        }
        // Dotted keys in a parent table (`limits.max_members = 1`) count too.
        let full = match line.split_once('=') {
            Some((k, _)) if current.is_empty() => k.trim().to_owned(),
            Some((k, _)) => format!("{current}.{}", k.trim()),
            None => continue,
        };
        let wanted = if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") };
        if full == wanted {
            return Some(i + 1);
        }
    }
    header
}

fn parse_problem(text: &str, e: &toml::de::Error) -> FileProblem {
    // toml's Display repeats the file's text with a caret; the message alone is the sentence.
    let message = e.message().trim().to_owned();
    let message = match message.strip_prefix("unknown field ") {
        Some(rest) => format!("unknown setting {rest}"),
        None => message,
    };
    // Settings read through `#[serde(flatten)]` lose their spans (the error
    // points at the whole document): find the line by what the message names.
    let named = first_field(&message).and_then(|needle| find_line(text, needle));
    if let Some((line, key)) = named {
        return FileProblem { line: Some(line), message: format!("{key}: {message}") };
    }
    let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    FileProblem { line, message }
}

/// The first line whose key is `needle`, or else whose value holds it: its
/// 1-based number and its dotted key (`instance.member_ttl`).
fn find_line(text: &str, needle: &str) -> Option<(usize, String)> {
    let mut table = String::new();
    let mut by_value = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.trim().to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        let dotted = if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") };
        if key == needle {
            return Some((i + 1, dotted));
        }
        if by_value.is_none() && value.contains(needle) {
            by_value = Some((i + 1, dotted));
        }
    }
    by_value
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"registry = "sqlite::memory:"
listen = "127.0.0.1:0"

[instance]
id = 1
endpoint = "127.0.0.1:2712"
cluster = "c"
max_sessions = 10
"#;

    #[test]
    fn a_minimal_file_gets_every_default() {
        let file = InstanceFile::parse(Path::new("i.toml"), GOOD).unwrap();
        assert_eq!(file.admin, default_admin());
        let printed = file.to_toml();
        for needle in ["idle_timeout = \"1m\"", "max_connections = 10000", "member_ttl = \"30s\""] {
            assert!(printed.contains(needle), "{needle} missing from\n{printed}");
        }
        // What `check` prints reads back as the same configuration.
        assert_eq!(InstanceFile::parse(Path::new("p.toml"), &printed).unwrap(), file);
    }

    #[test]
    fn a_validation_problem_names_file_line_and_field() {
        let text = GOOD.replace("max_sessions = 10", "max_sessions = 0");
        let e = InstanceFile::parse(Path::new("instance.toml"), &text).unwrap_err();
        assert_eq!(e.to_string(), "instance.toml:8: instance: `max_sessions` must not be zero");
    }

    #[test]
    fn a_misspelt_setting_names_its_line() {
        let text = GOOD.replace("max_sessions = 10", "max_sessions = 10\nmax_sesions = 3");
        let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("i.toml:9: instance.max_sesions: unknown setting `max_sesions`"),
            "{shown}"
        );
        assert!(!shown.contains("FileError"), "{shown}");
    }

    #[test]
    fn a_bad_value_names_its_line_and_field() {
        let text = GOOD.replace("max_sessions = 10", "max_sessions = 10\nmember_ttl = \"5 parsecs\"");
        let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("i.toml:9: instance.member_ttl: `5 parsecs`: expected"), "{shown}");
        let text =
            GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nidle_timeout = \"soon\"");
        let shown = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err().to_string();
        assert!(shown.starts_with("i.toml:3: idle_timeout: `soon`"), "{shown}");
    }

    #[test]
    fn the_shipped_sample_files_are_valid() {
        for (name, text) in [
            ("instance-1.toml", include_str!("../config/instance-1.toml")),
            ("instance-2.toml", include_str!("../config/instance-2.toml")),
            ("instance-3.toml", include_str!("../config/instance-3.toml")),
        ] {
            let file = InstanceFile::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{e}"));
            assert!(file.admin.ip().is_loopback(), "{name}");
        }
    }

    #[test]
    fn a_bad_registry_url_is_refused() {
        let text = GOOD.replace("sqlite::memory:", "mysql://x");
        let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
        assert!(e.to_string().starts_with("i.toml:1: `registry`: expected"), "{e}");
        assert!(e.to_string().contains("etcd://"), "{e}");
        let text = GOOD.replace("sqlite::memory:", "etcd://10.0.0.1:2379,10.0.0.2:2379/aos");
        let file = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.registry, "etcd://10.0.0.1:2379,10.0.0.2:2379/aos");
    }
}
