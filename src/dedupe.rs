//! Duplicate detection by `event_id`, bounded in memory by an event-time horizon.
//!
//! Producers retry and pipelines redeliver, and a duplicate purchase would double a user's
//! spend. A redelivered event carries its original timestamp, so an event is looked up only in
//! the time bucket of its own `ts`: one hash probe per event. Buckets older than the horizon
//! behind the clock are dropped, so memory is ~16 bytes × the events of one horizon (not of all
//! time); an event older than that can no longer be recognised as a duplicate — keep the horizon
//! at least as long as producers' retry windows.
//!
//! A hostile or broken producer can send a million distinct ids in a second, so the horizon
//! alone does not bound memory: the detector also holds at most a fixed number of fingerprints
//! and, at that cap, forgets the oldest bucket first (the current one last). Memory is then
//! bounded by the cap; what is lost is recognising redeliveries of the forgotten events, which
//! are counted ([`Deduper::forgotten`]) so an operator sees the horizon shrink.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

use ahash::{AHashSet, RandomState};

use crate::Millis;

/// Default cap on fingerprints held per detector (one per partition): ~16 MiB.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// Recently seen `(user_id, event_id)` pairs, bucketed by event time.
pub struct Deduper {
    horizon: Millis,
    max_entries: usize,
    /// Fingerprints held, over all buckets.
    entries: usize,
    /// Fingerprints forgotten before their horizon to stay within `max_entries`.
    forgotten: u64,
    bucket_width: Millis,
    /// `(bucket index, fingerprints)`, ascending by index.
    buckets: VecDeque<(i64, AHashSet<u64>)>,
    hasher: RandomState,
}

impl Deduper {
    /// A detector remembering events up to `horizon` behind the clock, at most `max_entries` of
    /// them; `horizon` 0 disables it.
    pub fn new(horizon: Millis, max_entries: usize) -> Deduper {
        Deduper {
            horizon,
            max_entries: max_entries.max(1),
            entries: 0,
            forgotten: 0,
            bucket_width: (horizon / 8).max(1_000),
            buckets: VecDeque::new(),
            // Fixed keys: fingerprints must not depend on the process (restores, tests).
            hasher: RandomState::with_seeds(0x5eed, 0x00c0_ffee, 0xdead_beef, 0x00dd_ba11),
        }
    }

    /// Records the event; returns `true` if the same `(user_id, event_id)` at the same bucket
    /// of event time was seen before within the horizon.
    pub fn is_duplicate(
        &mut self,
        user_id: &str,
        event_id: &str,
        ts: Millis,
        clock: Millis,
    ) -> bool {
        if self.horizon == 0 || ts < clock.saturating_sub(self.horizon) {
            return false;
        }
        let mut h = self.hasher.build_hasher();
        user_id.hash(&mut h);
        event_id.hash(&mut h);
        let fp = h.finish();
        let idx = ts.div_euclid(self.bucket_width);
        let bucket = |b: &VecDeque<(i64, AHashSet<u64>)>| b.binary_search_by_key(&idx, |(i, _)| *i);
        if self.entries >= self.max_entries {
            if let Ok(pos) = bucket(&self.buckets) {
                if self.buckets[pos].1.contains(&fp) {
                    return true;
                }
            }
            // Full: forget the oldest bucket (every bucket holds at least one fingerprint, so
            // each pass frees room), possibly the event's own.
            while self.entries >= self.max_entries {
                let Some((_, set)) = self.buckets.pop_front() else {
                    break;
                };
                self.entries -= set.len();
                self.forgotten += set.len() as u64;
            }
        }
        let pos = match bucket(&self.buckets) {
            Ok(p) => p,
            Err(p) => {
                self.buckets.insert(p, (idx, AHashSet::new()));
                p
            }
        };
        if !self.buckets[pos].1.insert(fp) {
            return true;
        }
        self.entries += 1;
        false
    }

    /// Forgets buckets entirely older than the horizon behind `clock`.
    pub fn prune(&mut self, clock: Millis) {
        let oldest = clock
            .saturating_sub(self.horizon)
            .div_euclid(self.bucket_width);
        while self.buckets.front().is_some_and(|(i, _)| *i < oldest) {
            if let Some((_, set)) = self.buckets.pop_front() {
                self.entries -= set.len();
            }
        }
    }

    /// Fingerprints held (memory accounting).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Fingerprints forgotten before their horizon because the detector was full.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivered_event_is_a_duplicate_once_seen() {
        let mut d = Deduper::new(3_600_000, DEFAULT_MAX_ENTRIES);
        assert!(!d.is_duplicate("u", "e1", 1_000_000, 1_000_000));
        assert!(d.is_duplicate("u", "e1", 1_000_000, 1_500_000));
        assert!(!d.is_duplicate("u", "e2", 1_000_000, 1_500_000));
        assert!(
            !d.is_duplicate("v", "e1", 1_000_000, 1_500_000),
            "ids are per user"
        );
    }

    #[test]
    fn memory_is_bounded_by_the_horizon() {
        let mut d = Deduper::new(60_000, DEFAULT_MAX_ENTRIES);
        for i in 0..10_000i64 {
            let ts = i * 1_000;
            d.is_duplicate("u", &i.to_string(), ts, ts);
            d.prune(ts);
        }
        assert!(d.len() <= 60 + 8, "{}", d.len());
        // Beyond the horizon an old event can no longer be recognised (documented trade-off).
        assert!(!d.is_duplicate("u", "0", 0, 10_000_000));
    }

    #[test]
    fn zero_horizon_disables() {
        let mut d = Deduper::new(0, DEFAULT_MAX_ENTRIES);
        assert!(!d.is_duplicate("u", "e", 5, 5));
        assert!(!d.is_duplicate("u", "e", 5, 5));
        assert!(d.is_empty());
    }

    #[test]
    fn at_the_cap_the_oldest_fingerprints_go_first_and_are_counted() {
        // A bucket is horizon / 8 = 7.5 minutes wide.
        let mut d = Deduper::new(3_600_000, 1_000);
        let minute = 60_000;
        for i in 0..600 {
            assert!(!d.is_duplicate("u", &format!("old{i}"), 0, 0));
        }
        for i in 0..600 {
            let ts = 10 * minute;
            assert!(!d.is_duplicate("u", &format!("new{i}"), ts, ts));
        }
        assert!(d.len() <= 1_000, "{}", d.len());
        assert_eq!(d.forgotten(), 600, "the whole oldest bucket is forgotten");
        assert!(
            d.is_duplicate("u", "new599", 10 * minute, 10 * minute),
            "the newest are still recognised"
        );
        assert!(
            !d.is_duplicate("u", "old0", 0, 10 * minute),
            "the forgotten ones are not (the documented price of the cap)"
        );
    }

    #[test]
    fn a_flood_within_one_bucket_stays_within_the_cap() {
        let mut d = Deduper::new(3_600_000, 10_000);
        for i in 0..1_000_000u32 {
            d.is_duplicate("u", &i.to_string(), 1_000, 1_000);
        }
        assert!(d.len() <= 10_000, "{}", d.len());
        assert_eq!(d.forgotten() + d.len() as u64, 1_000_000);
        assert!(d.is_duplicate("u", "999999", 1_000, 1_000));
    }
}
