//! A member key's value: its encoding, and the checks of what is read.

use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use etcd_client::KeyValue;
use serde::{Deserialize, Serialize};

use crate::registry::row::StoredRow;
use crate::registry::{role_text, Incarnation};

/// The value format's version, in its `v` field.
const VALUE_VERSION: u32 = 1;

/// Values longer than this are not parsed (a member's value is about 200
/// bytes): skipped as malformed.
const MAX_VALUE_LEN: usize = 4096;

/// What one key holds, checked as far as this layer can (the rest is
/// [`RowChecker`](crate::registry::row::RowChecker)'s).
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub(super) id: Option<i64>,
    /// Why the key or value cannot be read, if it cannot.
    pub(super) unreadable: Option<String>,
    pub(super) value: Option<Value>,
}

/// A digest of a key's value, to tell whether a heartbeat changes it.
pub(super) fn digest(value: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new` always starts from the same keys, so the same
    // value always has the same digest.
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The value's fields as written.
#[derive(Serialize)]
struct ValueOut<'a> {
    v: u32,
    incarnation: String,
    endpoint: String,
    cluster: Option<&'a str>,
    role: &'static str,
    accepting: bool,
    max_sessions: u32,
    connected: u32,
}

/// The value's fields as read: wide types, checked by
/// [`RowChecker`](crate::registry::row::RowChecker) like a SQL row's columns.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Value {
    v: u32,
    incarnation: String,
    pub(super) endpoint: String,
    cluster: Option<String>,
    role: String,
    accepting: bool,
    max_sessions: i64,
    connected: i64,
}

impl Value {
    fn incarnation(&self) -> Option<Incarnation> {
        (self.incarnation.len() == 16)
            .then(|| u64::from_str_radix(&self.incarnation, 16).ok().map(Incarnation))
            .flatten()
    }
}

pub(super) fn encode(heartbeat: &Heartbeat, incarnation: Incarnation) -> Vec<u8> {
    let value = ValueOut {
        v: VALUE_VERSION,
        incarnation: incarnation.to_string(),
        endpoint: heartbeat.endpoint.to_string(),
        cluster: heartbeat.cluster.as_deref(),
        role: role_text(heartbeat.role),
        accepting: heartbeat.accepting,
        max_sessions: heartbeat.workload.max_sessions,
        connected: heartbeat.workload.connected,
    };
    // Serializing strings, numbers and booleans into memory cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A key and value from etcd, checked: the id from the key, the fields from
/// the value.
fn parse(members: &str, key: &[u8], value: &[u8]) -> Parsed {
    let suffix = key.strip_prefix(members.as_bytes()).unwrap_or(key);
    let id = std::str::from_utf8(suffix)
        .ok()
        .filter(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i64>().ok());
    let Some(id) = id else {
        let shown: String = String::from_utf8_lossy(suffix).chars().take(40).collect();
        return Parsed {
            id: None,
            unreadable: Some(format!("key `{shown}` names no instance id")),
            value: None,
        };
    };
    let unreadable = |reason: String| Parsed { id: Some(id), unreadable: Some(reason), value: None };
    if value.len() > MAX_VALUE_LEN {
        return unreadable(format!("value of {} bytes (at most {MAX_VALUE_LEN})", value.len()));
    }
    let value: Value = match serde_json::from_slice(value) {
        Ok(value) => value,
        Err(e) => return unreadable(format!("value is not a member record: {e}")),
    };
    if value.v != VALUE_VERSION {
        return unreadable(format!("value version {} (this build reads {VALUE_VERSION})", value.v));
    }
    if value.incarnation().is_none() {
        return unreadable(format!("incarnation `{}` is not 16 hex digits", value.incarnation));
    }
    Parsed { id: Some(id), unreadable: None, value: Some(value) }
}

/// A key as etcd holds it, checked: [`parse`], and a lease, without which
/// the key would never expire (written by hand).
pub(super) fn check(members: &str, found: &KeyValue) -> Parsed {
    let parsed = parse(members, found.key(), found.value());
    if parsed.unreadable.is_none() && found.lease() == 0 {
        return Parsed {
            id: parsed.id,
            unreadable: Some("the key has no lease: it would never expire".to_owned()),
            value: None,
        };
    }
    parsed
}

impl Parsed {
    pub(super) fn incarnation(&self) -> Option<Incarnation> {
        self.value.as_ref().and_then(Value::incarnation)
    }

    pub(super) fn cluster(&self) -> Option<Option<&str>> {
        self.value.as_ref().map(|value| value.cluster.as_deref())
    }

    pub(super) fn stored_row(&self, age: Duration) -> StoredRow {
        let mut row = StoredRow::empty();
        row.id = self.id;
        row.unreadable.clone_from(&self.unreadable);
        if let Some(value) = &self.value {
            row.endpoint.clone_from(&value.endpoint);
            row.role.clone_from(&value.role);
            row.accepting = value.accepting;
            row.max_sessions = value.max_sessions;
            row.connected = value.connected;
        }
        row.age_micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        row
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use aos_cluster::{Endpoint, InstanceId};

    use super::*;

    #[test]
    fn values_round_trip_and_bad_ones_say_why() {
        use aos_cluster::{Role, Workload};
        let members = "p/members_v1/";
        let heartbeat = Heartbeat {
            id: InstanceId(42),
            endpoint: Endpoint::from_str("AOS42@h:2712").unwrap(),
            cluster: Some("c".to_owned()),
            role: Role::LoadBalancerOnly,
            accepting: false,
            workload: Workload::new(3, u32::MAX),
        };
        let value = encode(&heartbeat, Incarnation(u64::MAX - 6));
        let parsed = parse(members, b"p/members_v1/0000000042", &value);
        assert_eq!(parsed.id, Some(42));
        assert_eq!(parsed.unreadable, None);
        assert_eq!(parsed.incarnation(), Some(Incarnation(u64::MAX - 6)));
        assert_eq!(parsed.cluster(), Some(Some("c")));
        let row = parsed.stored_row(Duration::from_millis(1500));
        assert_eq!(
            (row.endpoint.as_str(), row.role.as_str(), row.accepting, row.max_sessions, row.connected),
            ("AOS42@h:2712", "load_balancer_only", false, i64::from(u32::MAX), 3)
        );
        assert_eq!(row.age_micros, 1_500_000);

        let reason = |key: &[u8], value: &[u8]| parse(members, key, value).unreadable.unwrap_or_default();
        assert!(reason(b"p/members_v1/42", &value).contains("names no instance id"));
        assert!(reason(b"p/members_v1/00000000x2", &value).contains("names no instance id"));
        assert!(reason(b"p/members_v1/0000000042", b"not json").contains("not a member record"));
        let wrong_type =
            String::from_utf8(value.clone()).unwrap().replace("\"accepting\":false", "\"accepting\":\"no\"");
        assert!(reason(b"p/members_v1/0000000042", wrong_type.as_bytes()).contains("not a member record"));
        let newer = String::from_utf8(value.clone()).unwrap().replace("\"v\":1", "\"v\":2");
        assert!(reason(b"p/members_v1/0000000042", newer.as_bytes()).contains("version 2"));
        let short = String::from_utf8(value).unwrap().replace("fffffffffffffff9", "f9");
        assert!(reason(b"p/members_v1/0000000042", short.as_bytes()).contains("16 hex digits"));
        assert!(reason(b"p/members_v1/0000000042", &vec![b' '; MAX_VALUE_LEN + 1]).contains("at most"));
    }
}
