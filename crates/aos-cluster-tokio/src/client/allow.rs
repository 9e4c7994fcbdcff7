use std::fmt;
use std::net::IpAddr;

use aos_cluster::Endpoint;

/// Where a client lets a ranked list send it: host-name suffixes and IP
/// networks (CIDR). Applied to ranked entries, with or without TLS: an entry
/// outside it is skipped (a failed attempt, `... is outside the allow-list`)
/// and logged. The configured seeds are trusted by configuration and never
/// checked (in direct mode the session goes to a seed).
///
/// A host name is matched against the suffixes only (it is not resolved
/// first: resolving would let DNS decide); an IP-address host against the
/// networks only. A suffix matches on label boundaries and case-insensitively:
/// `example.com` and `.example.com` both allow `example.com` and
/// `aos1.example.com`, not `badexample.com`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    suffixes: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

/// An allow-list entry that is neither a host suffix nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allow-list entry {entry:?}: {reason}")]
pub struct AllowListError {
    entry: String,
    reason: String,
}

impl AllowList {
    /// An empty list (allows no ranked entry).
    pub fn new() -> Self {
        AllowList::default()
    }

    /// A list from entries such as `".example.com"`, `"10.1.0.0/16"`,
    /// `"127.0.0.1"` (one address) or `"fd00::/8"`: an entry with a `/` or
    /// that parses as an IP address is a network, anything else a suffix.
    pub fn parse<I, S>(entries: I) -> Result<Self, AllowListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowList::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.contains('/') || entry.parse::<IpAddr>().is_ok() {
                list = list.network(entry)?;
            } else {
                list = list.host_suffix(entry)?;
            }
        }
        Ok(list)
    }

    /// Allows `suffix` and every name under it.
    pub fn host_suffix(mut self, suffix: &str) -> Result<Self, AllowListError> {
        let bare = suffix.trim().trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        if bare.is_empty() || bare.contains(['/', ':', ' ']) {
            return Err(AllowListError { entry: suffix.into(), reason: "not a host name suffix".into() });
        }
        self.suffixes.push(bare);
        Ok(self)
    }

    /// Allows the addresses of a network, `addr/prefix` (or one address).
    pub fn network(mut self, cidr: &str) -> Result<Self, AllowListError> {
        let error = |reason: &str| AllowListError { entry: cidr.into(), reason: reason.into() };
        let (addr, prefix) = match cidr.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (cidr.trim(), None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| error("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| error("bad prefix length"))?
            }
        };
        self.networks.push((addr, prefix));
        Ok(self)
    }

    /// Whether `endpoint`'s host is allowed.
    pub fn allows(&self, endpoint: &Endpoint) -> bool {
        let host = endpoint.host();
        match host.parse::<IpAddr>() {
            Ok(ip) => self.networks.iter().any(|(net, prefix)| in_network(ip, *net, *prefix)),
            Err(_) => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                self.suffixes.iter().any(|suffix| {
                    host == *suffix
                        || host.strip_suffix(suffix.as_str()).is_some_and(|rest| rest.ends_with('.'))
                })
            }
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for suffix in &self.suffixes {
            write!(f, "{}.{suffix}", if first { "" } else { ", " })?;
            first = false;
        }
        for (net, prefix) in &self.networks {
            write!(f, "{}{net}/{prefix}", if first { "" } else { ", " })?;
            first = false;
        }
        if first {
            f.write_str("(empty)")?;
        }
        Ok(())
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (ip, net, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(v4) => return in_network(IpAddr::V4(v4), net, prefix),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let host_bits = bits - u32::from(prefix);
    let mask = if host_bits >= 128 { 0 } else { !0u128 << host_bits };
    (ip & mask) == (net & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str) -> Endpoint {
        Endpoint::new(host, 2712).unwrap()
    }

    #[test]
    fn suffixes_match_on_label_boundaries_and_ignore_case() {
        let list = AllowList::parse([".example.com"]).unwrap();
        assert!(list.allows(&ep("example.com")));
        assert!(list.allows(&ep("AOS1.Example.com")));
        assert!(!list.allows(&ep("badexample.com")));
        assert!(!list.allows(&ep("example.com.evil.net")));
        assert!(!list.allows(&ep("10.0.0.1")), "an address is checked against networks only");
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let list = AllowList::parse(["10.1.0.0/16", "127.0.0.1", "fd00::/8"]).unwrap();
        assert!(list.allows(&ep("10.1.200.3")));
        assert!(!list.allows(&ep("10.2.0.1")));
        assert!(list.allows(&ep("127.0.0.1")));
        assert!(!list.allows(&ep("127.0.0.2")));
        assert!(list.allows(&ep("fd12::1")));
        assert!(!list.allows(&ep("fe80::1")));
        assert!(list.allows(&ep("::ffff:10.1.0.9")));
        assert!(!list.allows(&ep("localhost")));
        let all = AllowList::parse(["0.0.0.0/0"]).unwrap();
        assert!(all.allows(&ep("192.0.2.1")));
    }

    #[test]
    fn bad_entries_are_errors() {
        assert!(AllowList::parse(["10.0.0.0/33"]).is_err());
        assert!(AllowList::parse(["nonsense/8"]).is_err());
        assert!(AllowList::parse(["."]).is_err());
    }
}
