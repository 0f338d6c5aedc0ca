//! Answers about one user that change nothing: what the lookup API, the batch `score` tool and
//! a right-of-access export show.
//!
//! A view scores the user at the engine clock *now* (not the last stored score) and asks the
//! policy what it would do now, with the same code a scoring that raises an alert runs
//! ([`super::alerting::advise`], [`crate::alert::decide`], the caps check), so a lookup never
//! disagrees with the alert the next scoring would publish. Reading a view never creates,
//! prunes or re-schedules state.

use serde::Serialize;

use super::alerting::{advise, model_inputs, reasons};
use super::Engine;
use crate::alert::{self, AlertDecision, AlertId, Reason};
use crate::features::{DayBucket, Stage, UserState};
use crate::policy::{ExperimentArm, RiskBand, ValueTier};
use crate::time::rfc3339;
use crate::Millis;

/// A user as the engine sees them at `as_of`: score, band, stage, tier, what the policy would
/// do, why, and the state behind it. Never carries event `props` (the engine does not keep
/// them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub user_id: String,
    /// The engine clock the view was computed at (RFC 3339).
    pub as_of: String,
    /// Absent while the engine runs without a model, as are the fields derived from a score.
    pub model_version: Option<String>,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub risk_band: Option<RiskBand>,
    /// The stage as of `as_of` (re-derived, so a silent user's stage is current).
    pub lifecycle_stage: Stage,
    pub value_tier: ValueTier,
    /// What the policy recommends for this user now, whether or not an alert would go out.
    pub recommended_action: Option<String>,
    pub channel: Option<String>,
    /// What a scoring now would decide: `alert`, `below_threshold`, `already_alerted`,
    /// `opted_out`, `cooldown`, `monthly_cap`, or `no_model`.
    pub decision: &'static str,
    pub experiment_arm: ExperimentArm,
    /// Top contributions to the score.
    pub reasons: Vec<Reason>,
    /// Every model input with its value at `as_of`.
    pub features: serde_json::Map<String, serde_json::Value>,
    pub last_activity_at: String,
    pub last_purchase_at: Option<String>,
    /// An alert was already sent for the current silence episode.
    pub alerted_this_episode: bool,
    /// The latest alert whose outcome is still being watched, if any.
    pub open_alert: Option<OpenAlert>,
    pub caps: CapsView,
    /// The user asked not to be contacted (still scored, never alerted).
    pub opted_out: bool,
}

/// An alert whose outcome window is still open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenAlert {
    pub alert_id: AlertId,
    pub alerted_at: String,
    /// A login or purchase until then counts as won back.
    pub watched_until: String,
    pub experiment_arm: ExperimentArm,
    pub model_version: String,
}

/// Frequency-cap bookkeeping as dates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapsView {
    /// Days (UTC dates) of the user's remembered alerts, newest first.
    pub alert_days: Vec<String>,
    /// Alerts in the last 30 days (the monthly cap counts these).
    pub alerts_last_30d: usize,
}

/// Everything churnguard stores about one user, for a right-of-access request. Duplicate
/// detection keeps only hashes of recent event ids (not listable, gone after the dedupe
/// horizon), and event `props` are never stored, so neither appears here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserExport {
    pub user_id: String,
    pub as_of: String,
    pub first_seen_at: Option<String>,
    pub last_activity_at: Option<String>,
    pub last_engaged_at: Option<String>,
    pub first_purchase_at: Option<String>,
    pub last_purchase_at: Option<String>,
    pub returned_at: Option<String>,
    /// `last_activity_at` of the silence episode already alerted on.
    pub alerted_episode_at: Option<String>,
    pub purchases_total: u32,
    pub spend_total: f64,
    pub lifecycle_stage: Stage,
    pub last_scored_on: Option<String>,
    pub opted_out: bool,
    pub experiment_arm: ExperimentArm,
    pub caps: CapsView,
    /// The per-day counters the sliding windows are computed from, oldest first.
    pub days: Vec<DayRecord>,
    pub open_alert: Option<OpenAlert>,
}

/// One stored day of one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRecord {
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    pub events: u32,
    pub spend: f64,
    pub page_views: u32,
    pub logins: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    pub refunds: u32,
    pub complaints: u32,
    pub coupon_redeems: u32,
    /// Reviews and shares.
    pub social: u32,
}

impl Engine {
    /// The user as of the engine clock, or `None` for a user the engine does not track.
    pub fn describe(&self, user_id: &str) -> Option<UserView> {
        let idx = self.find(user_id)?;
        let slot = self.slots[idx as usize].as_ref()?;
        let state = &slot.state;
        let at = self.clock.max(state.last_activity_ms());
        let policy = &self.config.policy;
        let totals = state.window_totals(at, self.layout);
        let stage = state.stage_with(&totals, &self.config.lifecycle, at);
        let features = state.features_with(&totals, at);
        let spend_total = features.get("spend_total").unwrap_or(0.0);
        let tier = policy.value_tier(spend_total, features.spend_90d_fixed());
        let mut view = UserView {
            user_id: user_id.to_string(),
            as_of: rfc3339(at),
            model_version: None,
            score: None,
            threshold: None,
            risk_band: None,
            lifecycle_stage: stage,
            value_tier: tier,
            recommended_action: None,
            channel: None,
            decision: "no_model",
            experiment_arm: policy.experiment_arm(user_id),
            reasons: Vec::new(),
            features: serde_json::Map::new(),
            last_activity_at: rfc3339(state.last_activity_ms()),
            last_purchase_at: set_time(
                state.last_purchase().is_set(),
                state.last_purchase().millis(),
            ),
            alerted_this_episode: state.alerted_this_episode(),
            open_alert: self.open_alert(idx),
            caps: caps_view(state, at),
            opted_out: state.opted_out(),
        };
        let Some(model) = self.model.as_ref() else {
            return Some(view);
        };
        let score = model.score(&features);
        let advice = advise(policy, state, stage, &features, score, at);
        let today = crate::features::window::day_of(at) as u16;
        let decision = match alert::decide(
            score,
            model.threshold(),
            state.alerted_this_episode(),
            state.opted_out(),
        ) {
            AlertDecision::Raise => {
                match state.caps().check(today, &policy.caps_for(advice.rule)) {
                    Ok(()) => "alert",
                    Err(reason) => reason.as_str(),
                }
            }
            AlertDecision::BelowThreshold => "below_threshold",
            AlertDecision::AlreadyAlerted => "already_alerted",
            AlertDecision::OptedOut => "opted_out",
            AlertDecision::Suppressed(reason) => reason.as_str(),
        };
        view.model_version = Some(model.version().to_string());
        view.score = Some(alert::round4(score));
        view.threshold = Some(model.threshold());
        view.risk_band = Some(advice.band);
        view.value_tier = advice.tier;
        view.recommended_action = Some(advice.rule.action.clone());
        view.channel = Some(advice.rule.channel.clone());
        view.decision = decision;
        view.reasons = reasons(&**model, &features, self.config.top_reasons);
        view.features = model_inputs(&**model, &features);
        Some(view)
    }

    /// Everything stored about the user, or `None` for a user the engine does not track.
    pub fn export(&self, user_id: &str) -> Option<UserExport> {
        let idx = self.find(user_id)?;
        let slot = self.slots[idx as usize].as_ref()?;
        let state = &slot.state;
        let at = self.clock.max(state.last_activity_ms());
        let time = |t: crate::features::Instant32| set_time(t.is_set(), t.millis());
        Some(UserExport {
            user_id: user_id.to_string(),
            as_of: rfc3339(at),
            first_seen_at: time(state.first_seen()),
            last_activity_at: time(state.last_activity()),
            last_engaged_at: time(state.last_engaged()),
            first_purchase_at: time(state.first_purchase()),
            last_purchase_at: time(state.last_purchase()),
            returned_at: time(state.returned_at()),
            alerted_episode_at: time(state.alerted_episode()),
            purchases_total: state.purchases_total(),
            spend_total: state.spend_total_cents() as f64 / 100.0,
            lifecycle_stage: state.stage(),
            last_scored_on: (state.last_scored_day() != 0)
                .then(|| date_of_day(state.last_scored_day())),
            opted_out: state.opted_out(),
            experiment_arm: self.config.policy.experiment_arm(user_id),
            caps: caps_view(state, at),
            days: day_records(state),
            open_alert: self.open_alert(idx),
        })
    }

    /// Every tracked user id (in slot order, which is stable while nothing is added).
    pub fn user_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.slots.iter().flatten().map(|s| &*s.user_id)
    }

    fn open_alert(&self, idx: u32) -> Option<OpenAlert> {
        self.outcomes.get(&idx).map(|p| OpenAlert {
            alert_id: p.alert_id,
            alerted_at: rfc3339(p.alerted_at),
            watched_until: rfc3339(p.window_end),
            experiment_arm: p.arm,
            model_version: p.model_version.to_string(),
        })
    }
}

fn set_time(is_set: bool, ts: Millis) -> Option<String> {
    is_set.then(|| rfc3339(ts))
}

fn date_of_day(day: u16) -> String {
    let ts = i64::from(day) * crate::DAY_MS;
    rfc3339(ts)[..10].to_string()
}

fn caps_view(state: &UserState, at: Millis) -> CapsView {
    let today = i64::from(crate::features::window::day_of(at));
    let window = i64::from(crate::features::caps::CAP_WINDOW_DAYS);
    let days: Vec<u16> = state.caps().alert_days().collect();
    CapsView {
        alerts_last_30d: days
            .iter()
            .filter(|&&d| today - i64::from(d) < window)
            .count(),
        alert_days: days.into_iter().map(date_of_day).collect(),
    }
}

/// The stored buckets as dated records, a day split over several buckets summed into one.
fn day_records(state: &UserState) -> Vec<DayRecord> {
    let mut buckets: Vec<DayBucket> = state.windows().buckets().collect();
    buckets.sort_by_key(|b| b.day);
    // (day, spend in cents, record): cents summed exactly, converted once.
    let mut days: Vec<(u16, u64, DayRecord)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        if days.last().map(|d| d.0) != Some(b.day) {
            let record = DayRecord {
                date: date_of_day(b.day),
                events: 0,
                spend: 0.0,
                page_views: 0,
                logins: 0,
                cart_adds: 0,
                purchases: 0,
                refunds: 0,
                complaints: 0,
                coupon_redeems: 0,
                social: 0,
            };
            days.push((b.day, 0, record));
        }
        let Some((_, cents, r)) = days.last_mut() else {
            continue;
        };
        *cents += u64::from(b.spend_cents);
        r.events += u32::from(b.events);
        r.page_views += u32::from(b.page_views);
        r.logins += u32::from(b.logins);
        r.cart_adds += u32::from(b.cart_adds);
        r.purchases += u32::from(b.purchases);
        r.refunds += u32::from(b.refunds);
        r.complaints += u32::from(b.complaints);
        r.coupon_redeems += u32::from(b.coupons);
        r.social += u32::from(b.social);
    }
    days.into_iter()
        .map(|(_, cents, mut r)| {
            r.spend = cents as f64 / 100.0;
            r
        })
        .collect()
}
