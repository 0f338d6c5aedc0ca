//! Duplicate detection by `event_id`, bounded in memory by an event-time horizon.
//!
//! Producers retry and pipelines redeliver, and a duplicate purchase would double a user's
//! spend. A redelivered event carries its original timestamp, so an event is looked up only in
//! the time bucket of its own `ts`: one hash probe per event. Buckets older than the horizon
//! behind the clock are dropped, so memory is ~16 bytes × the events of one horizon (not of all
//! time); an event older than that can no longer be recognised as a duplicate — keep the horizon
//! at least as long as producers' retry windows.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

use ahash::{AHashSet, RandomState};

use crate::Millis;

/// Recently seen `(user_id, event_id)` pairs, bucketed by event time.
pub struct Deduper {
    horizon: Millis,
    bucket_width: Millis,
    /// `(bucket index, fingerprints)`, ascending by index.
    buckets: VecDeque<(i64, AHashSet<u64>)>,
    hasher: RandomState,
}

impl Deduper {
    /// A detector remembering events up to `horizon` behind the clock; `horizon` 0 disables it.
    pub fn new(horizon: Millis) -> Deduper {
        Deduper {
            horizon,
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
        let pos = match self.buckets.binary_search_by_key(&idx, |(i, _)| *i) {
            Ok(p) => p,
            Err(p) => {
                self.buckets.insert(p, (idx, AHashSet::new()));
                p
            }
        };
        !self.buckets[pos].1.insert(fp)
    }

    /// Forgets buckets entirely older than the horizon behind `clock`.
    pub fn prune(&mut self, clock: Millis) {
        let oldest = clock
            .saturating_sub(self.horizon)
            .div_euclid(self.bucket_width);
        while self.buckets.front().is_some_and(|(i, _)| *i < oldest) {
            self.buckets.pop_front();
        }
    }

    /// Fingerprints held (memory accounting).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|(_, s)| s.len()).sum()
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
        let mut d = Deduper::new(3_600_000);
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
        let mut d = Deduper::new(60_000);
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
        let mut d = Deduper::new(0);
        assert!(!d.is_duplicate("u", "e", 5, 5));
        assert!(!d.is_duplicate("u", "e", 5, 5));
        assert!(d.is_empty());
    }
}
