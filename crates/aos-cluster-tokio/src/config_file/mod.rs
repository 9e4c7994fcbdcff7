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
//! Configuration is checked as a whole and every problem is reported in one
//! run, each a plain sentence naming the file, the line and the setting:
//!
//! ```text
//! instance.toml:4: idle_timout: unknown setting `idle_timout` (did you mean `idle_timeout`?)
//! instance.toml:7: instance.id: invalid type: string "one", expected u32
//! instance.toml:9: instance: `max_sessions` must not be zero
//! ```
//!
//! An unknown setting anywhere (the top level, `[instance]` and its tables)
//! is an error; so is a value of the wrong type, a missing required setting
//! and a contradiction between settings. Advice that does not stop the
//! instance (an admin endpoint off loopback, for example) comes from
//! [`InstanceFile::warnings`].

mod problems;
mod settings;
mod spans;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::ImDocument;

use crate::server::ServerConfig;
use problems::Check;
use spans::{line_of, locate};

/// Everything `aos-instance run` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceFile {
    /// The registry: `sqlite://PATH`, `sqlite::memory:`, `postgres://...` or
    /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (with feature `etcd`).
    pub registry: String,
    /// Where the admin endpoint (`/metrics`, `/stats`, `/drain`, ...) listens.
    /// Default `127.0.0.1:0` (loopback, a free port, printed at start).
    pub admin: SocketAddr,
    /// Where the bearer token that mutating admin calls (`POST`) must carry
    /// comes from: `env:NAME` (an environment variable) or `file:PATH` (the
    /// file's text, trimmed). Required when `admin` is not on loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The server: `listen`, the limits, `shutdown_grace` and the
    /// `[instance]` table.
    #[serde(flatten)]
    pub server: ServerConfig,
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
    /// Every problem, by line.
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

    /// Parses and validates `text` (read from `path`, named in errors):
    /// every problem in the file, by line.
    pub fn parse(path: &Path, text: &str) -> Result<InstanceFile, FileError> {
        let error = |problems| FileError { path: path.to_owned(), problems };
        let doc = ImDocument::parse(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            let message = e.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
            error(vec![FileProblem { line, message: format!("not valid TOML: {message}") }])
        })?;
        let mut check = Check { text, doc: &doc, problems: Vec::new(), replaced: Vec::new() };
        let file = check.read();
        let Check { mut problems, replaced, .. } = check;
        if let Some(file) = &file {
            // What a placeholder stood in for was reported already.
            let stood_in = |field: &Option<String>| {
                field
                    .as_deref()
                    .is_some_and(|f| replaced.iter().any(|r| f == r || f.starts_with(&format!("{r}."))))
            };
            for (field, message) in file.problems() {
                if !stood_in(&field) {
                    let line = field.as_deref().and_then(|f| locate(text, f));
                    problems.push(FileProblem { line, message });
                }
            }
        }
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        match file {
            Some(file) if problems.is_empty() => Ok(file),
            _ => Err(error(problems)),
        }
    }

    /// The effective configuration, every default filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Advice about a valid configuration, one sentence each (printed before
    /// anything else by `check` and `run`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.admin.ip().is_loopback() && self.admin_token.is_some() {
            out.push(format!(
                "`admin` {} is not on loopback: the admin endpoint is plain HTTP, so its bearer token and \
                 figures cross the network unencrypted; keep it on a private network",
                self.admin
            ));
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
