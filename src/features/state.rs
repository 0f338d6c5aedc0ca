//! Everything churnguard remembers about one user.

use super::caps::CapState;
use super::layout::{FeatureLayout, FIXED_FEATURES};
use super::lifecycle::{self, LifecycleConfig, Stage, StageInputs};
use super::window::{day_of, to_cents, DayWindows, WindowTotals, MAX_PLAN};
use super::{FeatureVector, TrendParts, DEFAULT_CYCLE_DAYS, MAX_FEATURES};
use crate::event::{Event, EventKind};
use crate::{Millis, DAY_MS};

/// Sentinel for "never happened" timestamps in the millisecond API.
const NEVER: Millis = Millis::MIN;

/// An instant in 4 bytes: whole seconds since the Unix epoch, 0 = never. Sub-second precision
/// means nothing to day-scale features, and seven timestamps per user are a large share of the
/// per-user budget (8 bytes each as milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant32(u32);

impl Instant32 {
    /// Never happened.
    pub const NEVER: Instant32 = Instant32(0);

    /// The second containing `ts` (second 1 for the first second of 1970: 0 means never). The
    /// engine refuses events outside [`crate::event::EARLIEST_TS`]..[`crate::event::END_TS`], so
    /// the clamp below is never reached from an event.
    pub fn from_millis(ts: Millis) -> Instant32 {
        Instant32(
            u32::try_from(ts.div_euclid(1000))
                .unwrap_or(if ts < 0 { 1 } else { u32::MAX })
                .max(1),
        )
    }

    /// Milliseconds since the epoch, or `Millis::MIN` for never.
    pub fn millis(self) -> Millis {
        if self.0 == 0 {
            NEVER
        } else {
            Millis::from(self.0) * 1000
        }
    }

    /// Whether it happened.
    pub fn is_set(self) -> bool {
        self.0 != 0
    }

    /// The earlier of two instants, treating never as absent.
    fn min_set(self, other: Instant32) -> Instant32 {
        if self.is_set() {
            self.min(other)
        } else {
            other
        }
    }

    /// Raw seconds (persistence).
    pub fn secs(self) -> u32 {
        self.0
    }

    /// From raw seconds (persistence).
    pub fn from_secs(secs: u32) -> Instant32 {
        Instant32(secs)
    }
}

/// A user's window sums at one instant, for one layout: computed once per scoring and read by
/// the lifecycle stage, the features and the scheduler. Inline, so computing it never allocates.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// Sums per horizon of [`FeatureLayout::plan`].
    sums: [WindowTotals; MAX_PLAN],
    layout: &'static FeatureLayout,
}

impl Totals {
    /// Sums of the fixed 30-day window.
    pub fn recent(&self) -> WindowTotals {
        self.layout.recent(&self.sums)
    }

    /// Sums of the fixed 90-day window.
    pub fn base(&self) -> WindowTotals {
        self.layout.base(&self.sums)
    }

    /// The layout these sums were computed for.
    pub fn layout(&self) -> &'static FeatureLayout {
        self.layout
    }
}

/// Per-user state: recent day buckets plus lifetime aggregates that no window can give
/// (tenure, total spend, purchase cycle) and the alert bookkeeping for the current episode.
/// 96 bytes inline plus the packed days (see [`DayWindows`]).
///
/// Fields are read through accessors and changed only through methods that keep them
/// consistent: events through [`UserState::apply`], the engine's bookkeeping through
/// [`UserState::note_return`], [`UserState::set_stage`], [`UserState::mark_scored`] and
/// [`UserState::record_alert`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    pub(super) windows: DayWindows,
    pub(super) first_seen: Instant32,
    pub(super) last_activity: Instant32,
    pub(super) first_purchase: Instant32,
    pub(super) last_purchase: Instant32,
    /// Last login or purchase: the engagement whose absence defines churn.
    pub(super) last_engaged: Instant32,
    /// Latest return after an at-risk silence (set by the engine, which knows the threshold).
    pub(super) returned_at: Instant32,
    /// `last_activity` of the silence episode already alerted on, or never. A new activity
    /// moves `last_activity` on, which opens a new episode and re-arms the alert.
    pub(super) alerted_episode: Instant32,
    pub(super) purchases_total: u32,
    pub(super) spend_total_cents: u64,
    /// The user asked not to be contacted: still scored, never alerted.
    pub(super) opted_out: bool,
    /// Lifecycle stage last reported, to detect transitions.
    pub(super) stage: Stage,
    /// Day (since the epoch) of the last scoring: events score a user at most once a day.
    pub(super) last_scored_day: u16,
    /// Days of the user's recent alerts, for frequency caps (durable with the rest).
    pub(super) caps: CapState,
    /// What the engine last wrote to the churn-risk table for this user (see
    /// `crate::engine::table`), 0 = nothing. Not part of the changelog record: it lives in
    /// the padding the other fields leave, so it costs no memory.
    pub(super) table_mark: u16,
}

// The churn-risk table's marker must stay in the padding: every tracked user pays for this.
const _: () = assert!(std::mem::size_of::<UserState>() <= 96);

impl UserState {
    /// Folds an accepted event into the state. Order of arrival does not matter.
    pub fn apply(&mut self, event: &Event) {
        match event.kind {
            EventKind::OptOut => {
                self.opted_out = true;
                return;
            }
            EventKind::Erase => return, // the engine drops the whole state
            _ => {}
        }
        let at = Instant32::from_millis(event.ts);
        self.windows.add(event);
        self.first_seen = self.first_seen.min_set(at);
        self.last_activity = self.last_activity.max(at);
        if matches!(event.kind, EventKind::Login | EventKind::Purchase) {
            self.last_engaged = self.last_engaged.max(at);
        }
        if event.kind == EventKind::Purchase {
            self.purchases_total = self.purchases_total.saturating_add(1);
            self.spend_total_cents = self
                .spend_total_cents
                .saturating_add(u64::from(to_cents(event.amount)));
            self.first_purchase = self.first_purchase.min_set(at);
            self.last_purchase = self.last_purchase.max(at);
        }
    }

    /// The user's day buckets.
    pub fn windows(&self) -> &DayWindows {
        &self.windows
    }

    /// First event of any kind.
    pub fn first_seen(&self) -> Instant32 {
        self.first_seen
    }

    /// Latest event of any kind.
    pub fn last_activity(&self) -> Instant32 {
        self.last_activity
    }

    /// Latest purchase.
    pub fn last_purchase(&self) -> Instant32 {
        self.last_purchase
    }

    /// First purchase.
    pub fn first_purchase(&self) -> Instant32 {
        self.first_purchase
    }

    /// Latest login or purchase.
    pub fn last_engaged(&self) -> Instant32 {
        self.last_engaged
    }

    /// Latest return after an at-risk silence.
    pub fn returned_at(&self) -> Instant32 {
        self.returned_at
    }

    /// `last_activity` of the silence episode already alerted on, or never.
    pub fn alerted_episode(&self) -> Instant32 {
        self.alerted_episode
    }

    /// Purchases over the user's lifetime.
    pub fn purchases_total(&self) -> u32 {
        self.purchases_total
    }

    /// Spend over the user's lifetime, in cents.
    pub fn spend_total_cents(&self) -> u64 {
        self.spend_total_cents
    }

    /// Whether the user asked not to be contacted.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    /// Lifecycle stage last reported.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Day (since the epoch) of the last scoring.
    pub fn last_scored_day(&self) -> u16 {
        self.last_scored_day
    }

    /// Days of the user's recent alerts.
    pub fn caps(&self) -> &CapState {
        &self.caps
    }

    /// A login or purchase at `ts` ended an at-risk silence (the engine knows the threshold):
    /// remembered as the latest return, never moving it back.
    pub fn note_return(&mut self, ts: Millis) {
        self.returned_at = self.returned_at.max(Instant32::from_millis(ts));
    }

    /// Records the stage now reported, returning the one before.
    pub fn set_stage(&mut self, stage: Stage) -> Stage {
        std::mem::replace(&mut self.stage, stage)
    }

    /// The engine's marker of the user's last churn-risk table row (0 = none written).
    pub fn table_mark(&self) -> u16 {
        self.table_mark
    }

    /// Records the marker of the row just written to the churn-risk table.
    pub fn set_table_mark(&mut self, mark: u16) {
        self.table_mark = mark;
    }

    /// Records that the user was scored on `day`.
    pub fn mark_scored(&mut self, day: u16) {
        self.last_scored_day = day;
    }

    /// Records an alert sent on `today`: it counts against the caps and closes the current
    /// silence episode (no other alert until the user acts again).
    pub fn record_alert(&mut self, today: u16) {
        self.caps.record(today);
        self.alerted_episode = self.last_activity;
    }

    /// Latest activity in milliseconds (`Millis::MIN` if none).
    pub fn last_activity_ms(&self) -> Millis {
        self.last_activity.millis()
    }

    /// Whether the user has any activity at all (an opt-out alone creates no activity).
    pub fn has_activity(&self) -> bool {
        self.last_activity.is_set()
    }

    /// Whether an alert was already sent for the current silence episode.
    pub fn alerted_this_episode(&self) -> bool {
        self.has_activity() && self.alerted_episode == self.last_activity
    }

    /// Start of the current silence for lifecycle purposes: the last login or purchase, or first
    /// sight for a user who never did either.
    pub fn silence_start(&self) -> Millis {
        if self.last_engaged.is_set() {
            self.last_engaged.millis()
        } else {
            self.first_seen.millis()
        }
    }

    /// Sums of every window of `layout` ending at `now`'s day, in one pass over the buckets:
    /// the lifecycle stage and the features both read them, so a scoring decodes the user's days
    /// once.
    pub fn window_totals(&self, now: Millis, layout: &'static FeatureLayout) -> Totals {
        Totals {
            sums: self.windows.totals_ascending(day_of(now), layout.plan()),
            layout,
        }
    }

    /// The lifecycle stage as of `now` (its windows are fixed, so any layout gives the same).
    pub fn stage_at(&self, cfg: &LifecycleConfig, now: Millis) -> Stage {
        self.stage_with(
            &self.window_totals(now, FeatureLayout::default_layout()),
            cfg,
            now,
        )
    }

    /// The lifecycle stage as of `now`, given [`Self::window_totals`] at `now`.
    pub fn stage_with(&self, totals: &Totals, cfg: &LifecycleConfig, now: Millis) -> Stage {
        let (w30, w90) = (totals.recent(), totals.base());
        // A user whose only event so far is an opt-out has no first-seen time (`NEVER`, the
        // smallest instant): zero days, not an overflowing subtraction.
        let days = |t: Millis| (now.checked_sub(t).map_or(0, |d| d.max(0)) as f64) / DAY_MS as f64;
        lifecycle::stage(
            cfg,
            &StageInputs {
                days_silent: days(self.silence_start()),
                tenure_days: days(self.first_seen.millis()),
                events_30d: f64::from(w30.events),
                events_prior_60d: f64::from(w90.events - w30.events),
                days_since_return: self
                    .returned_at
                    .is_set()
                    .then(|| days(self.returned_at.millis())),
            },
        )
    }

    /// The user's own purchase cycle in days, with at least two purchases.
    pub fn purchase_cycle_days(&self) -> Option<f64> {
        (self.purchases_total >= 2).then(|| {
            ((self.last_purchase.millis() - self.first_purchase.millis()) as f64 / DAY_MS as f64)
                / f64::from(self.purchases_total - 1)
        })
    }

    /// Drops buckets no window can reach any more: those older than `kept_days`
    /// ([`super::Windows::kept_days`]).
    pub fn prune(&mut self, now: Millis, kept_days: u32) {
        self.windows.prune(day_of(now), kept_days);
    }

    /// Features of `layout` as of `now`. Windows end at `now`'s day; recencies are in fractional
    /// days.
    pub fn features(&self, now: Millis, layout: &'static FeatureLayout) -> FeatureVector {
        self.features_with(&self.window_totals(now, layout), now)
    }

    /// Features as of `now`, given [`Self::window_totals`] at `now` (which fix the layout).
    pub fn features_with(&self, totals: &Totals, now: Millis) -> FeatureVector {
        let (w30, w90): (WindowTotals, WindowTotals) = (totals.recent(), totals.base());
        let days_since =
            |t: Millis| (now.checked_sub(t).map_or(0, |d| d.max(0)) as f64) / DAY_MS as f64;
        let tenure = if self.has_activity() {
            days_since(self.first_seen.millis())
        } else {
            0.0
        };
        let since_activity = if self.has_activity() {
            days_since(self.last_activity.millis())
        } else {
            0.0
        };
        // No purchase yet: count from first sight, so a browser who never buys ages like a
        // buyer who stopped (`purchases_total` = 0 tells the model which one it is).
        let since_purchase = if self.last_purchase.is_set() {
            days_since(self.last_purchase.millis())
        } else {
            tenure
        };
        let cycle = self.purchase_cycle_days().unwrap_or(0.0);
        let cycle_for_ratio = if cycle > 0.0 {
            cycle.max(1.0)
        } else {
            DEFAULT_CYCLE_DAYS
        };
        let cents = |c: u64| c as f64 / 100.0;
        // 30-day level against the monthly rate of the 60 days before it, smoothed by +1 so a
        // user with no history trends at 1.0 rather than dividing by zero.
        let prior_events = f64::from(w90.events - w30.events) / 2.0;
        let prior_spend = cents(w90.spend_cents - w30.spend_cents) / 2.0;
        let fixed: [f64; FIXED_FEATURES.len()] = [
            since_activity,
            since_purchase,
            tenure,
            f64::from(self.purchases_total),
            cents(self.spend_total_cents),
            (f64::from(w30.events) + 1.0) / (prior_events + 1.0),
            (cents(w30.spend_cents) + 1.0) / (prior_spend + 1.0),
            cycle,
            since_purchase / cycle_for_ratio,
        ];
        let mut values = [0.0; MAX_FEATURES];
        totals.layout.fill(&totals.sums, &fixed, &mut values);
        let parts = TrendParts {
            events_30d: f64::from(w30.events),
            events_90d: f64::from(w90.events),
            spend_30d: cents(w30.spend_cents),
            spend_90d: cents(w90.spend_cents),
        };
        FeatureVector::from_parts(values, totals.layout, parts)
    }

    /// Approximate bytes this state occupies (struct plus bucket heap), for the users gauge and
    /// memory benchmarks.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.windows.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts_days: f64, kind: EventKind, amount: f64) -> Event {
        Event {
            event_id: String::new(),
            user_id: "u".into(),
            kind,
            ts: (ts_days * DAY_MS as f64) as Millis,
            amount,
        }
    }

    #[test]
    fn recency_tenure_and_cycle() {
        let mut s = UserState::default();
        for d in [100.0, 110.0, 120.0] {
            s.apply(&ev(d, EventKind::Purchase, 10.0));
        }
        s.apply(&ev(125.0, EventKind::PageView, 0.0));
        let f = s.features(
            (130.0 * DAY_MS as f64) as Millis,
            FeatureLayout::default_layout(),
        );
        assert_eq!(f.get("tenure_days"), Some(30.0));
        assert_eq!(f.get("days_since_last_activity"), Some(5.0));
        assert_eq!(f.get("days_since_last_purchase"), Some(10.0));
        assert_eq!(f.get("mean_interpurchase_days"), Some(10.0));
        assert_eq!(f.get("recency_vs_cycle"), Some(1.0));
        assert_eq!(f.get("purchases_30d"), Some(2.0)); // days 101..=130: the day-100 purchase is out
        assert_eq!(f.get("purchases_90d"), Some(3.0));
        assert_eq!(f.get("spend_total"), Some(30.0));
        assert_eq!(f.get("events_7d"), Some(1.0));
    }

    #[test]
    fn a_silent_user_ages_without_new_events() {
        let mut s = UserState::default();
        s.apply(&ev(10.0, EventKind::Login, 0.0));
        let early = s.features(
            (11.0 * DAY_MS as f64) as Millis,
            FeatureLayout::default_layout(),
        );
        let late = s.features(
            (50.0 * DAY_MS as f64) as Millis,
            FeatureLayout::default_layout(),
        );
        assert_eq!(early.get("events_7d"), Some(1.0));
        assert_eq!(late.get("events_7d"), Some(0.0));
        assert_eq!(late.get("events_90d"), Some(1.0));
        assert!(late.get("days_since_last_activity").unwrap() > 39.0);
    }

    #[test]
    fn opt_out_is_remembered_but_is_not_activity() {
        let mut s = UserState::default();
        s.apply(&ev(1.0, EventKind::OptOut, 0.0));
        assert!(s.opted_out);
        assert!(!s.has_activity());
        assert_eq!(s.windows.len(), 0);
    }

    #[test]
    fn alert_episode_rearms_on_new_activity() {
        let mut s = UserState::default();
        s.apply(&ev(1.0, EventKind::Login, 0.0));
        s.alerted_episode = s.last_activity;
        assert!(s.alerted_this_episode());
        s.apply(&ev(2.0, EventKind::Login, 0.0));
        assert!(!s.alerted_this_episode());
    }
}
