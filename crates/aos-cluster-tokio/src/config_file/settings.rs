//! The settings: the file's own read beside the server's, the placeholders
//! that stand in for a setting found wrong, and the checks across settings
//! once every one is read.

use std::net::SocketAddr;

use aos_cluster::{Endpoint, InstanceConfig, InstanceId};
use serde::Deserialize;
use toml_edit::{DocumentMut, Table};

use super::InstanceFile;
use crate::server::ServerConfig;

/// The file's own settings, beside the server's (read on their own: a
/// flattened struct would accept any unknown setting and lose every line).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    registry: String,
    #[serde(default = "default_admin")]
    admin: SocketAddr,
    #[serde(default)]
    admin_token: Option<String>,
}

/// The top-level keys [`FileSettings`] takes; the rest are the server's.
pub(super) const FILE_SETTINGS: [&str; 3] = ["registry", "admin", "admin_token"];

pub(super) fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl InstanceFile {
    /// A valid file with placeholders where a setting is required: what
    /// stands in for a setting found wrong, so the rest can still be checked.
    pub(super) fn template() -> InstanceFile {
        let endpoint = Endpoint::new("127.0.0.1", 2712).unwrap_or_else(|_| unreachable!("a valid endpoint"));
        let instance = InstanceConfig::new(InstanceId(1), endpoint, 1);
        InstanceFile {
            registry: "sqlite::memory:".into(),
            admin: default_admin(),
            admin_token: None,
            server: ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), instance),
        }
    }

    /// Every problem of a parsed file: its dotted field, when one is named,
    /// and the sentence.
    pub(super) fn problems(&self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.server.instance.validate() {
            for p in &e.problems {
                let message = p.to_string();
                // A problem of no one setting is on the `[instance]` header's line.
                let field = Some(
                    first_field(&message).map_or_else(|| "instance.".into(), |f| format!("instance.{f}")),
                );
                out.push((field, format!("instance: {message}")));
            }
        }
        if let Err(crate::ServerError::Config(text)) = self.server.validate() {
            // The instance's problems were listed above, one by one.
            for message in text.split("; ").filter(|m| !m.starts_with("instance: ")) {
                out.push((first_field(message).map(str::to_owned), message.to_owned()));
            }
        }
        if let Err(e) = check_registry_url(&self.registry) {
            out.push((Some("registry".into()), format!("`registry`: {e}")));
        }
        match &self.admin_token {
            Some(source) if !(source.starts_with("env:") || source.starts_with("file:")) => out.push((
                Some("admin_token".into()),
                "`admin_token`: expected `env:NAME` or `file:PATH`".into(),
            )),
            None if !self.admin.ip().is_loopback() => out.push((
                Some("admin".into()),
                format!(
                    "`admin` {} is not on loopback: set `admin_token` (`env:NAME` or `file:PATH`) so that \
                     drain, max-sessions and shutdown need a bearer token",
                    self.admin
                ),
            )),
            _ => {}
        }
        out
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

/// The file's settings and the server's, each from its own keys.
pub(super) fn deserialize(table: &Table) -> Result<InstanceFile, toml_edit::de::Error> {
    let mut server = table.clone();
    let mut own = Table::new();
    for name in FILE_SETTINGS {
        if let Some((key, item)) = server.remove_entry(name) {
            own.insert_formatted(&key, item);
        }
    }
    let settings: FileSettings = toml_edit::de::from_document(DocumentMut::from(own))?;
    let server: ServerConfig = toml_edit::de::from_document(DocumentMut::from(server))?;
    Ok(InstanceFile {
        registry: settings.registry,
        admin: settings.admin,
        admin_token: settings.admin_token,
        server,
    })
}
