//! Cutting a ranked list to what fits one frame under both limits.

use aos_cluster::wire::*;
use proptest::prelude::*;

use crate::strategies::*;
use crate::support::*;

#[test]
fn a_thousand_maximal_entries_are_cut_to_exactly_what_fits_one_default_frame() {
    let entries = (0..1024).map(|i| entry(i as u32, long_endpoint(i))).collect::<Vec<_>>();
    assert_eq!(entries[0].endpoint.host().len(), aos_cluster::endpoint::MAX_HOST_LEN);
    let limits = Limits::default();
    let fit = entries_that_fit(&entries, &limits);
    // 14 fixed bytes, then 14 + 324 per entry: 193 entries in 65 536 bytes.
    assert_eq!(fit, (DEFAULT_MAX_FRAME_LEN - 14) / (14 + 324));
    assert_eq!(fit, 193);
    assert!(ranked_payload_len(&entries[..fit]) <= DEFAULT_MAX_FRAME_LEN);
    assert!(ranked_payload_len(&entries[..fit + 1]) > DEFAULT_MAX_FRAME_LEN, "the bound is exact");

    // The cut list encodes and decodes with the default limits on both sides.
    let cut = reply_with(entries[..fit].to_vec());
    let frame = frame_of(&cut);
    assert_eq!(decode_one(&frame), Ok(cut));
    // One more entry does not fit.
    let over = reply_with(entries[..fit + 1].to_vec());
    let len = ranked_payload_len(&entries[..fit + 1]);
    assert_eq!(
        encode(&over, &mut Vec::new()),
        Err(EncodeError::FrameTooLarge { len, max: DEFAULT_MAX_FRAME_LEN })
    );
}

#[test]
fn entries_that_fit_honours_both_limits_and_the_empty_reply() {
    let short = (0..50).map(|i| entry(i, format!("a{i}:1").parse().unwrap())).collect::<Vec<_>>();
    assert_eq!(entries_that_fit(&short, &Limits::default()), 50, "a short list is whole");
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_list_len(7)), 7);
    assert_eq!(entries_that_fit(&[], &Limits::default()), 0);
    // Exactly the first entry's bytes, then one byte less.
    let first = ranked_payload_len(&short[..1]);
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(first)), 1);
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(first - 1)), 0);
    // Below the reply's own 14 bytes nothing fits, not even an empty list.
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(13)), 0);
    let limits = Limits::default().with_max_frame_len(13);
    assert_eq!(
        encode_with_limits(&reply_with(Vec::new()), &limits, &mut Vec::new()),
        Err(EncodeError::FrameTooLarge { len: 14, max: 13 })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Under any frame and list limit, the cut encodes and one entry more does not.
    #[test]
    fn entries_that_fit_is_the_exact_bound(
        list in ranked_list(40),
        max_frame_len in 0usize..4000,
        max_list_len in 0usize..50,
    ) {
        let limits = Limits::default().with_max_frame_len(max_frame_len).with_max_list_len(max_list_len);
        let fit = entries_that_fit(&list.entries, &limits);
        let msg = |n: usize| reply_with(list.entries[..n].to_vec());
        if max_frame_len >= 14 {
            let mut out = Vec::new();
            prop_assert_eq!(encode_with_limits(&msg(fit), &limits, &mut out), Ok(()));
            prop_assert_eq!(decode_split(&out, &[], limits), vec![Ok(msg(fit))]);
        } else {
            prop_assert_eq!(fit, 0);
        }
        if fit < list.entries.len() {
            let refused = encode_with_limits(&msg(fit + 1), &limits, &mut Vec::new());
            prop_assert!(
                matches!(refused, Err(EncodeError::FrameTooLarge { .. } | EncodeError::ListTooLong { .. })),
                "{:?}", refused
            );
        }
    }
}
