//! One run over a file finding every problem in it, each with its line, and
//! the suggestion for a misspelt setting.

use std::collections::BTreeSet;

use toml_edit::{DocumentMut, ImDocument};

use super::settings::{deserialize, FILE_SETTINGS};
use super::spans::{find_path, find_table, get, line_of, remove, set};
use super::{FileProblem, InstanceFile};

/// At most this many problems are reported (each round of [`Check::read`]
/// finds one): a file of garbage gets a bounded answer.
pub(super) const MAX_PROBLEMS: usize = 100;

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
pub(super) struct Check<'a> {
    pub(super) text: &'a str,
    /// The file as written, with every key's and value's span.
    pub(super) doc: &'a ImDocument<&'a str>,
    pub(super) problems: Vec<FileProblem>,
    /// Dotted settings a placeholder stands in for.
    pub(super) replaced: Vec<String>,
}

impl Check<'_> {
    /// The file with every problem set aside; `None` when one could not be.
    pub(super) fn read(&mut self) -> Option<InstanceFile> {
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
