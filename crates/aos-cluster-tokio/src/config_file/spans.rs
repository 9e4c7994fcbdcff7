//! Where a setting is written: lines of keys and tables, found from the
//! parser's spans or the text, and the edits that set a setting aside.

use std::ops::Range;

use toml_edit::{Item, Table, TableLike};

/// The 1-based line of a dotted field (`instance.max_sessions`,
/// `instance.limits.max_members`, `listen`): the line of its key in its table,
/// or the table's header if the key is not written (a default).
pub(super) fn locate(text: &str, field: &str) -> Option<usize> {
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
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start == offset || s.contains(&offset))
}

/// The dotted path of the deepest key whose key or value holds `offset`.
pub(super) fn find_path(table: &dyn TableLike, offset: usize) -> Option<Vec<String>> {
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
pub(super) fn find_table(table: &dyn TableLike, span: &Range<usize>) -> Option<Vec<String>> {
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

pub(super) fn get<'t>(table: &'t Table, path: &[String]) -> Option<&'t Item> {
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
pub(super) fn remove(table: &mut Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    parent_mut(table, parents).and_then(|parent| parent.remove(last)).is_some()
}

/// Writes `item` at `path` (its table must exist); whether it could.
pub(super) fn set(table: &mut Table, path: &[String], item: Item) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    match parent_mut(table, parents) {
        Some(parent) => {
            parent.insert(last, item);
            true
        }
        None => false,
    }
}
