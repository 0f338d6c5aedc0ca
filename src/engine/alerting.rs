//! Raising an alert: what the policy makes of the user at that moment, and the payload built
//! from it. Kept apart from the engine's state handling so the payload is read in one place.

use crate::alert::{self, AlertId, Reason, Trigger, WinbackAlert, ALERT_SCHEMA_VERSION};
use crate::features::{FeatureVector, UserState};
use crate::policy::{ActionRule, Policy, RiskBand, Segment, ValueTier};
use crate::scoring::Scorer;
use crate::{Millis, DAY_MS};

/// What the policy makes of a user about to be alerted.
pub(super) struct Advice<'p> {
    pub(super) band: RiskBand,
    pub(super) tier: ValueTier,
    pub(super) rule: &'p ActionRule,
}

/// `stage` is the user's stage as of `now` (a lookup re-derives it without recording it).
pub(super) fn advise<'p>(
    policy: &'p Policy,
    state: &UserState,
    stage: crate::features::Stage,
    features: &FeatureVector,
    score: f64,
    now: Millis,
) -> Advice<'p> {
    let [recent] = state.windows().totals_nested(
        crate::features::window::day_of(now),
        [policy.recent_complaint_days()],
    );
    let segment = Segment {
        stage,
        tier: policy.value_tier(
            features.get("spend_total").unwrap_or(0.0),
            features.spend_90d_fixed(),
        ),
        // Banded as published (rounded), so the payload's score and band always agree.
        band: policy.risk_band(alert::round4(score)),
        recent_complaint: recent.complaints > 0,
        tenure_days: features.get("tenure_days").unwrap_or(0.0),
    };
    Advice {
        band: segment.band,
        tier: segment.tier,
        rule: policy.decide_action(&segment),
    }
}

/// Everything an alert payload is made of, at the moment it is raised.
pub(super) struct AlertInputs<'a> {
    pub(super) user_id: &'a str,
    pub(super) state: &'a UserState,
    pub(super) model: &'a dyn Scorer,
    pub(super) features: &'a FeatureVector,
    pub(super) score: f64,
    pub(super) now: Millis,
    pub(super) trigger: Trigger,
    /// How many top reasons the payload carries.
    pub(super) top_reasons: usize,
    pub(super) policy: &'a Policy,
    pub(super) advice: &'a Advice<'a>,
}

pub(super) fn build_alert(inputs: &AlertInputs<'_>) -> WinbackAlert {
    let &AlertInputs {
        user_id,
        state,
        model,
        features,
        score,
        now,
        trigger,
        top_reasons,
        policy,
        advice,
    } = inputs;
    let used = model_inputs(model, features);
    WinbackAlert {
        schema_version: ALERT_SCHEMA_VERSION,
        alert_id: AlertId::derive(user_id, model.version(), state.last_activity_ms()),
        user_id: user_id.to_string(),
        ts: alert::rfc3339(now),
        score: alert::round4(score),
        threshold: model.threshold(),
        model_version: model.version().to_string(),
        trigger,
        last_activity_at: alert::rfc3339(state.last_activity_ms()),
        lifecycle_state: state.stage(),
        risk_band: advice.band,
        value_tier: advice.tier,
        recommended_action: advice.rule.action.clone(),
        channel: advice.rule.channel.clone(),
        experiment_arm: policy.experiment_arm(user_id),
        expires_at: alert::rfc3339(now + i64::from(policy.expires_after_days()) * DAY_MS),
        reasons: reasons(model, features, top_reasons),
        features: used,
    }
}

/// Every input of `model` with its value, as an alert and a lookup carry them.
pub(super) fn model_inputs(
    model: &dyn Scorer,
    features: &FeatureVector,
) -> serde_json::Map<String, serde_json::Value> {
    let names = features.layout().names();
    // Models list their inputs in the layout's order as a rule, so each name is looked for at
    // the position after the previous one first: one comparison per input instead of a search
    // through every feature name (an alert carries every input).
    let mut next = 0;
    model
        .input_names()
        .into_iter()
        .filter_map(|name| {
            let at = if names.get(next) == Some(&name) {
                next
            } else {
                names.iter().position(|n| *n == name)?
            };
            next = at + 1;
            Some((
                name.to_string(),
                serde_json::json!(alert::round4(features.values[at])),
            ))
        })
        .collect()
}

/// The `k` features that pushed the score up most.
pub(super) fn reasons(model: &dyn Scorer, features: &FeatureVector, k: usize) -> Vec<Reason> {
    model
        .top_reasons(features, k)
        .iter()
        .map(Reason::from)
        .collect()
}
