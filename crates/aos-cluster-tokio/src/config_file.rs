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

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use aos_cluster::{Endpoint, InstanceConfig, InstanceId};
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, ImDocument, Item, Table, TableLike};

use crate::server::ServerConfig;

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
const FILE_SETTINGS: [&str; 3] = ["registry", "admin", "admin_token"];

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

    /// A valid file with placeholders where a setting is required: what
    /// stands in for a setting found wrong, so the rest can still be checked.
    fn template() -> InstanceFile {
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
    fn problems(&self) -> Vec<(Option<String>, String)> {
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

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// At most this many problems are reported (each round of [`Check::read`]
/// finds one): a file of garbage gets a bounded answer.
const MAX_PROBLEMS: usize = 100;

/// What a deserialization error says is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// A key no struct there takes.
    Unknown,
    /// A required key that is not written.
    Missing,
    /// A value of the wrong type or form.
    Invalid,
}

/// One run over a file: deserialize, and on each error report it, set the
/// setting aside (an unknown one removed, a wrong or missing one replaced by
/// a placeholder from [`InstanceFile::template`]) and deserialize again, so
/// every problem is found in one run, each with the line of its key.
struct Check<'a> {
    text: &'a str,
    /// The file as written, with every key's and value's span.
    doc: &'a ImDocument<&'a str>,
    problems: Vec<FileProblem>,
    /// Dotted settings a placeholder stands in for.
    replaced: Vec<String>,
}

impl Check<'_> {
    /// The file with every problem set aside; `None` when one could not be.
    fn read(&mut self) -> Option<InstanceFile> {
        let template = InstanceFile::template().to_toml().parse::<DocumentMut>().ok()?;
        // A clone keeps every span of the original text.
        let mut table = self.doc.as_table().clone();
        let mut seen = BTreeSet::new();
        while self.problems.len() < MAX_PROBLEMS {
            let e = match deserialize(&table) {
                Ok(file) => return Some(file),
                Err(e) => e,
            };
            let message = e.message().trim().to_owned();
            let span = e.span();
            let located =
                span.as_ref().and_then(|s| find_path(self.doc.as_table(), s.start)).unwrap_or_default();
            let mut line = span.as_ref().map(|s| line_of(self.text, s.start));
            let (fault, path) = if let Some(name) = message.strip_prefix("unknown field ").and_then(quoted) {
                (Fault::Unknown, with_last(located, name))
            } else if let Some(name) = message.strip_prefix("missing field ").and_then(quoted) {
                // The span is the table's it is missing from: its header's line.
                let mut path =
                    span.as_ref().and_then(|s| find_table(self.doc.as_table(), s)).unwrap_or_default();
                if path.is_empty() {
                    line = None;
                }
                path.push(name.to_owned());
                (Fault::Missing, path)
            } else {
                (Fault::Invalid, located)
            };
            if path.is_empty() || !seen.insert((fault.clone(), path.clone())) {
                // Nothing to set aside, or it did not help: say what is known and stop.
                self.problems.push(FileProblem { line, message });
                return None;
            }
            let dotted = path.join(".");
            let sentence = match fault {
                Fault::Unknown => {
                    let name = path.last().map(String::as_str).unwrap_or_default();
                    let mut known: Vec<&str> = expected(&message);
                    if path.len() == 1 {
                        known.extend(FILE_SETTINGS);
                    }
                    match closest(name, &known) {
                        Some(near) => format!("{dotted}: unknown setting `{name}` (did you mean `{near}`?)"),
                        None => format!("{dotted}: unknown setting `{name}`"),
                    }
                }
                Fault::Missing => format!("{dotted}: required setting missing"),
                Fault::Invalid if message.contains("invalid socket address syntax") => format!(
                    "{dotted}: invalid socket address syntax: expected IP:PORT such as `127.0.0.1:2712` \
                     (host names are not resolved here)"
                ),
                Fault::Invalid => format!("{dotted}: {message}"),
            };
            self.problems.push(FileProblem { line, message: sentence });
            let set_aside = match fault {
                Fault::Unknown => remove(&mut table, &path),
                Fault::Missing | Fault::Invalid => match get(template.as_table(), &path) {
                    Some(placeholder) => set(&mut table, &path, placeholder.clone()),
                    // No placeholder (an optional setting): its default stands in.
                    None => remove(&mut table, &path),
                },
            };
            if fault != Fault::Unknown {
                self.replaced.push(dotted);
            }
            if !set_aside {
                return None;
            }
        }
        None
    }
}

/// The file's settings and the server's, each from its own keys.
fn deserialize(table: &Table) -> Result<InstanceFile, toml_edit::de::Error> {
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

/// The name in backquotes at the start of `text`.
fn quoted(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

/// `path` ending in `name` (a key found by its span ends in it already).
fn with_last(mut path: Vec<String>, name: &str) -> Vec<String> {
    if path.last().map(String::as_str) != Some(name) {
        path.push(name.to_owned());
    }
    path
}

/// The names serde lists after "expected" in an unknown-field message.
fn expected(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected") else { return Vec::new() };
    list.split('`').skip(1).step_by(2).collect()
}

/// The known name within two edits of `name`, if one is.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start == offset || s.contains(&offset))
}

/// The dotted path of the deepest key whose key or value holds `offset`.
fn find_path(table: &dyn TableLike, offset: usize) -> Option<Vec<String>> {
    for (name, item) in table.iter() {
        // A table's keys may be written anywhere below its header: look inside first.
        if let Some(inner) = item.as_table_like() {
            if let Some(mut path) = find_path(inner, offset) {
                path.insert(0, name.to_owned());
                return Some(path);
            }
        }
        let key_span = table.key(name).and_then(|k| k.span());
        if contains(key_span, offset) || contains(item.span(), offset) {
            return Some(vec![name.to_owned()]);
        }
    }
    None
}

/// The dotted path of the table whose span is `span` (empty: the top level).
fn find_table(table: &dyn TableLike, span: &Range<usize>) -> Option<Vec<String>> {
    for (name, item) in table.iter() {
        if let Some(inner) = item.as_table_like() {
            if item.span().as_ref() == Some(span) {
                return Some(vec![name.to_owned()]);
            }
            if let Some(mut path) = find_table(inner, span) {
                path.insert(0, name.to_owned());
                return Some(path);
            }
        }
    }
    None
}

fn get<'t>(table: &'t Table, path: &[String]) -> Option<&'t Item> {
    let (last, parents) = path.split_last()?;
    let mut current: &dyn TableLike = table;
    for name in parents {
        current = current.get(name)?.as_table_like()?;
    }
    current.get(last)
}

fn parent_mut<'t>(table: &'t mut Table, parents: &[String]) -> Option<&'t mut dyn TableLike> {
    let mut current: &mut dyn TableLike = table;
    for name in parents {
        current = current.get_mut(name)?.as_table_like_mut()?;
    }
    Some(current)
}

/// Removes the setting at `path`; whether it was there.
fn remove(table: &mut Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    parent_mut(table, parents).and_then(|parent| parent.remove(last)).is_some()
}

/// Writes `item` at `path` (its table must exist); whether it could.
fn set(table: &mut Table, path: &[String], item: Item) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    match parent_mut(table, parents) {
        Some(parent) => {
            parent.insert(last, item);
            true
        }
        None => false,
    }
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

    fn problems_of(text: &str) -> Vec<String> {
        let e = InstanceFile::parse(Path::new("i.toml"), text).unwrap_err();
        e.to_string().lines().map(str::to_owned).collect()
    }

    #[test]
    fn an_unknown_setting_anywhere_names_file_line_and_setting() {
        let text = GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nidle_timout = \"5s\"");
        assert_eq!(
            problems_of(&text),
            ["i.toml:3: idle_timout: unknown setting `idle_timout` (did you mean `idle_timeout`?)"]
        );
        let text = format!("admn = \"127.0.0.1:9\"\n{GOOD}");
        assert_eq!(problems_of(&text), ["i.toml:1: admn: unknown setting `admn` (did you mean `admin`?)"]);
        let text = format!("{GOOD}\n[instanse]\nid = 2\n");
        assert_eq!(
            problems_of(&text),
            ["i.toml:10: instanse: unknown setting `instanse` (did you mean `instance`?)"]
        );
        let text = format!("{GOOD}\n[instance.limits]\nmax_memberz = 3\n");
        assert_eq!(
            problems_of(&text),
            ["i.toml:11: instance.limits.max_memberz: unknown setting `max_memberz` (did you mean `max_members`?)"]
        );
        let text = format!("{GOOD}fan_out = {{ live = 4, bogus = 1 }}\n");
        assert_eq!(problems_of(&text), ["i.toml:9: instance.fan_out.bogus: unknown setting `bogus`"]);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_line_and_field() {
        let text = GOOD.replace("max_sessions = 10", "max_sessions = \"100\"");
        assert_eq!(
            problems_of(&text),
            ["i.toml:8: instance.max_sessions: invalid type: string \"100\", expected u32"]
        );
        let text = GOOD.replace("id = 1", "id = \"one\"");
        let shown = problems_of(&text);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("i.toml:5: instance.id: invalid type: string \"one\""), "{shown:?}");
        let text = GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\"");
        let shown = problems_of(&text);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("i.toml:2: listen: invalid socket address syntax"), "{shown:?}");
        let text = GOOD.replace("registry = \"sqlite::memory:\"", "registry = 7");
        let shown = problems_of(&text);
        assert!(shown[0].starts_with("i.toml:1: registry: invalid type: integer `7`"), "{shown:?}");
    }

    #[test]
    fn every_problem_is_reported_in_one_run_by_line() {
        let text = r#"registry = "sqlite::memory:"
admn = "127.0.0.1:9"
listen = "localhost:2712"
idle_timout = "5s"
max_connections = 0

[instance]
id = "one"
endpoint = "127.0.0.1:2712"
cluster = "c"
max_sessions = "100"
member_ttl = "5 parsecs"

[instanse]
id = 2
"#;
        let shown = problems_of(text);
        let starts = [
            "i.toml:2: admn: unknown setting",
            "i.toml:3: listen: invalid socket address syntax",
            "i.toml:4: idle_timout: unknown setting",
            "i.toml:5: `max_connections` must not be zero",
            "i.toml:8: instance.id: invalid type",
            "i.toml:11: instance.max_sessions: invalid type",
            "i.toml:12: instance.member_ttl: `5 parsecs`: expected",
            "i.toml:14: instanse: unknown setting",
        ];
        assert_eq!(shown.len(), starts.len(), "{shown:#?}");
        for (line, start) in shown.iter().zip(starts) {
            assert!(line.starts_with(start), "{line:?} should start with {start:?}\nall: {shown:#?}");
        }
    }

    #[test]
    fn a_missing_required_setting_is_named_and_the_rest_still_checked() {
        let text = GOOD.replace("id = 1\n", "").replace("max_sessions = 10", "max_sessions = 10\nbogus = 1");
        let shown = problems_of(&text);
        assert_eq!(
            shown,
            [
                "i.toml:4: instance.id: required setting missing",
                "i.toml:8: instance.bogus: unknown setting `bogus`"
            ]
        );
        let shown = problems_of(&GOOD.replace("registry = \"sqlite::memory:\"\n", ""));
        assert_eq!(shown, ["i.toml: registry: required setting missing"]);
        let shown = problems_of("registry = \"sqlite::memory:\"\n");
        assert_eq!(
            shown,
            ["i.toml: listen: required setting missing", "i.toml: instance: required setting missing"]
        );
    }

    #[test]
    fn not_toml_at_all_names_its_line() {
        let shown = problems_of("registry = \"sqlite::memory:\"\nlisten = = 3\n");
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("i.toml:2: not valid TOML"), "{shown:?}");
        let garbage: String = (0..500).map(|i| format!("key{i} = {i}\n")).collect();
        let shown = problems_of(&format!("{GOOD}{garbage}"));
        assert_eq!(shown.len(), MAX_PROBLEMS, "bounded");
    }

    #[test]
    fn an_admin_endpoint_off_loopback_with_a_token_is_valid_with_a_warning() {
        let text = format!("admin = \"0.0.0.0:9711\"\nadmin_token = \"env:T\"\n{GOOD}");
        let file = InstanceFile::parse(Path::new("i.toml"), &text).unwrap();
        let warnings = file.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("not on loopback"), "{warnings:?}");
        assert!(InstanceFile::parse(Path::new("i.toml"), GOOD).unwrap().warnings().is_empty());
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
