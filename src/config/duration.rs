//! Human durations: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, `"100us"`,
//! and compounds such as `"1m30s"` or `"1h2m3.5s"`;
//! written back in the largest unit that keeps the value exact.

use std::time::Duration;

/// Parses a human duration: one or more number-and-unit parts, summed
/// (`"250ms"`, `"1.5s"`, `"1m30s"`, `"1h 2m 3.5s"`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("`{text}`: expected a number and a unit (ns, us, ms, s, m, h)"));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        // A part runs to the first digit after its unit.
        let unit_start = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let end = rest[unit_start..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| unit_start + i);
        let nanos = part(text, &rest[..end])?;
        total = total.checked_add(nanos).ok_or_else(|| format!("`{text}`: too large"))?;
        rest = rest[end..].trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("`{text}`: too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// One number-and-unit part, in nanoseconds; `text` is the whole, for errors.
fn part(text: &str, t: &str) -> Result<u128, String> {
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let nanos_per: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "`{text}`: expected a number and a unit (ns, us, ms, s, m, h), or several such as 1m30s"
            ))
        }
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
        return Err(format!("`{text}`: not a number"));
    }
    let whole: u128 =
        if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("`{text}`: not a number"))? };
    let frac_nanos: u128 = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().map_err(|_| format!("`{text}`: not a number"))?;
        let scaled = digits * nanos_per;
        let scale = 10u128.pow(frac.len() as u32);
        if scaled % scale != 0 {
            return Err(format!("`{text}`: finer than a nanosecond"));
        }
        scaled / scale
    };
    whole
        .checked_mul(nanos_per)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(|| format!("`{text}`: too large"))
}

/// Formats a duration in the largest exact unit.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos != 0 && nanos % per == 0 {
            return format!("{}{unit}", nanos / per);
        }
    }
    if nanos == 0 {
        return "0s".to_owned();
    }
    format!("{nanos}ns")
}

/// serde: serialize as a human string.
#[cfg(feature = "serde")]
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// serde: deserialize from a human string.
#[cfg(feature = "serde")]
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}
