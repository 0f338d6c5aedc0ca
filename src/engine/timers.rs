//! The engine's timer queue: which user to re-check next, in deadline order.
//!
//! A million users each hold a deadline, and the clock pops the due ones in order. A single
//! binary heap of that size costs ~20 cache misses per pop; here only the current hour sits in a
//! (small, cache-resident) heap and later deadlines wait in per-hour append-only buckets, opened
//! when the clock reaches their hour. Pops stay in exact deadline order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Bucket width in seconds.
const BUCKET_SECS: u32 = 3600;

/// Deadlines (whole seconds since the epoch) tagged with a slot number. Duplicate and stale
/// entries are allowed; the engine decides what an entry still means when it pops.
#[derive(Debug, Default)]
pub struct TimerQueue {
    /// Entries of every opened bucket (hour ≤ `open_until`), ordered.
    near: BinaryHeap<Reverse<u64>>,
    /// Entries of later hours, unordered within their hour.
    far: BTreeMap<u32, Vec<u64>>,
    /// Last opened bucket (hour number); entries at or before it go to `near`.
    open_until: Option<u32>,
    len: usize,
}

fn entry(deadline: u32, idx: u32) -> u64 {
    u64::from(deadline) << 32 | u64::from(idx)
}

fn split(e: u64) -> (u32, u32) {
    ((e >> 32) as u32, e as u32)
}

impl TimerQueue {
    /// Queues `idx` for `deadline`.
    pub fn push(&mut self, deadline: u32, idx: u32) {
        let bucket = deadline / BUCKET_SECS;
        self.len += 1;
        if self.open_until.is_some_and(|open| bucket <= open) {
            self.near.push(Reverse(entry(deadline, idx)));
        } else {
            self.far
                .entry(bucket)
                .or_default()
                .push(entry(deadline, idx));
        }
    }

    /// Removes and returns the earliest entry whose deadline is at or before `now_secs`.
    pub fn pop_due(&mut self, now_secs: u32) -> Option<(u32, u32)> {
        loop {
            if let Some(&Reverse(e)) = self.near.peek() {
                let (deadline, idx) = split(e);
                if deadline <= now_secs {
                    self.near.pop();
                    self.len -= 1;
                    return Some((deadline, idx));
                }
                // `near` holds everything earlier than `far`, so nothing else is due.
                return None;
            }
            let (&bucket, _) = self.far.first_key_value()?;
            if u64::from(bucket) * u64::from(BUCKET_SECS) > u64::from(now_secs) {
                return None;
            }
            let entries = self.far.pop_first().map(|(_, v)| v).unwrap_or_default();
            self.open_until = Some(bucket);
            self.near.extend(entries.into_iter().map(Reverse));
        }
    }

    /// Number of queued entries (including stale ones).
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Interleaved pushes and clock advances pop exactly what a sorted list would, in order.
        #[test]
        fn pops_in_deadline_order(ops in proptest::collection::vec((0u32..200_000, 0u32..50, any::<bool>()), 1..300)) {
            let mut q = TimerQueue::default();
            let mut model: Vec<(u32, u32)> = Vec::new();
            let mut now = 0u32;
            for (i, (deadline, idx, advance)) in ops.into_iter().enumerate() {
                if advance {
                    now = now.saturating_add(deadline / 4);
                    let mut due: Vec<(u32, u32)> = model.iter().copied().filter(|(d, _)| *d <= now).collect();
                    due.sort_unstable();
                    model.retain(|(d, _)| *d > now);
                    let mut got = Vec::new();
                    while let Some(x) = q.pop_due(now) { got.push(x); }
                    prop_assert_eq!(got, due, "step {}", i);
                } else {
                    // Deadlines may be in the past (a user scheduled behind a jumped clock).
                    let d = now.saturating_sub(1000) + deadline;
                    q.push(d, idx);
                    model.push((d, idx));
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
