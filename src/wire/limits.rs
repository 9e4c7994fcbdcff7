//! The bounds both ends of a stream enforce, their defaults, and how much of a
//! ranked list fits under them.

use super::layout::{endpoint_text_len, ENTRY_FIXED_LEN, RANKED_REPLY_FIXED_LEN};
use super::message::RankedEntry;

/// Default [`Limits::max_frame_len`]: 64 KiB of payload. The one default for
/// encoders, decoders and the machines' configurations.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;

/// Default [`Limits::max_list_len`] (SPEC.md phase 2, item 7). The one
/// default: [`crate::config`] re-exports it for `ClientConfig` and
/// `InstanceConfig`.
pub const DEFAULT_MAX_LIST_LEN: usize = 1024;

/// The bounds both sides enforce. Encoder and decoder should use the same
/// values; [`Limits::default`] is what [`encode`](super::encode) and
/// [`Decoder::new`](super::Decoder::new) use.
/// Build others with `Limits::default().with_max_frame_len(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload accepted, in bytes (the header is not counted).
    /// Values above `u32::MAX` act as `u32::MAX`, the most the length field holds.
    pub max_frame_len: usize,
    /// Most entries in a ranked list.
    pub max_list_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_len: DEFAULT_MAX_FRAME_LEN, max_list_len: DEFAULT_MAX_LIST_LEN }
    }
}

impl Limits {
    /// These limits with `max_frame_len` replaced.
    pub const fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.max_frame_len = max_frame_len;
        self
    }

    /// These limits with `max_list_len` replaced.
    pub const fn with_max_list_len(mut self, max_list_len: usize) -> Self {
        self.max_list_len = max_list_len;
        self
    }

    /// The payload bound actually enforced: the length field holds a `u32`.
    pub(crate) fn frame_cap(&self) -> usize {
        self.max_frame_len.min(u32::MAX as usize)
    }
}

/// How many entries from the front of `entries` a ranked `HandshakeReply` can
/// carry under `limits`: at most `max_list_len`, and with the reply's fixed
/// fields, a payload of at most `max_frame_len` bytes (the 6-byte frame
/// header is never counted against the limit). The bound is exact: the
/// reply with this many entries encodes under `limits`, one more would not
/// (if the list has more). A `max_frame_len` below 14 bytes holds not even
/// the empty reply; the answer is then 0.
///
/// An instance cuts every ranked list to this before replying (SPEC.md
/// phase 2, item 7), so a long list of long host names still reaches the
/// client. Linear in the answer, no allocation. Duplicates are not looked
/// for: a list worth sending has none.
pub fn entries_that_fit(entries: &[RankedEntry], limits: &Limits) -> usize {
    let cap = limits.frame_cap();
    let mut used = RANKED_REPLY_FIXED_LEN;
    if used > cap {
        return 0;
    }
    let most = entries.len().min(limits.max_list_len);
    for (count, entry) in entries[..most].iter().enumerate() {
        used += ENTRY_FIXED_LEN + endpoint_text_len(&entry.endpoint);
        if used > cap {
            return count;
        }
    }
    most
}
