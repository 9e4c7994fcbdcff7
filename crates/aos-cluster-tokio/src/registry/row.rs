//! Stored rows and their checks: every backend's rows pass through
//! [`RowChecker`] before they become members.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::registry::MemberRecord;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};

/// How a role is stored: the same snake_case names as its serde form.
pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Serving => "serving",
        Role::LoadBalancerOnly => "load_balancer_only",
        Role::Standalone => "standalone",
        // A role newer than this crate: stored under a name no reader parses,
        // so the row is skipped rather than misread.
        _ => "unknown",
    }
}

/// The role stored as `text`, if it is one.
pub fn parse_role(text: &str) -> Option<Role> {
    [Role::Serving, Role::LoadBalancerOnly, Role::Standalone]
        .into_iter()
        .find(|&role| role_text(role) == text)
}

/// A duration as whole milliseconds for SQL arithmetic, capped far below
/// overflow (a century), so `now - ttl` stays a valid number.
#[allow(dead_code)] // not every backend combination uses it
pub(crate) fn sql_millis(duration: Duration) -> i64 {
    const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
    i64::try_from(duration.as_millis().min(CENTURY_MS)).unwrap_or(i64::MAX)
}

/// A row as stored, before it is checked.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    /// `None` when even the id could not be read.
    pub(crate) id: Option<i64>,
    /// The first column that could not be read as its type (a table altered
    /// by hand, or SQLite's dynamic types): the row is skipped.
    pub(crate) unreadable: Option<String>,
    pub(crate) endpoint: String,
    pub(crate) role: String,
    pub(crate) accepting: bool,
    pub(crate) max_sessions: i64,
    pub(crate) connected: i64,
    /// Heartbeat age by the database's clock, in microseconds (negative:
    /// from the future).
    pub(crate) age_micros: i64,
}

impl StoredRow {
    /// A row none of whose columns could be read yet: filled by
    /// [`StoredRow::read`], column by column.
    #[allow(dead_code)] // not every backend combination uses it
    pub(crate) fn empty() -> StoredRow {
        StoredRow {
            id: None,
            unreadable: None,
            endpoint: String::new(),
            role: String::new(),
            accepting: false,
            max_sessions: 0,
            connected: 0,
            age_micros: 0,
        }
    }

    /// Stores a column read, or notes the first one that failed.
    #[allow(dead_code)] // not every backend combination uses it
    pub(crate) fn read<T, E: std::fmt::Display>(&mut self, column: &str, value: Result<T, E>) -> Option<T> {
        match value {
            Ok(value) => Some(value),
            Err(e) => {
                if self.unreadable.is_none() {
                    self.unreadable = Some(format!("column `{column}` cannot be read: {e}"));
                }
                None
            }
        }
    }

    fn into_member(self, member_ttl: Duration) -> Result<MemberRecord, String> {
        if let Some(reason) = self.unreadable {
            return Err(reason);
        }
        let stored_id = self.id.ok_or("no readable id")?;
        let id = u32::try_from(stored_id).map_err(|_| format!("id {stored_id} is not a u32"))?;
        let endpoint = Endpoint::from_str(&self.endpoint)
            .map_err(|e| format!("bad endpoint `{}`: {e}", self.endpoint))?;
        let role = parse_role(&self.role).ok_or_else(|| format!("unknown role `{}`", self.role))?;
        let max_sessions = u32::try_from(self.max_sessions)
            .map_err(|_| format!("max_sessions {} is not a u32", self.max_sessions))?;
        let connected = u32::try_from(self.connected)
            .map_err(|_| format!("connected {} is not a u32", self.connected))?;
        let ahead =
            Duration::from_micros(self.age_micros.checked_neg().map_or(0, |m| u64::try_from(m).unwrap_or(0)));
        if ahead > member_ttl {
            // A clock that stepped back a little reads as age zero; a row
            // this far ahead was written by hand or by a broken clock and
            // would never age out.
            return Err(format!(
                "its heartbeat is {ahead:?} in the future (more than member_ttl {member_ttl:?})"
            ));
        }
        Ok(MemberRecord {
            id: InstanceId(id),
            endpoint,
            role,
            accepting: self.accepting,
            workload: Workload::new(connected, max_sessions),
            heartbeat_age: Duration::from_micros(u64::try_from(self.age_micros).unwrap_or(0)),
        })
    }
}

/// Turns stored rows into members, skipping (counting and logging) those that
/// do not parse. Each skipped row is logged when it first shows up (or its
/// reason changes), not at every snapshot, so a bad row does not flood the
/// log.
#[derive(Debug, Default)]
pub(crate) struct RowChecker {
    last_skipped: Mutex<BTreeSet<(Option<i64>, String)>>,
    skipped: std::sync::atomic::AtomicU64,
}

impl RowChecker {
    #[allow(dead_code)] // not every backend combination uses it
    pub(crate) fn members(
        &self,
        registry: &str,
        rows: impl IntoIterator<Item = StoredRow>,
        member_ttl: Duration,
    ) -> Vec<MemberRecord> {
        let rows = rows.into_iter();
        let mut members = Vec::with_capacity(rows.size_hint().0);
        let mut skipped = BTreeSet::new();
        for row in rows {
            let id = row.id;
            match row.into_member(member_ttl) {
                Ok(member) => members.push(member),
                Err(reason) => {
                    skipped.insert((id, reason));
                }
            }
        }
        self.skipped.fetch_add(skipped.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut last = self.last_skipped.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, reason) in skipped.difference(&last) {
            let shown = id.map_or_else(|| "?".to_owned(), |id| id.to_string());
            tracing::warn!(registry, row_id = %shown, "registry row id {shown} skipped: {reason}");
        }
        *last = skipped;
        members
    }

    /// Rows skipped so far, once per snapshot that skipped them.
    #[allow(dead_code)] // not every backend combination uses it
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }
}
