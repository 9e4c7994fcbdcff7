use super::*;

#[test]
fn percentiles_use_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!((percentile(&v, 0.5), percentile(&v, 0.99), percentile(&v, 1.0)), (50.0, 99.0, 100.0));
    assert_eq!(percentile(&[7.0], 0.99), 7.0);
    assert_eq!(Stat::of([3.0, 1.0, 2.0]), Stat { p50: 2.0, p99: 3.0 });
}

#[test]
fn peak_ratio_is_one_for_an_even_spread_and_grows_with_a_herd() {
    let loads = vec![InstanceLoad { connected: 0, max_sessions: 10, survivor: true }; 4];
    let ms = Duration::from_millis;
    let even: Vec<Admission> =
        (0..16).map(|i| Admission { at: ms(i * 5), instance: (i % 4) as u32, measured: true }).collect();
    assert_eq!(arrival_peak_ratio(&even, &loads, ms(100)), 1.0);
    let herd: Vec<Admission> =
        (0..16).map(|i| Admission { at: ms(i), instance: 0, measured: true }).collect();
    assert_eq!(arrival_peak_ratio(&herd, &loads, ms(100)), 4.0);
    // Unmeasured admissions do not count.
    let mut mixed = even.clone();
    mixed.extend((0..16).map(|i| Admission { at: ms(i), instance: 1, measured: false }));
    mixed.sort_by_key(|a| a.at);
    assert_eq!(arrival_peak_ratio(&mixed, &loads, ms(100)), 1.0);
}

#[test]
fn peak_ratio_skips_windows_too_small_to_judge() {
    let loads = vec![InstanceLoad { connected: 0, max_sessions: 10, survivor: true }; 7];
    let ms = Duration::from_millis;
    // 28 arrivals over 7 survivors (share 4), one survivor taking 8 of them...
    let mut admissions: Vec<Admission> = (0..28)
        .map(|i| Admission {
            at: ms(i),
            instance: if i < 8 { 0 } else { 1 + (i % 6) as u32 },
            measured: true,
        })
        .collect();
    // ...then 8 arrivals split as evenly as whole sessions allow (share 8/7).
    admissions.extend((0..8).map(|i| Admission {
        at: ms(100 + i),
        instance: (i % 7) as u32,
        measured: true,
    }));
    assert_eq!(arrival_peak_ratio(&admissions, &loads, ms(100)), 2.0, "the judged window");
    assert_eq!(arrival_peak_ratio(&admissions[28..], &loads, ms(100)), 0.0, "nothing to judge");
}

#[test]
fn utilisation_figures_ignore_non_survivors() {
    let loads = [
        InstanceLoad { connected: 50, max_sessions: 100, survivor: true },
        InstanceLoad { connected: 100, max_sessions: 200, survivor: true },
        InstanceLoad { connected: 90, max_sessions: 100, survivor: true },
        InstanceLoad { connected: 0, max_sessions: 100, survivor: false },
    ];
    let m = RunMetrics::compute(&RunData::admissions_only(1, &[], &loads, Duration::from_millis(100)));
    assert!((m.spread_points - 40.0).abs() < 1e-9);
    assert!((m.busiest_over_mean - 0.9 / (1.9 / 3.0)).abs() < 1e-9);
}
