//! Duplicate entries in a ranked list, compared as targets.

use aos_cluster::wire::*;
use aos_cluster::InstanceId;

use crate::support::*;

#[test]
fn a_target_repeated_under_another_label_or_case_is_a_duplicate_both_ways() {
    let cases: [(&str, &str); 4] =
        [("AOS01@h:2712", "h:2712"), ("H:2712", "h"), ("A@aos1:7", "B@AOS1:7"), ("[::1]:5", "[0:0::1]:5")];
    for (first, again) in cases {
        let raw =
            raw_ranked(&[raw_entry(1, 0, 1, first), raw_entry(2, 0, 1, "x:1"), raw_entry(3, 0, 1, again)]);
        let expected = DecodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint };
        assert_eq!(decode_one(&raw), Err(expected), "{first} then {again}");
        let msg = reply_with(vec![
            entry(1, first.parse().unwrap()),
            entry(2, "x:1".parse().unwrap()),
            entry(3, again.parse().unwrap()),
        ]);
        let mut out = vec![7];
        let expected = EncodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint };
        assert_eq!(encode(&msg, &mut out), Err(expected), "{first} then {again}");
        assert_eq!(out, [7]);
    }
    // Same host on another port, or another host: no duplicate.
    let fine = reply_with(vec![entry(1, "h:1".parse().unwrap()), entry(2, "H:2".parse().unwrap())]);
    assert_eq!(decode_one(&frame_of(&fine)), Ok(fine));
}

#[test]
fn long_lists_find_the_first_repeat_like_short_ones() {
    // 300 entries: the sorting path. The earliest repeat wins, an id repeat
    // before a target repeat at the same position.
    let mut entries: Vec<RankedEntry> =
        (0..300).map(|i| entry(i, format!("host{i}:1").parse().unwrap())).collect();
    entries[250] = entry(250, "X@HOST17:1".parse().unwrap());
    entries[200] = entry(3, "host200:1".parse().unwrap());
    let msg = reply_with(entries.clone());
    let expected = Duplicate::Id(InstanceId(3));
    assert_eq!(
        encode(&msg, &mut Vec::new()),
        Err(EncodeError::DuplicateEntry { index: 200, what: expected })
    );
    entries[200] = entry(200, "host200:1".parse().unwrap());
    entries[120] = entry(17, "HOST17:1".parse().unwrap());
    let msg = reply_with(entries);
    assert_eq!(
        encode(&msg, &mut Vec::new()),
        Err(EncodeError::DuplicateEntry { index: 120, what: Duplicate::Id(InstanceId(17)) })
    );
}
