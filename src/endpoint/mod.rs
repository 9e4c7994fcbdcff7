//! Instance endpoints in every form the AX client configuration uses.
//!
//! | form                  | example                 |
//! | --------------------- | ----------------------- |
//! | `host`                | `aos1`                  |
//! | `host:port`           | `aos1.contoso.com:2713` |
//! | `instance@host`       | `AOS01@aos1`            |
//! | `instance@host:port`  | `AOS01@aos1:2713`       |
//! | IPv6, bracketed       | `[::1]:2712`, `[fe80::1]` |
//!
//! A missing port means [`DEFAULT_PORT`] (2712, the AX default TCP/IP port).
//! White space around the whole text is ignored (configuration files carry
//! it); inside, names hold ASCII letters, digits, `-`, `.` and `_` only, and a
//! bracketed host must be an IPv6 address. Names are never resolved.
//! [`Endpoint`]'s `Display` always writes the port, so `parse(display(e)) == e`.

use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;

mod parse;

use self::parse::{check_host, check_instance};

/// The AX default TCP/IP port of an AOS instance.
pub const DEFAULT_PORT: u16 = 2712;

/// Longest host name accepted (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest instance name accepted.
pub const MAX_INSTANCE_LEN: usize = 64;

/// Where an instance listens: an optional instance name, a host and a port.
///
/// `==`, ordering and hashing compare the parts as written: `aos1:2712` and
/// `AOS1:2712` are different endpoints, since the crate never resolves names.
/// Whether two endpoints reach the same *target* (SPEC.md phase 1, item 5:
/// host case-insensitive, port equal, instance name a label) is
/// [`Endpoint::same_target`].
///
/// Endpoints are immutable and shared: a clone is a reference-count increment,
/// never an allocation, since the machines copy them into every attempt,
/// ranked entry and action. Equality, ordering (by instance, then host, then
/// port) and hashing are those of the three parts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct Endpoint(Arc<Parts>);

/// Field order is the comparison order.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    instance: Option<Box<str>>,
    host: Box<str>,
    port: u16,
}

/// Why a text is not an endpoint. Every variant names the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Nothing (or only white space) was given.
    #[error("empty endpoint")]
    Empty,
    /// The host part is missing, as in `:2712` or `AOS01@`.
    #[error("endpoint `{0}` has an empty host")]
    EmptyHost(String),
    /// The instance part before `@` is empty, as in `@aos1`.
    #[error("endpoint `{0}` has an empty instance name before `@`")]
    EmptyInstance(String),
    /// The port is not a number from 1 to 65535.
    #[error("endpoint `{text}` has an invalid port `{port}` (expected 1-65535)")]
    BadPort {
        /// The whole endpoint text.
        text: String,
        /// The port text.
        port: String,
    },
    /// A character that no part of an endpoint may hold.
    #[error("endpoint `{text}` has a stray character {ch:?}")]
    StrayCharacter {
        /// The whole endpoint text.
        text: String,
        /// The first offending character.
        ch: char,
    },
    /// `[` without `]`, `]` without `[`, or text between `]` and `:`.
    #[error("endpoint `{0}` has unbalanced or misplaced brackets")]
    Brackets(String),
    /// A bare IPv6 address: it needs brackets to tell host from port.
    #[error("endpoint `{0}` looks like an IPv6 address without brackets; write `[addr]:port`")]
    UnbracketedIpv6(String),
    /// A bracketed host that is not an IPv6 address, as in `[1:2:3]`.
    #[error("endpoint `{0}` has an invalid IPv6 address")]
    BadIpv6(String),
    /// The host or instance name is longer than the limits allow.
    #[error("endpoint `{0}` is too long")]
    TooLong(String),
}

impl Endpoint {
    /// An endpoint from a host and a port, checked like a parsed one.
    pub fn new(host: &str, port: u16) -> Result<Self, EndpointError> {
        Self::with_instance(None, host, port)
    }

    /// An endpoint with an instance name, checked like a parsed one.
    pub fn with_instance(instance: Option<&str>, host: &str, port: u16) -> Result<Self, EndpointError> {
        let text = || match instance {
            Some(i) => format!("{i}@{host}:{port}"),
            None => format!("{host}:{port}"),
        };
        if port == 0 {
            return Err(EndpointError::BadPort { text: text(), port: "0".into() });
        }
        if let Some(name) = instance {
            check_instance(name, &text)?;
        }
        // A bracketed host and a bare IPv6 address are both accepted here: the
        // brackets are syntax, not part of the address.
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        check_host(host, host.contains(':'), &text)?;
        Ok(Endpoint::from_checked(instance, host, port))
    }

    /// Builds from parts already checked.
    fn from_checked(instance: Option<&str>, host: &str, port: u16) -> Self {
        Endpoint(Arc::new(Parts { instance: instance.map(Box::from), host: Box::from(host), port }))
    }

    /// The AOS instance name, if the configuration gave one (`AOS01@host`).
    pub fn instance(&self) -> Option<&str> {
        self.0.instance.as_deref()
    }

    /// The host: a name, an IPv4 address or an IPv6 address (without brackets).
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Whether `self` and `other` are the same target (SPEC.md phase 1, item
    /// 5): equal ports and equal hosts, names compared ASCII
    /// case-insensitively and IPv6 hosts as addresses (`[::1]` and
    /// `[0:0::1]` are one host). The `instance@` name is a label and plays
    /// no part: `AOS01@aos1:2712`, `aos1` and `AOS1:2712` are one target.
    ///
    /// This is the equality seed lists and ranked lists are deduplicated
    /// with. `==` and `Hash` stay structural (every part, as written).
    pub fn same_target(&self, other: &Endpoint) -> bool {
        self.port() == other.port() && self.target_host() == other.target_host()
    }

    /// A total order whose equal elements are exactly the [`same_target`](Self::same_target)
    /// pairs: by host (names before IPv6 addresses, names by their ASCII
    /// lowercase bytes, addresses by value), then port.
    pub(crate) fn cmp_target(&self, other: &Endpoint) -> Ordering {
        let by_host = match (self.target_host(), other.target_host()) {
            (TargetHost::Name(a), TargetHost::Name(b)) => {
                a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
            }
            (TargetHost::Name(_), TargetHost::V6(_)) => Ordering::Less,
            (TargetHost::V6(_), TargetHost::Name(_)) => Ordering::Greater,
            (TargetHost::V6(a), TargetHost::V6(b)) => a.cmp(&b),
        };
        by_host.then(self.port().cmp(&other.port()))
    }

    /// A 64-bit fingerprint of the target: endpoints that are the
    /// [`same_target`](Self::same_target) have equal fingerprints, so long
    /// lists are deduplicated by sorting integers; equal fingerprints are
    /// then settled by [`cmp_target`](Self::cmp_target), so the mix only
    /// needs to spread, not to resist collisions.
    ///
    /// Names are folded eight bytes at a time with `| 0x20`: that lowercases
    /// ASCII letters and keeps every other name character (`0-9 . -` have
    /// the bit; `_` becomes the DEL byte, which no name holds), so names equal
    /// ignoring case fold to equal words.
    pub(crate) fn target_fingerprint(&self) -> u64 {
        const FOLD: u64 = 0x2020_2020_2020_2020;
        // The multiplier of FxHash (rustc's hasher): odd, bits well spread.
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
        let port = u64::from(self.port());
        match self.target_host() {
            TargetHost::Name(name) => {
                let mut chunks = name.as_bytes().chunks_exact(8);
                let mut hash = mix(0, port);
                for chunk in &mut chunks {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    hash = mix(hash, u64::from_le_bytes(word) | FOLD);
                }
                let mut tail = [0u8; 8];
                tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
                // The length keeps `ab` apart from `ab` followed by folded zero bytes.
                mix(mix(hash, u64::from_le_bytes(tail) | FOLD), name.len() as u64)
            }
            TargetHost::V6(addr) => {
                let bits = u128::from(addr);
                // The top bit of the seed keeps an address apart from a name.
                mix(mix(mix(1 << 63, port), (bits >> 64) as u64), bits as u64)
            }
        }
    }

    /// Whether the host is an IPv6 address (written bracketed). A checked
    /// name never holds `:`, and an IPv6 address always has one within its
    /// first five characters (a group has at most four digits, or the text
    /// starts with `::`), so five bytes decide; the encoder asks this of
    /// every entry.
    pub(crate) fn has_ipv6_host(&self) -> bool {
        self.host().as_bytes().iter().take(5).any(|&b| b == b':')
    }

    /// The host as a target compares it. An IPv6 host is a checked address
    /// (see `check_host`), so the parse succeeds; were it ever to fail, the
    /// text would still compare consistently as a name.
    fn target_host(&self) -> TargetHost<'_> {
        let host = self.host();
        if self.has_ipv6_host() {
            if let Ok(addr) = host.parse::<Ipv6Addr>() {
                return TargetHost::V6(addr);
            }
        }
        TargetHost::Name(host)
    }

    /// `host:port` as a socket address string (IPv6 bracketed), ready for
    /// `ToSocketAddrs`; the instance name is not part of it.
    pub fn socket_addr_string(&self) -> String {
        SocketAddrText(self).to_string()
    }
}

/// A host as targets compare it.
enum TargetHost<'a> {
    /// A name or IPv4 address, compared ASCII case-insensitively.
    Name(&'a str),
    /// An IPv6 address, compared by value.
    V6(Ipv6Addr),
}

impl PartialEq for TargetHost<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TargetHost::Name(a), TargetHost::Name(b)) => a.eq_ignore_ascii_case(b),
            (TargetHost::V6(a), TargetHost::V6(b)) => a == b,
            _ => false,
        }
    }
}

/// Writes `host:port`, bracketing an IPv6 host.
struct SocketAddrText<'a>(&'a Endpoint);

impl fmt::Display for SocketAddrText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = (self.0.host(), self.0.port());
        if host.contains(':') {
            write!(f, "[{host}]:{port}")
        } else {
            write!(f, "{host}:{port}")
        }
    }
}

impl fmt::Debug for Endpoint {
    // The shape a derive on the three parts would print, as before sharing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("instance", &self.instance())
            .field("host", &self.host())
            .field("port", &self.port())
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.instance() {
            write!(f, "{name}@")?;
        }
        SocketAddrText(self).fmt(f)
    }
}

impl TryFrom<String> for Endpoint {
    type Error = EndpointError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Endpoint {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        // Only valid endpoints exist as values; build one from a small alphabet.
        const HOSTS: [&str; 6] = ["aos1", "aos2", "aos3", "10.0.0.7", "::1", "db.example"];
        const NAMES: [&str; 3] = ["AOS01", "AOS02", "a-b_c.d"];
        let host = *u.choose(&HOSTS)?;
        let instance = if u.arbitrary()? { Some(*u.choose(&NAMES)?) } else { None };
        let port = u.int_in_range(1..=u16::MAX)?;
        Endpoint::with_instance(instance, host, port).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

#[cfg(test)]
mod tests;
