//! Per-user behavioural state and the feature vector derived from it.
//!
//! State is what is kept per user ([`UserState`]); features are what is computed from it at a
//! given instant ([`FeatureVector`]). Keeping them apart means the clock decides what a window
//! contains: the same state yields different 7-day counts a week later, which is exactly what
//! scoring a silent user needs.

pub mod caps;
pub mod codec;
pub mod layout;
pub mod lifecycle;
mod stage_stats;
mod state;
pub mod window;

pub use caps::{CapRule, CapState, SuppressReason, CAP_HISTORY, CAP_WINDOW_DAYS};
pub use layout::{FeatureLayout, MAX_FEATURES};
pub use lifecycle::{LifecycleConfig, Stage};
pub use stage_stats::{StageCounts, StageStats, StageTransitions};
pub use state::{Instant32, Totals, UserState};
pub use window::{DayBucket, DayWindows, WindowTotals, Windows, WindowsError};

/// Purchase cycle assumed for users with fewer than two purchases, in days, so that
/// `recency_vs_cycle` is defined for everyone (documented in the README's feature table).
pub const DEFAULT_CYCLE_DAYS: f64 = 30.0;

/// A user's features at one instant, in the order of its [`FeatureLayout`]; entries past the
/// layout's length are zero. Inline and `Copy`: a scoring builds one without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureVector {
    pub values: [f64; MAX_FEATURES],
    layout: &'static FeatureLayout,
    /// Events and spend of the fixed 30- and 90-day windows the trends are made of, which need
    /// not be features themselves (see [`FeatureVector::silent_range`] and the value tier).
    trend_parts: TrendParts,
}

/// The sums the trend features are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TrendParts {
    pub(crate) events_30d: f64,
    pub(crate) events_90d: f64,
    pub(crate) spend_30d: f64,
    pub(crate) spend_90d: f64,
}

impl FeatureVector {
    /// All-zero features of a layout (tests, and models probing their inputs).
    pub fn zeros(layout: &'static FeatureLayout) -> FeatureVector {
        FeatureVector {
            values: [0.0; MAX_FEATURES],
            layout,
            trend_parts: TrendParts::default(),
        }
    }

    pub(crate) fn from_parts(
        values: [f64; MAX_FEATURES],
        layout: &'static FeatureLayout,
        trend_parts: TrendParts,
    ) -> FeatureVector {
        FeatureVector {
            values,
            layout,
            trend_parts,
        }
    }

    /// The layout these values follow.
    pub fn layout(&self) -> &'static FeatureLayout {
        self.layout
    }

    /// The values, one per feature of the layout.
    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.layout.len()]
    }

    /// Value of a feature by name (tests and explanations; the hot path uses indices).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.layout.index_of(name).map(|i| self.values[i])
    }

    /// Sets a feature by name; `false` if the layout has no such feature (tests).
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        match self.layout.index_of(name) {
            Some(i) => {
                self.values[i] = value;
                true
            }
            None => false,
        }
    }

    /// Spend of the last 90 days, whatever the windows: the policy's value tier is defined on
    /// it, not on a configurable feature.
    pub fn spend_90d_fixed(&self) -> f64 {
        self.trend_parts.spend_90d
    }

    /// The range feature `i` can take at any instant between two snapshots `start` and `end`
    /// (later) of a user who sends no event in between. Windows only lose days, recencies and
    /// tenure only grow and lifetime totals stay put, so for those the two snapshots bound every
    /// value in between; the trends move both ways as days cross from the 30-day window into the
    /// prior 60 days and out, so they get bounds from their parts. Lets the engine prove that a
    /// silent user cannot reach the alert threshold before some instant without scoring every
    /// day on the way.
    pub fn silent_range(i: usize, start: &FeatureVector, end: &FeatureVector) -> (f64, f64) {
        let trend = |recent: fn(&TrendParts) -> f64, long: fn(&TrendParts) -> f64| {
            // (recent + 1) / (prior / 2 + 1), recent in [end, start], prior in [0, long(start) − recent(end)].
            let (s, e) = (&start.trend_parts, &end.trend_parts);
            let prior_max = (long(s) - recent(e)).max(0.0);
            ((recent(e) + 1.0) / (prior_max / 2.0 + 1.0), recent(s) + 1.0)
        };
        if i == start.layout.activity_trend() {
            trend(|p| p.events_30d, |p| p.events_90d)
        } else if i == start.layout.spend_trend() {
            trend(|p| p.spend_30d, |p| p.spend_90d)
        } else {
            let (a, b) = (start.values[i], end.values[i]);
            (a.min(b), a.max(b))
        }
    }

    /// Name/value pairs, for payloads and replay output.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.layout
            .names()
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}
