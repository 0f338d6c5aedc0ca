//! Tests of the parent module, kept in their own file so the module itself stays short.

use super::*;
use proptest::prelude::*;

fn ev(day: u32, kind: EventKind, amount: f64) -> Event {
    Event {
        event_id: String::new(),
        user_id: "u".into(),
        kind,
        ts: i64::from(day) * DAY_MS + 3_600_000,
        amount,
    }
}

#[test]
fn window_edges_are_inclusive_of_today_and_exclusive_beyond_n_days() {
    let mut w = DayWindows::default();
    for day in [100, 94, 93, 71, 70] {
        w.add(&ev(day, EventKind::Purchase, 1.0));
    }
    assert_eq!(w.totals(100, 7).purchases, 2); // days 94..=100
    assert_eq!(w.totals(100, 30).purchases, 4); // days 71..=100
    assert_eq!(w.totals(100, 31).purchases, 5);
    assert_eq!(w.totals(100, 7).spend_cents, 200);
}

#[test]
fn late_events_land_in_their_own_day() {
    let mut w = DayWindows::default();
    w.add(&ev(50, EventKind::Login, 0.0));
    w.add(&ev(40, EventKind::Login, 0.0));
    w.add(&ev(45, EventKind::Login, 0.0));
    w.add(&ev(40, EventKind::PageView, 0.0));
    assert_eq!(w.len(), 3);
    assert_eq!(w.totals(50, 6).logins, 2); // days 45..=50 hold the logins of days 45 and 50
    assert_eq!(w.totals(50, 5).logins, 1); // days 46..=50
    assert_eq!(w.totals(50, 7).events, 2);
    assert_eq!(w.totals(50, 11).events, 4);
}

#[test]
fn prune_keeps_exactly_the_longest_window() {
    let mut w = DayWindows::default();
    for day in 0..200 {
        w.add(&ev(day, EventKind::Login, 0.0));
    }
    w.prune(199, MIN_KEPT_DAYS);
    assert_eq!(w.len(), MIN_KEPT_DAYS as usize);
    assert_eq!(w.totals(199, 90).events, 90);
    assert_eq!(w.buckets().next().map(|b| b.day), Some(110));
    w.prune(400, MIN_KEPT_DAYS);
    assert!(w.is_empty());
}

#[test]
fn the_longest_window_sets_what_is_kept_but_never_below_the_trend_windows() {
    let kept = |text: &str| text.parse::<Windows>().unwrap().kept_days();
    assert_eq!(kept("7,30,90"), 90);
    assert_eq!(kept("7,30,90,180"), 180);
    assert_eq!(kept("7,14"), MIN_KEPT_DAYS);
    assert_eq!(kept("365"), 365);
    assert_eq!(
        "7, 30,90 ,180".parse::<Windows>().unwrap().to_string(),
        "7,30,90,180"
    );
}

#[test]
fn bad_window_lists_are_refused() {
    let err = |text: &str| text.parse::<Windows>().unwrap_err();
    assert_eq!(err(""), WindowsError::Empty);
    assert_eq!(err("1,2,3,4,5"), WindowsError::TooMany(5));
    assert_eq!(err("7,,30"), WindowsError::NotANumber(String::new()));
    assert_eq!(err("0"), WindowsError::OutOfRange(0));
    assert_eq!(err("366"), WindowsError::OutOfRange(366));
    assert_eq!(err("99999999"), WindowsError::OutOfRange(99_999_999));
    assert_eq!(err("30,30"), WindowsError::NotAscending(30, 30));
    assert_eq!(err("90,30"), WindowsError::NotAscending(90, 30));
}

#[test]
fn packing_is_lossless_and_small() {
    let mut w = DayWindows::default();
    let big = DayBucket {
        day: 10,
        events: 60_000,
        spend_cents: u32::MAX,
        page_views: 255,
        logins: 1,
        cart_adds: 2,
        purchases: 3,
        refunds: 4,
        complaints: 5,
        coupons: 6,
        social: 7,
    };
    let small = DayBucket {
        day: 11,
        events: 2,
        page_views: 2,
        ..DayBucket::default()
    };
    let hot = DayBucket {
        day: 300,
        events: 1,
        logins: 1,
        ..DayBucket::default()
    };
    w.rebuild(&[big, small, hot]);
    assert_eq!(w.buckets().collect::<Vec<_>>(), vec![big, small, hot]);
    // A browsing day packs into four bytes: delta, mask, events, page views.
    let mut out = Vec::new();
    small.pack(1, &mut out);
    assert_eq!(out.len(), 4);
}

/// More events on one day than a 16-bit count holds, with more than 255 of each kind.
#[test]
fn a_day_beyond_the_compact_counters_is_counted_exactly() {
    let mut w = DayWindows::default();
    let mut evs = Vec::new();
    for i in 0..70_000u32 {
        let kind = [EventKind::PageView, EventKind::Login, EventKind::Purchase][(i % 3) as usize];
        evs.push(ev(10, kind, 9_999_999.99));
    }
    evs.push(ev(11, EventKind::Login, 0.0));
    for e in &evs {
        w.add(e);
    }
    let t = w.totals(11, 7);
    assert_eq!(t, recount(&evs, 11, 7));
    assert_eq!(t.events, 70_001);
    assert_eq!(t.purchases, 23_333);
    assert_eq!(t.spend_cents, 23_333 * 999_999_999);
    assert_eq!(t.active_days, 2);
    assert_eq!(w.len(), 2, "one bucket per active day, however heavy");
    // The packed form carries a heavy day too.
    let (hot, packed, first) = w.to_parts();
    let back = DayWindows::from_parts(hot, packed, first).unwrap();
    assert_eq!(back.totals(11, 7), t);
}

/// Brute-force recount of `evs` over the `days` days ending at `today`.
fn recount(evs: &[Event], today: u32, days: u32) -> WindowTotals {
    let mut t = WindowTotals::default();
    let mut seen: Vec<u32> = Vec::new();
    for e in evs {
        let d = day_of(e.ts);
        if d > today || d + days <= today {
            continue;
        }
        let mut b = DayBucket::default();
        b.add(e.kind, to_cents(e.amount));
        t.events += 1;
        t.logins += u32::from(b.logins);
        t.page_views += u32::from(b.page_views);
        t.cart_adds += u32::from(b.cart_adds);
        t.purchases += u32::from(b.purchases);
        t.refunds += u32::from(b.refunds);
        t.complaints += u32::from(b.complaints);
        t.coupons += u32::from(b.coupons);
        t.social += u32::from(b.social);
        t.spend_cents += u64::from(b.spend_cents);
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    t.active_days = seen.len() as u32;
    t
}

proptest! {
    /// Any window set, any order of arrival, pruned to what the window set keeps: every
    /// window's sums equal a brute-force recount of the same events, counter by counter.
    #[test]
    fn configured_windows_equal_brute_force(
        events in proptest::collection::vec((0u32..500, 0usize..15, 0u32..10_000), 0..200),
        days in proptest::collection::btree_set(1u16..=MAX_HORIZON_DAYS, 1..=MAX_WINDOWS),
        later in 0u32..400,
    ) {
        let windows = Windows::new(&days.iter().map(|d| u64::from(*d)).collect::<Vec<_>>()).unwrap();
        let mut w = DayWindows::default();
        let evs: Vec<Event> = events.iter()
            .map(|(d, k, c)| ev(*d, EventKind::ALL[*k], f64::from(*c) / 100.0)).collect();
        // As the engine does: the clock is the latest event so far, and each event prunes
        // to what the windows keep at that clock.
        let mut clock = 0;
        for e in &evs {
            clock = clock.max(day_of(e.ts));
            w.add(e);
            w.prune(clock, windows.kept_days());
        }
        let today = clock + later;
        w.prune(today, windows.kept_days());
        // The plan the engine sums: configured windows plus the fixed trend windows.
        let mut plan: Vec<u16> = windows.days().to_vec();
        plan.extend([TREND_RECENT_DAYS, TREND_BASE_DAYS]);
        plan.sort_unstable();
        plan.dedup();
        let totals = w.totals_ascending(today, &plan);
        for (i, d) in plan.iter().enumerate() {
            // Pruning lost nothing a window ending at the clock or later reads.
            prop_assert_eq!(totals[i], recount(&evs, today, u32::from(*d)), "window {} of {:?}", d, plan);
        }
        prop_assert!(totals[plan.len()..].iter().all(|t| *t == WindowTotals::default()));
        prop_assert!(w.buckets().all(|b| u32::from(b.day) + windows.kept_days() > today));
        prop_assert!(w.len() <= windows.kept_days() as usize);
    }

    /// Heavy days too: hundreds of one kind, amounts up to the maximum, any order of
    /// arrival (late days included). A bot's day must be counted, not capped.
    #[test]
    fn heavy_days_equal_brute_force(
        bursts in proptest::collection::vec((0u32..40, 0usize..15, 0u32..=1_000_000_000, 1u32..700), 1..25),
        later in 0u32..100,
    ) {
        let evs: Vec<Event> = bursts
            .iter()
            .flat_map(|(d, k, c, n)| {
                let e = ev(*d, EventKind::ALL[*k], f64::from(*c) / 100.0);
                std::iter::repeat_n(e, *n as usize)
            })
            .collect();
        let mut w = DayWindows::default();
        let mut clock = 0;
        for e in &evs {
            clock = clock.max(day_of(e.ts));
            w.add(e);
            w.prune(clock, MIN_KEPT_DAYS);
        }
        let today = clock + later;
        let plan = [7u16, 30, 90];
        let totals = w.totals_ascending(today, &plan);
        for (i, d) in plan.iter().enumerate() {
            prop_assert_eq!(totals[i], recount(&evs, today, u32::from(*d)), "window {}", d);
        }
        let nested = w.totals_nested(today, [7, 30, 90]);
        prop_assert_eq!(nested, [totals[0], totals[1], totals[2]]);
    }

    /// Any order of arrival gives the same windows as a brute-force recount.
    #[test]
    fn windows_equal_brute_force(events in proptest::collection::vec((0u32..120, 0usize..15, 0u32..10_000), 0..200),
                                 today in 60u32..130) {
        let mut w = DayWindows::default();
        let evs: Vec<Event> = events.iter()
            .map(|(d, k, c)| ev(*d, EventKind::ALL[*k], f64::from(*c) / 100.0)).collect();
        for e in &evs { w.add(e); }
        for days in [1u32, 7, 30, 90] {
            let t = w.totals(today, days);
            let inside: Vec<&Event> = evs.iter()
                .filter(|e| { let d = day_of(e.ts); d <= today && d + days > today }).collect();
            prop_assert_eq!(t.events as usize, inside.len());
            prop_assert_eq!(t.purchases as usize, inside.iter().filter(|e| e.kind == EventKind::Purchase).count());
            let spend: u64 = inside.iter().filter(|e| e.kind == EventKind::Purchase).map(|e| u64::from(to_cents(e.amount))).sum();
            prop_assert_eq!(t.spend_cents, spend);
            let mut days_seen: Vec<u32> = inside.iter().map(|e| day_of(e.ts)).collect();
            days_seen.sort_unstable(); days_seen.dedup();
            prop_assert_eq!(t.active_days as usize, days_seen.len());
        }
        let nested = w.totals_nested(today, [7, 30, 90]);
        prop_assert_eq!(nested, [w.totals(today, 7), w.totals(today, 30), w.totals(today, 90)]);
        let days: Vec<u16> = w.buckets().map(|b| b.day).collect();
        prop_assert!(days.windows(2).all(|p| p[0] < p[1]), "buckets ascending and unique");
        // Pruning to the longest window changes no window that fits in it.
        let mut pruned = w.clone();
        pruned.prune(today, 90);
        prop_assert_eq!(pruned.totals_nested(today, [7, 30, 90]), nested);
        prop_assert!(pruned.buckets().all(|b| u32::from(b.day) + 90 > today));
    }
}

/// Records are grown by exactly their length: the precomputed length must match what is written.
#[test]
fn packed_length_is_what_pack_writes() {
    for v in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        2_097_151,
        2_097_152,
        u32::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(varint_len(v), out.len(), "{v}");
    }
    let b = DayBucket {
        day: 9,
        events: 300,
        spend_cents: 4_250_000,
        page_views: 200,
        purchases: 1,
        ..DayBucket::default()
    };
    for delta in [0, 5, 200, u16::MAX] {
        let mut out = Vec::new();
        b.pack(delta, &mut out);
        assert_eq!(b.packed_len(delta), out.len(), "delta {delta}");
    }
}
