//! Exact sliding windows at day granularity.
//!
//! A user's recent activity is a short list of day buckets, one per *active* day, sorted by day
//! and pruned beyond the longest window. A window sum is then an exact recount of the events
//! whose day falls in the window, never a decayed approximation, and a late event is folded into
//! its own day's bucket wherever that sits. Memory is proportional to the user's active days
//! within the longest window (bounded by it), not to their number of events.

use crate::event::{Event, EventKind};
use crate::{Millis, DAY_MS};

/// Longest window kept, in days; buckets older than this (relative to the clock) are pruned.
pub const MAX_WINDOW_DAYS: u32 = 90;

/// Counters for one calendar day (UTC) of one user, in 16 bytes. Counters saturate rather than
/// wrap: at 65,535 events, or 255 of one kind, per user and day — beyond what a person does (a
/// bot that exceeds it is still visible as a saturated day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayBucket {
    /// Days since the Unix epoch (u16 lasts until 2149).
    pub day: u16,
    pub events: u16,
    /// Spend in cents: integer sums make windows exact and order-independent.
    pub spend_cents: u32,
    pub page_views: u8,
    pub logins: u8,
    pub cart_adds: u8,
    pub purchases: u8,
    pub refunds: u8,
    pub complaints: u8,
    pub coupons: u8,
    pub social: u8,
}

const _: () = assert!(std::mem::size_of::<DayBucket>() == 16);

impl DayBucket {
    fn add(&mut self, kind: EventKind, amount_cents: u32) {
        self.events = self.events.saturating_add(1);
        match kind {
            EventKind::Login => self.logins = self.logins.saturating_add(1),
            EventKind::PageView => self.page_views = self.page_views.saturating_add(1),
            EventKind::CartAdd => self.cart_adds = self.cart_adds.saturating_add(1),
            EventKind::Purchase => {
                self.purchases = self.purchases.saturating_add(1);
                self.spend_cents = self.spend_cents.saturating_add(amount_cents);
            }
            EventKind::Refund => self.refunds = self.refunds.saturating_add(1),
            EventKind::Complaint => self.complaints = self.complaints.saturating_add(1),
            EventKind::CouponRedeem => self.coupons = self.coupons.saturating_add(1),
            EventKind::Review | EventKind::Share => self.social = self.social.saturating_add(1),
            _ => {}
        }
    }
}

/// Sums of the buckets whose day lies in `(today - days, today]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    pub events: u32,
    pub logins: u32,
    pub page_views: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    pub refunds: u32,
    pub complaints: u32,
    pub coupons: u32,
    pub social: u32,
    pub spend_cents: u64,
    pub active_days: u32,
}

impl WindowTotals {
    fn add(&mut self, b: &DayBucket) {
        self.events += u32::from(b.events);
        self.logins += u32::from(b.logins);
        self.page_views += u32::from(b.page_views);
        self.cart_adds += u32::from(b.cart_adds);
        self.purchases += u32::from(b.purchases);
        self.refunds += u32::from(b.refunds);
        self.complaints += u32::from(b.complaints);
        self.coupons += u32::from(b.coupons);
        self.social += u32::from(b.social);
        self.spend_cents += u64::from(b.spend_cents);
        self.active_days += 1;
    }
}

/// The active-day buckets of one user, sorted by day, at most one per day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayWindows {
    buckets: Vec<DayBucket>,
}

/// Day number (days since the Unix epoch) of an instant.
pub fn day_of(ts: Millis) -> u32 {
    u32::try_from(ts.div_euclid(DAY_MS)).unwrap_or(0)
}

/// Rounds a money amount to whole cents, saturating at `u32::MAX` cents.
pub fn to_cents(amount: f64) -> u32 {
    let cents = (amount * 100.0).round();
    if cents <= 0.0 {
        0
    } else if cents >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        cents as u32
    }
}

impl DayWindows {
    /// Folds one event into its day's bucket, wherever that day sits (late events included).
    pub fn add(&mut self, event: &Event) {
        let day = u16::try_from(day_of(event.ts)).unwrap_or(u16::MAX);
        let cents = to_cents(event.amount);
        // Newest-first search: nearly all events land in the last bucket.
        match self.buckets.iter().rposition(|b| b.day <= day) {
            Some(i) if self.buckets[i].day == day => self.buckets[i].add(event.kind, cents),
            pos => {
                let mut bucket = DayBucket {
                    day,
                    ..DayBucket::default()
                };
                bucket.add(event.kind, cents);
                // Exact growth: a new active day is rare next to events, and doubling would
                // leave up to half of every user's buckets empty.
                self.buckets.reserve_exact(1);
                self.buckets.insert(pos.map_or(0, |i| i + 1), bucket);
            }
        }
    }

    /// Drops buckets that no window ending at `today` or later can contain.
    pub fn prune(&mut self, today: u32) {
        let oldest_kept = today.saturating_sub(MAX_WINDOW_DAYS - 1);
        let stale = self
            .buckets
            .iter()
            .take_while(|b| u32::from(b.day) < oldest_kept)
            .count();
        if stale > 0 {
            self.buckets.drain(..stale);
            self.buckets.shrink_to_fit();
        }
    }

    /// Totals of the window of `days` days ending at (and including) `today`.
    pub fn totals(&self, today: u32, days: u32) -> WindowTotals {
        let first = today.saturating_sub(days.saturating_sub(1));
        let mut t = WindowTotals::default();
        for b in self.buckets.iter().rev() {
            let day = u32::from(b.day);
            if day < first {
                break;
            }
            if day <= today {
                t.add(b);
            }
        }
        t
    }

    /// Totals of several nested windows in one pass; `days` must be ascending.
    pub fn totals_nested<const N: usize>(&self, today: u32, days: [u32; N]) -> [WindowTotals; N] {
        let mut out = [WindowTotals::default(); N];
        for b in self.buckets.iter().rev() {
            let day = u32::from(b.day);
            if day > today {
                continue;
            }
            let age = today - day;
            let mut any = false;
            for (i, d) in days.iter().enumerate() {
                if age < *d {
                    out[i].add(b);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    /// Number of active-day buckets held (memory accounting and tests).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Heap bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<DayBucket>()
    }
}

#[cfg(test)]
mod tests {
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
        w.prune(199);
        assert_eq!(w.len(), MAX_WINDOW_DAYS as usize);
        assert_eq!(w.totals(199, 90).events, 90);
    }

    proptest! {
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
        }
    }
}
