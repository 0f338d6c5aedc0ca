//! Per-user behavioural state and the feature vector derived from it.
//!
//! State is what is kept per user ([`UserState`]); features are what is computed from it at a
//! given instant ([`FeatureVector`]). Keeping them apart means the clock decides what a window
//! contains: the same state yields different 7-day counts a week later, which is exactly what
//! scoring a silent user needs.

pub mod codec;
pub mod lifecycle;
mod state;
pub mod window;

pub use lifecycle::{LifecycleConfig, Stage};
pub use state::{Instant32, UserState};
pub use window::{DayBucket, DayWindows, WindowTotals};

/// Names of the features, in the order of [`FeatureVector::values`]. A model artifact lists the
/// names it was trained on; the service refuses an artifact naming a feature not listed here.
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "events_7d",
    "events_30d",
    "events_90d",
    "logins_30d",
    "page_views_30d",
    "cart_adds_30d",
    "purchases_7d",
    "purchases_30d",
    "purchases_90d",
    "spend_7d",
    "spend_30d",
    "spend_90d",
    "refunds_90d",
    "complaints_90d",
    "coupons_90d",
    "social_90d",
    "active_days_30d",
    "active_days_90d",
    "days_since_last_activity",
    "days_since_last_purchase",
    "tenure_days",
    "purchases_total",
    "spend_total",
    "activity_trend",
    "spend_trend",
    "mean_interpurchase_days",
    "recency_vs_cycle",
];

const IDX_EVENTS_30D: usize = 1;
const IDX_EVENTS_90D: usize = 2;
const IDX_SPEND_30D: usize = 10;
const IDX_SPEND_90D: usize = 11;
const _: () = {
    assert!(matches!(
        FEATURE_NAMES[IDX_EVENTS_30D].as_bytes(),
        b"events_30d"
    ));
    assert!(matches!(
        FEATURE_NAMES[IDX_EVENTS_90D].as_bytes(),
        b"events_90d"
    ));
    assert!(matches!(
        FEATURE_NAMES[IDX_SPEND_30D].as_bytes(),
        b"spend_30d"
    ));
    assert!(matches!(
        FEATURE_NAMES[IDX_SPEND_90D].as_bytes(),
        b"spend_90d"
    ));
};

/// Number of features in a [`FeatureVector`].
pub const NUM_FEATURES: usize = 27;

/// Purchase cycle assumed for users with fewer than two purchases, in days, so that
/// `recency_vs_cycle` is defined for everyone (documented in the README's feature table).
pub const DEFAULT_CYCLE_DAYS: f64 = 30.0;

/// A user's features at one instant, in [`FEATURE_NAMES`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureVector {
    pub values: [f64; NUM_FEATURES],
}

impl FeatureVector {
    /// Index of a feature by name.
    pub fn index_of(name: &str) -> Option<usize> {
        FEATURE_NAMES.iter().position(|n| *n == name)
    }

    /// Value of a feature by name (tests and explanations; the hot path uses indices).
    pub fn get(&self, name: &str) -> Option<f64> {
        Self::index_of(name).map(|i| self.values[i])
    }

    /// The range feature `i` can take at any instant between two snapshots `start` and `end`
    /// (later) of a user who sends no event in between. Windows only lose days, recencies and
    /// tenure only grow and lifetime totals stay put, so for those the two snapshots bound every
    /// value in between; the trends move both ways as days cross from the 30-day window into the
    /// prior 60 days and out, so they get bounds from their parts. Lets the engine prove that a
    /// silent user cannot reach the alert threshold before some instant without scoring every
    /// day on the way.
    pub fn silent_range(i: usize, start: &FeatureVector, end: &FeatureVector) -> (f64, f64) {
        let trend = |recent: usize, long: usize| {
            // (recent + 1) / (prior / 2 + 1), recent in [end, start], prior in [0, long(start) − recent(end)].
            let prior_max = (start.values[long] - end.values[recent]).max(0.0);
            (
                (end.values[recent] + 1.0) / (prior_max / 2.0 + 1.0),
                start.values[recent] + 1.0,
            )
        };
        match FEATURE_NAMES[i] {
            "activity_trend" => trend(IDX_EVENTS_30D, IDX_EVENTS_90D),
            "spend_trend" => trend(IDX_SPEND_30D, IDX_SPEND_90D),
            _ => {
                let (a, b) = (start.values[i], end.values[i]);
                (a.min(b), a.max(b))
            }
        }
    }

    /// Name/value pairs, for payloads and replay output.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURE_NAMES
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}
