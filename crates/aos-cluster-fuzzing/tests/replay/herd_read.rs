//! Herd control's one-walk read against a look-up per member, over random
//! bytes (the `herd_read` fuzz body).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn live_each_is_live_for_each(data in prop::collection::vec(any::<u8>(), 0..1_200)) {
        aos_cluster_fuzzing::herd_read(&data, crate::base());
    }
}
