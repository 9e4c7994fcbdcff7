//! Parsing an endpoint from text: every AX form, with a typed error naming
//! the offending text.

use std::str::FromStr;

use super::*;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

pub(super) fn check_instance(name: &str, text: &dyn Fn() -> String) -> Result<(), EndpointError> {
    if name.is_empty() {
        return Err(EndpointError::EmptyInstance(text()));
    }
    if name.len() > MAX_INSTANCE_LEN {
        return Err(EndpointError::TooLong(text()));
    }
    match name.chars().find(|&c| !is_name_char(c)) {
        Some(ch) => Err(EndpointError::StrayCharacter { text: text(), ch }),
        None => Ok(()),
    }
}

/// Checks a host. `ipv6` says it was written in brackets (or, through
/// [`Endpoint::with_instance`], contains a colon): then it must be a real IPv6
/// address, so that what `Display` brackets always parses back.
pub(super) fn check_host(host: &str, ipv6: bool, text: &dyn Fn() -> String) -> Result<(), EndpointError> {
    if host.is_empty() {
        return Err(EndpointError::EmptyHost(text()));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(EndpointError::TooLong(text()));
    }
    let allowed =
        |c: char| if ipv6 { c.is_ascii_hexdigit() || c == ':' || c == '.' } else { is_name_char(c) };
    if let Some(ch) = host.chars().find(|&c| !allowed(c)) {
        return Err(EndpointError::StrayCharacter { text: text(), ch });
    }
    if ipv6 && host.parse::<Ipv6Addr>().is_err() {
        return Err(EndpointError::BadIpv6(text()));
    }
    Ok(())
}

fn parse_port(port: &str, text: &dyn Fn() -> String) -> Result<u16, EndpointError> {
    let bad = || EndpointError::BadPort { text: text(), port: port.to_owned() };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(bad()),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        let text = || s.to_owned();
        let (instance, rest) = match s.split_once('@') {
            Some((name, rest)) => {
                check_instance(name, &text)?;
                (Some(name), rest)
            }
            None => (None, s),
        };
        if rest.matches('[').count() > 1 || rest.matches(']').count() > 1 {
            return Err(EndpointError::Brackets(text()));
        }
        let (host, port, ipv6) = if let Some(after) = rest.strip_prefix('[') {
            let (host, tail) = after.split_once(']').ok_or_else(|| EndpointError::Brackets(text()))?;
            let port = match tail {
                "" => None,
                t => Some(t.strip_prefix(':').ok_or_else(|| EndpointError::Brackets(text()))?),
            };
            (host, port, true)
        } else if rest.contains(['[', ']']) {
            return Err(EndpointError::Brackets(text()));
        } else {
            match rest.matches(':').count() {
                0 => (rest, None, false),
                1 => {
                    let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
                    (h, Some(p), false)
                }
                _ => return Err(EndpointError::UnbracketedIpv6(text())),
            }
        };
        let port = match port {
            Some(p) => parse_port(p, &text)?,
            None => DEFAULT_PORT,
        };
        if ipv6 && !host.is_empty() && !host.contains(':') {
            // Brackets are for IPv6 addresses only; `[aos1]` is a typo.
            return Err(EndpointError::Brackets(text()));
        }
        check_host(host, ipv6, &text)?;
        Ok(Endpoint::from_checked(instance, host, port))
    }
}
