//! When each user is checked next: the deadline the engine derives from a user's state after
//! every event and every timer firing. Apart from the engine's event and clock handling because
//! it is one rule with several parts (lifecycle thresholds, purchase cycle, outcome windows,
//! periodic re-scoring and the proof that lets a silent user skip it).

use super::{ceil_secs, Engine};
use crate::alert::Trigger;
use crate::features::{FeatureVector, Totals};
use crate::{Millis, DAY_MS};

impl Engine {
    /// Next check, derived from state alone (so a restored state re-creates it): the earliest of
    /// the next lifecycle threshold the silence will cross, the point where the user's own
    /// purchase cycle is overdue, the next periodic re-score (until alerted this episode), and
    /// eviction.
    /// `totals` are the user's window totals at `now` (already computed by the caller), and
    /// `features` their features at `now` when the caller computed them too.
    pub(super) fn schedule(
        &mut self,
        idx: u32,
        now: Millis,
        totals: &Totals,
        features: Option<&FeatureVector>,
        trigger: Trigger,
    ) {
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return;
        };
        let state = &slot.state;
        if !state.has_activity() {
            // Only an opt-out so far: nothing to score, no silence to count and no retention to
            // count it from (the user stays, so the opt-out is remembered). A deadline derived
            // from the `NEVER` instant would lie in the past and fire every second.
            slot.deadline = 0;
            return;
        }
        let last_activity = state.last_activity_ms();
        let eviction = last_activity
            .saturating_add(self.config.retention)
            .saturating_add(1);
        let mut next = eviction;
        if let Some(d) = self
            .config
            .lifecycle
            .silence_deadlines(state.silence_start())
            .into_iter()
            .find(|d| *d > now)
        {
            next = next.min(d);
        }
        if let Some(cycle) = state.purchase_cycle_days() {
            let overdue = state.last_purchase().millis()
                + (cycle.max(1.0) * self.config.cycle_overdue_factor * DAY_MS as f64) as Millis;
            if overdue > now {
                next = next.min(overdue);
            }
        }
        if let Some(p) = self.outcomes.get(&idx) {
            next = next.min(p.window_end.max(now));
        }
        if let Some(model) = self
            .model
            .as_ref()
            .filter(|_| !state.alerted_this_episode())
        {
            let silence = now.checked_sub(last_activity).map_or(0, |d| d.max(0)) as f64;
            let step = (silence * self.config.rescore_growth) as Millis;
            let periodic = now
                .saturating_add(step.max(self.config.rescore_interval))
                .max(last_activity.saturating_add(self.config.rescore_after));
            // Only from timers: after an event the first periodic check is a week away anyway,
            // and proving the skip costs two feature computations.
            if periodic < next && trigger == Trigger::Timer {
                // Skip the periodic re-scorings up to the next structural deadline (or half way)
                // when no instant before it can reach the threshold: the score of a silent user
                // is bounded by the features at both ends (see `Scorer::silent_score_bound`).
                let computed;
                let start = match features {
                    Some(f) => f,
                    None => {
                        computed = state.features_with(totals, now);
                        &computed
                    }
                };
                let safe_until = |until: Millis| {
                    model
                        .silent_score_bound(start, &state.features(until, totals.layout()))
                        .is_some_and(|p| p < model.threshold())
                };
                let half = now + (next - now) / 2;
                next = if safe_until(next) {
                    next
                } else if half > periodic && safe_until(half) {
                    half
                } else {
                    periodic
                };
            }
        }
        // A timer firing at `now` re-queues strictly later, or it would be due again at once.
        let earliest = match trigger {
            Trigger::Timer => now.saturating_add(1),
            Trigger::Event => now,
        };
        let Some(due) = ceil_secs(next.max(earliest)) else {
            slot.deadline = 0;
            return;
        };
        slot.deadline = due;
        if slot.queued == 0 || due < slot.queued {
            slot.queued = due;
            self.timers.push(due, idx);
        }
    }
}
