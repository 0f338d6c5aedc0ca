//! Which features a window set yields, under which names, in which order.
//!
//! The feature list follows the configured windows (`--windows`): with `7,30,90,180`,
//! `purchases_180d` exists; with `7,30` it does not. A layout is computed once per window set
//! and interned (see [`FeatureLayout::of`]), so feature vectors, models and engines refer to it
//! by a `&'static` reference: names stay `&'static str` for reasons in alerts, and comparing two
//! layouts is comparing two pointers.
//!
//! Which counter gets which window (`N` = each configured window, in order):
//!
//! | counters | windows |
//! |---|---|
//! | events, purchases, spend | every window |
//! | logins, page views, cart adds | the window nearest 30 days (the shorter on a tie) |
//! | refunds, complaints, coupons, social | the longest window |
//! | active days | every window but the shortest (the only one, if just one) |
//!
//! then the nine fixed features (recencies, tenure, lifetime totals, trends, purchase cycle).
//! With the default windows this is exactly the 27-feature list the models in `models/` were
//! trained on, in the same order. Each windowed value depends on its own horizon only, so
//! `purchases_30d` means the same under every window set that has it, and a model whose
//! features all exist under the engine's windows scores identically there. The trends keep
//! their fixed definition (the last 30 days against the monthly rate of the 60 before), read
//! from 30- and 90-day sums that are computed whatever the windows.

use std::sync::Mutex;

use super::window::{
    WindowTotals, Windows, MAX_PLAN, MAX_WINDOWS, TREND_BASE_DAYS, TREND_RECENT_DAYS,
};

/// Fixed features, after the windowed ones, in this order.
pub const FIXED_FEATURES: [&str; 9] = [
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

/// Most features of any layout: 3 counters on every window, 1 on the monthly one, 4 on the
/// longest, active days on all but one, plus the fixed ones.
pub const MAX_FEATURES: usize = 3 * MAX_WINDOWS + 3 + 4 + (MAX_WINDOWS - 1) + FIXED_FEATURES.len();

/// Number of per-window counters.
const COUNTERS: usize = Counter::ALL.len();

/// Size of the value table a vector is gathered from: every counter of every plan window, then
/// the fixed features.
const TABLE: usize = MAX_PLAN * COUNTERS + FIXED_FEATURES.len();
const _: () = assert!(TABLE <= u8::MAX as usize + 1, "gather indices are bytes");

/// A per-window counter, and the name stem of its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Events,
    Logins,
    PageViews,
    CartAdds,
    Purchases,
    Spend,
    Refunds,
    Complaints,
    Coupons,
    Social,
    ActiveDays,
}

impl Counter {
    /// Every counter, in feature order within a layout.
    pub const ALL: [Counter; 11] = [
        Counter::Events,
        Counter::Logins,
        Counter::PageViews,
        Counter::CartAdds,
        Counter::Purchases,
        Counter::Spend,
        Counter::Refunds,
        Counter::Complaints,
        Counter::Coupons,
        Counter::Social,
        Counter::ActiveDays,
    ];

    /// Name stem: the feature is `{stem}_{days}d`.
    pub fn stem(self) -> &'static str {
        match self {
            Counter::Events => "events",
            Counter::Logins => "logins",
            Counter::PageViews => "page_views",
            Counter::CartAdds => "cart_adds",
            Counter::Purchases => "purchases",
            Counter::Spend => "spend",
            Counter::Refunds => "refunds",
            Counter::Complaints => "complaints",
            Counter::Coupons => "coupons",
            Counter::Social => "social",
            Counter::ActiveDays => "active_days",
        }
    }

    /// Every counter's value in a window, in [`Counter::ALL`] order (spend in currency units,
    /// as the models see it). Straight-line, so filling a feature vector is a gather from these
    /// rows rather than a dispatch per feature.
    fn values(t: &WindowTotals) -> [f64; COUNTERS] {
        [
            f64::from(t.events),
            f64::from(t.logins),
            f64::from(t.page_views),
            f64::from(t.cart_adds),
            f64::from(t.purchases),
            t.spend_cents as f64 / 100.0,
            f64::from(t.refunds),
            f64::from(t.complaints),
            f64::from(t.coupons),
            f64::from(t.social),
            f64::from(t.active_days),
        ]
    }

    /// Positions (in the window set) of the windows this counter is reported on; see the
    /// module docs for why each counter gets the windows it does.
    fn windows(self, w: &Windows) -> impl Iterator<Item = usize> + '_ {
        let days = w.days();
        let n = days.len();
        let monthly = (0..n)
            .min_by_key(|&i| (days[i].abs_diff(TREND_RECENT_DAYS), days[i]))
            .unwrap_or(0);
        (0..n).filter(move |&i| match self {
            Counter::Events | Counter::Purchases | Counter::Spend => true,
            Counter::Logins | Counter::PageViews | Counter::CartAdds => i == monthly,
            Counter::Refunds | Counter::Complaints | Counter::Coupons | Counter::Social => {
                i + 1 == n
            }
            Counter::ActiveDays => i > 0 || n == 1,
        })
    }

    /// The counter and horizon a windowed feature name stands for (`purchases_180d` →
    /// purchases, 180), whether or not a given layout computes it.
    pub fn parse_name(name: &str) -> Option<(Counter, u16)> {
        let (stem, days) = name.strip_suffix('d')?.rsplit_once('_')?;
        let counter = Counter::ALL.into_iter().find(|c| c.stem() == stem)?;
        Some((counter, days.parse().ok()?))
    }
}

/// The features of one window set: names, order and how to compute each from the window sums.
#[derive(Debug, PartialEq, Eq)]
pub struct FeatureLayout {
    windows: Windows,
    /// Horizons summed per scoring, ascending: the configured windows and the fixed trend ones.
    plan: [u16; MAX_PLAN],
    plan_len: u8,
    /// Plan index of the fixed 30-day and 90-day windows.
    recent_at: u8,
    base_at: u8,
    names: Vec<&'static str>,
    /// Per feature, its index in the value table (see [`FeatureLayout::fill`]).
    gather: Vec<u8>,
    /// Indices of the two trend features, which [`super::FeatureVector::silent_range`] bounds
    /// from their parts.
    activity_trend: usize,
    spend_trend: usize,
}

/// Layouts built so far, so each window set has one `&'static` layout.
static LAYOUTS: Mutex<Vec<&'static FeatureLayout>> = Mutex::new(Vec::new());

impl FeatureLayout {
    /// The layout of `windows`, built on first use and shared afterwards. Interned rather than
    /// owned: a process uses one or a few window sets, so the leak is a few hundred bytes per
    /// distinct set, and everything holding a layout is spared a reference count.
    pub fn of(windows: Windows) -> &'static FeatureLayout {
        let mut all = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = all.iter().find(|l| l.windows == windows) {
            return found;
        }
        let layout: &'static FeatureLayout = Box::leak(Box::new(FeatureLayout::build(windows)));
        all.push(layout);
        layout
    }

    /// The layout of the default windows (7, 30, 90 days).
    pub fn default_layout() -> &'static FeatureLayout {
        FeatureLayout::of(Windows::default())
    }

    fn build(windows: Windows) -> FeatureLayout {
        let mut plan: Vec<u16> = windows.days().to_vec();
        plan.extend([TREND_RECENT_DAYS, TREND_BASE_DAYS]);
        plan.sort_unstable();
        plan.dedup();
        let at = |d: u16| plan.iter().position(|p| *p == d).unwrap_or(0) as u8;
        let mut names = Vec::with_capacity(MAX_FEATURES);
        let mut gather = Vec::with_capacity(MAX_FEATURES);
        for (c, counter) in Counter::ALL.into_iter().enumerate() {
            for i in counter.windows(&windows) {
                let days = windows.days()[i];
                let name: &'static str =
                    Box::leak(format!("{}_{days}d", counter.stem()).into_boxed_str());
                names.push(name);
                gather.push(at(days) * COUNTERS as u8 + c as u8);
            }
        }
        for (i, name) in FIXED_FEATURES.iter().enumerate() {
            names.push(name);
            gather.push((MAX_PLAN * COUNTERS + i) as u8);
        }
        let position = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0);
        let (activity_trend, spend_trend) = (position("activity_trend"), position("spend_trend"));
        let mut fixed_plan = [0u16; MAX_PLAN];
        fixed_plan[..plan.len()].copy_from_slice(&plan);
        FeatureLayout {
            windows,
            recent_at: at(TREND_RECENT_DAYS),
            base_at: at(TREND_BASE_DAYS),
            plan: fixed_plan,
            plan_len: plan.len() as u8,
            names,
            gather,
            activity_trend,
            spend_trend,
        }
    }

    /// The window set this layout was built from.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// Feature names, in vector order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no features (never: the fixed ones are always there).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Index of `activity_trend`.
    pub fn activity_trend(&self) -> usize {
        self.activity_trend
    }

    /// Index of `spend_trend`.
    pub fn spend_trend(&self) -> usize {
        self.spend_trend
    }

    /// Index of a feature by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }

    /// Horizons summed per scoring, ascending (see [`super::DayWindows::totals_ascending`]).
    pub fn plan(&self) -> &[u16] {
        &self.plan[..usize::from(self.plan_len)]
    }

    /// Sums of the fixed 30-day window in a plan's totals.
    pub fn recent(&self, totals: &[WindowTotals; MAX_PLAN]) -> WindowTotals {
        totals[usize::from(self.recent_at)]
    }

    /// Sums of the fixed 90-day window in a plan's totals.
    pub fn base(&self, totals: &[WindowTotals; MAX_PLAN]) -> WindowTotals {
        totals[usize::from(self.base_at)]
    }

    /// Writes the windowed features from a plan's totals and the fixed ones from `fixed`
    /// (in [`FIXED_FEATURES`] order) into `out`, in layout order.
    pub(super) fn fill(
        &self,
        totals: &[WindowTotals; MAX_PLAN],
        fixed: &[f64; FIXED_FEATURES.len()],
        out: &mut [f64; MAX_FEATURES],
    ) {
        let mut table = [0.0; TABLE];
        for (row, t) in table
            .chunks_exact_mut(COUNTERS)
            .zip(&totals[..usize::from(self.plan_len)])
        {
            row.copy_from_slice(&Counter::values(t));
        }
        table[MAX_PLAN * COUNTERS..].copy_from_slice(fixed);
        for (slot, &at) in out.iter_mut().zip(&self.gather) {
            *slot = table[usize::from(at)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list the shipped models were trained on: the default windows must reproduce it.
    const DEFAULT_NAMES: [&str; 27] = [
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

    fn windows(text: &str) -> Windows {
        text.parse().unwrap()
    }

    #[test]
    fn default_windows_give_the_original_feature_list() {
        assert_eq!(FeatureLayout::default_layout().names(), DEFAULT_NAMES);
        assert_eq!(FeatureLayout::default_layout().plan(), [7, 30, 90]);
    }

    #[test]
    fn names_follow_the_windows() {
        let l = FeatureLayout::of(windows("7,30,90,180"));
        assert_eq!(l.len(), MAX_FEATURES);
        for name in [
            "events_180d",
            "purchases_180d",
            "spend_180d",
            "refunds_180d",
            "active_days_180d",
            "logins_30d",
        ] {
            assert!(l.index_of(name).is_some(), "{name}");
        }
        assert_eq!(l.index_of("refunds_90d"), None);
        assert_eq!(l.plan(), [7, 30, 90, 180]);

        let short = FeatureLayout::of(windows("14"));
        assert_eq!(
            &short.names()[..short.len() - FIXED_FEATURES.len()],
            [
                "events_14d",
                "logins_14d",
                "page_views_14d",
                "cart_adds_14d",
                "purchases_14d",
                "spend_14d",
                "refunds_14d",
                "complaints_14d",
                "coupons_14d",
                "social_14d",
                "active_days_14d",
            ]
        );
        // The trend windows are summed even when not configured.
        assert_eq!(short.plan(), [14, 30, 90]);
        // Ties for the monthly window go to the shorter one.
        let tie = FeatureLayout::of(windows("20,40"));
        assert!(tie.index_of("logins_20d").is_some() && tie.index_of("logins_40d").is_none());
    }

    #[test]
    fn layouts_are_interned() {
        let a = FeatureLayout::of(windows("7,30,90,180"));
        let b = FeatureLayout::of(windows("7, 30, 90, 180"));
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, FeatureLayout::default_layout()));
    }

    #[test]
    fn feature_names_parse_back() {
        assert_eq!(
            Counter::parse_name("page_views_180d"),
            Some((Counter::PageViews, 180))
        );
        assert_eq!(Counter::parse_name("tenure_days"), None);
        assert_eq!(Counter::parse_name("bogus_7d"), None);
    }
}
