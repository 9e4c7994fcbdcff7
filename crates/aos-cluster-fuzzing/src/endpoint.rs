//! Fuzz body for the `endpoint` target: [`Endpoint`](aos_cluster::Endpoint) parsing.

use aos_cluster::endpoint::Endpoint;

/// Any text must parse or fail without panicking; a parsed endpoint must
/// display as text that parses back to the same endpoint, and that text must
/// be a fixed point of display (parse, display, parse, display is stable).
/// Bytes that are not UTF-8 are read lossily, so every input exercises the
/// parser.
pub fn endpoint(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = text.parse::<Endpoint>() else { return };
    let shown = parsed.to_string();
    let again: Endpoint =
        shown.parse().unwrap_or_else(|e| panic!("{text:?} parsed, but its display {shown:?} did not: {e}"));
    assert_eq!(again, parsed, "{text:?} -> {shown:?} parsed to a different endpoint");
    assert_eq!(again.to_string(), shown, "display is not a fixed point for {text:?}");
    let rebuilt = Endpoint::with_instance(parsed.instance(), parsed.host(), parsed.port())
        .unwrap_or_else(|e| panic!("parts of {shown:?} are not accepted by with_instance: {e}"));
    assert_eq!(rebuilt, parsed, "with_instance disagrees with parse for {text:?}");
}
