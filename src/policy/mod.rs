//! Win-back policy: what an alert recommends, how often a user may be contacted, and who is held
//! out as the control group.
//!
//! Everything here is pure (no Kafka, no engine internals) and configured by a TOML file whose
//! documented default is `deploy/policy/default.toml`, embedded in the binary so the service runs
//! without one. A policy that does not parse or does not make sense is refused with the file, the
//! line and column, and the reason, so an operator can fix it before the service starts
//! ([`parse`] holds the file format and its checks, [`labels`] the bounded label sets).
//!
//! * [`Policy::risk_band`]: churn score → [`RiskBand`] (configurable ascending bounds).
//! * [`Policy::value_tier`]: cumulative and 90-day spend → [`ValueTier`].
//! * [`Policy::decide_action`]: a user's [`Segment`] → the first matching [`ActionRule`]; the
//!   last rule is always a catch-all, so every alert gets an action.
//! * [`Policy::caps_for`] + [`CapState`]: frequency capping (cooldown, at most N per 30 days);
//!   the per-user cap state lives with the rest of a user's state in [`crate::features::caps`].
//! * [`Policy::experiment_arm`]: deterministic, salted control-group assignment.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::features::Stage;

pub mod labels;
pub mod parse;

pub use crate::features::caps::{CapRule, CapState, SuppressReason, CAP_HISTORY, CAP_WINDOW_DAYS};
pub use labels::{ExperimentArm, RiskBand, ValueTier};
pub use parse::PolicyError;

/// The default policy, as shipped in `deploy/policy/default.toml`: the service needs no file.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../deploy/policy/default.toml");

/// Largest `recent_complaint_days`: the engine keeps at least this many days of per-user
/// history, whatever its windows.
pub const MAX_RECENT_COMPLAINT_DAYS: u32 = crate::features::window::MIN_KEPT_DAYS;

/// Lower bounds of the risk bands (a score below `medium` is `low`); strictly ascending in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskBands {
    /// Lowest score that is `medium`.
    pub medium: f64,
    /// Lowest score that is `high`.
    pub high: f64,
    /// Lowest score that is `critical`.
    pub critical: f64,
}

/// What it takes to reach one value tier: either leg suffices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierThreshold {
    /// Cumulative spend at or above which the tier is reached.
    pub total: f64,
    /// Spend over the last 90 days at or above which the tier is reached.
    pub recent_90d: f64,
}

/// Thresholds of the tiers above bronze; both columns strictly ascending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueTiers {
    /// Silver thresholds.
    pub silver: TierThreshold,
    /// Gold thresholds.
    pub gold: TierThreshold,
    /// Platinum thresholds.
    pub platinum: TierThreshold,
}

/// Control-group settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlGroup {
    /// Share of users in control, in [0, 1].
    pub share: f64,
    /// Salt of the assignment hash: a new salt is a new experiment.
    pub salt: String,
    /// Publish control alerts to this topic instead of the alert topic (flagged either way).
    pub topic: Option<String>,
}

/// Who an alert is about, as far as the policy cares: the inputs of [`Policy::decide_action`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Lifecycle stage at the decision.
    pub stage: Stage,
    /// Value tier ([`Policy::value_tier`]).
    pub tier: ValueTier,
    /// Risk band ([`Policy::risk_band`]).
    pub band: RiskBand,
    /// A complaint within `recent_complaint_days`.
    pub recent_complaint: bool,
    /// Days since the user was first seen.
    pub tenure_days: f64,
}

/// One action rule: conditions (`None` = any) and what to recommend when they all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRule {
    /// Name, unique in the policy (for logs and error messages).
    pub name: String,
    /// Line of the rule's `[[rules]]` header in the policy file.
    pub line: usize,
    /// Lifecycle stages the rule applies to.
    pub stages: Option<Vec<Stage>>,
    /// Value tiers the rule applies to.
    pub tiers: Option<Vec<ValueTier>>,
    /// Risk bands the rule applies to.
    pub bands: Option<Vec<RiskBand>>,
    /// Applies only with (`true`) or without (`false`) a recent complaint.
    pub recent_complaint: Option<bool>,
    /// Applies when tenure >= this many days.
    pub min_tenure_days: Option<f64>,
    /// Applies when tenure < this many days.
    pub max_tenure_days: Option<f64>,
    /// Recommended action (payload value and metric label).
    pub action: String,
    /// Channel to deliver it on (payload value and metric label).
    pub channel: String,
    /// Overrides the policy's default cooldown for this segment.
    pub cooldown_days: Option<u16>,
    /// Overrides the policy's default monthly cap for this segment.
    pub max_per_30d: Option<u8>,
}

impl ActionRule {
    /// Whether the rule has no conditions (matches every user).
    pub fn is_catch_all(&self) -> bool {
        self.stages.is_none()
            && self.tiers.is_none()
            && self.bands.is_none()
            && self.recent_complaint.is_none()
            && self.min_tenure_days.is_none()
            && self.max_tenure_days.is_none()
    }

    /// Whether every condition holds for `seg`. Tenure is half-open: min <= tenure < max.
    pub fn matches(&self, seg: &Segment) -> bool {
        fn within<T: PartialEq>(set: &Option<Vec<T>>, v: &T) -> bool {
            set.as_ref().is_none_or(|s| s.contains(v))
        }
        within(&self.stages, &seg.stage)
            && within(&self.tiers, &seg.tier)
            && within(&self.bands, &seg.band)
            && self
                .recent_complaint
                .is_none_or(|c| c == seg.recent_complaint)
            && self.min_tenure_days.is_none_or(|m| seg.tenure_days >= m)
            && self.max_tenure_days.is_none_or(|m| seg.tenure_days < m)
    }

    /// Whether every user this rule's `later` would match is already matched by `self`, which
    /// makes `later` unreachable when it comes after `self`.
    fn covers(&self, later: &ActionRule) -> bool {
        fn superset<T: PartialEq>(a: &Option<Vec<T>>, b: &Option<Vec<T>>) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.iter().all(|x| a.contains(x)),
            }
        }
        let lo = |r: &ActionRule| r.min_tenure_days.unwrap_or(f64::NEG_INFINITY);
        let hi = |r: &ActionRule| r.max_tenure_days.unwrap_or(f64::INFINITY);
        superset(&self.stages, &later.stages)
            && superset(&self.tiers, &later.tiers)
            && superset(&self.bands, &later.bands)
            && (self.recent_complaint.is_none() || self.recent_complaint == later.recent_complaint)
            && lo(self) <= lo(later)
            && hi(self) >= hi(later)
    }
}

/// A validated win-back policy. Build it with [`Policy::parse`], [`Policy::load`] or
/// [`Policy::default_embedded`]; fields are read-only so the invariants (ascending bounds, a
/// final catch-all rule, caps within [`CAP_HISTORY`]...) always hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    risk_bands: RiskBands,
    value_tiers: ValueTiers,
    recent_complaint_days: u32,
    outcome_window_days: u32,
    expires_after_days: u32,
    caps: CapRule,
    control: ControlGroup,
    rules: Vec<ActionRule>,
}

impl Policy {
    /// The default policy (`deploy/policy/default.toml`, compiled in).
    ///
    /// # Panics
    /// Never in a released build: the embedded file is validated by a unit test.
    pub fn default_embedded() -> Policy {
        match Policy::parse("deploy/policy/default.toml", DEFAULT_POLICY_TOML) {
            Ok(p) => p,
            Err(e) => panic!("the embedded default policy is invalid: {e}"),
        }
    }

    /// Reads and validates a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            file: file.clone(),
            source,
        })?;
        Policy::parse(&file, &src)
    }

    /// Parses and validates policy text; `file` names it in error messages.
    pub fn parse(file: &str, src: &str) -> Result<Policy, PolicyError> {
        parse::parse(file, src)
    }

    /// The risk band of a churn score (NaN is `low`).
    pub fn risk_band(&self, score: f64) -> RiskBand {
        let b = &self.risk_bands;
        if score >= b.critical {
            RiskBand::Critical
        } else if score >= b.high {
            RiskBand::High
        } else if score >= b.medium {
            RiskBand::Medium
        } else {
            RiskBand::Low
        }
    }

    /// The value tier of a user with `total_spend` over their lifetime and `spend_90d` over the
    /// last 90 days: the highest tier whose `total` or `recent_90d` threshold is reached, else
    /// bronze.
    pub fn value_tier(&self, total_spend: f64, spend_90d: f64) -> ValueTier {
        let t = &self.value_tiers;
        let reached = |th: &TierThreshold| total_spend >= th.total || spend_90d >= th.recent_90d;
        if reached(&t.platinum) {
            ValueTier::Platinum
        } else if reached(&t.gold) {
            ValueTier::Gold
        } else if reached(&t.silver) {
            ValueTier::Silver
        } else {
            ValueTier::Bronze
        }
    }

    /// The first rule matching `seg`. There always is one: the last rule is a catch-all.
    pub fn decide_action(&self, seg: &Segment) -> &ActionRule {
        // `validate` guarantees a non-empty rule list ending with a catch-all.
        let last = &self.rules[self.rules.len() - 1];
        self.rules.iter().find(|r| r.matches(seg)).unwrap_or(last)
    }

    /// The caps that apply to alerts decided by `rule`: its overrides, else the defaults.
    pub fn caps_for(&self, rule: &ActionRule) -> CapRule {
        CapRule {
            cooldown_days: rule.cooldown_days.unwrap_or(self.caps.cooldown_days),
            max_per_30d: rule.max_per_30d.unwrap_or(self.caps.max_per_30d),
        }
    }

    /// Deterministic control-group assignment: SHA-256 of (salt, user id) mapped uniformly to
    /// [0, 1); below `share` is control. Same salt and user → same arm, on every instance.
    pub fn experiment_arm(&self, user_id: &str) -> ExperimentArm {
        if unit_hash(&self.control.salt, user_id) < self.control.share {
            ExperimentArm::Control
        } else {
            ExperimentArm::Treatment
        }
    }

    /// Risk band bounds.
    pub fn risk_bands(&self) -> &RiskBands {
        &self.risk_bands
    }

    /// Value tier thresholds.
    pub fn value_tiers(&self) -> &ValueTiers {
        &self.value_tiers
    }

    /// A complaint within this many days counts as recent.
    pub fn recent_complaint_days(&self) -> u32 {
        self.recent_complaint_days
    }

    /// Days after an alert during which a purchase or login counts as a win-back.
    pub fn outcome_window_days(&self) -> u32 {
        self.outcome_window_days
    }

    /// Days after the decision at which an alert expires.
    pub fn expires_after_days(&self) -> u32 {
        self.expires_after_days
    }

    /// Caps of segments whose rule sets none.
    pub fn default_caps(&self) -> CapRule {
        self.caps
    }

    /// Control-group settings.
    pub fn control(&self) -> &ControlGroup {
        &self.control
    }

    /// The action rules in order (the last is the catch-all).
    pub fn rules(&self) -> &[ActionRule] {
        &self.rules
    }
}

/// SHA-256 of `salt \0 user_id`, its first 53 bits as a fraction in [0, 1).
fn unit_hash(salt: &str, user_id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(user_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Policy {
        Policy::default_embedded()
    }

    #[test]
    fn the_embedded_default_is_valid_and_matches_the_documented_defaults() {
        let p = default();
        assert_eq!(p.recent_complaint_days(), 30);
        assert_eq!(p.outcome_window_days(), 14);
        assert_eq!(p.expires_after_days(), 7);
        assert_eq!(
            p.default_caps(),
            CapRule {
                cooldown_days: 7,
                max_per_30d: 2
            }
        );
        assert_eq!(p.control().share, 0.10);
        assert_eq!(p.control().topic, None);
        assert!(p.rules().last().is_some_and(ActionRule::is_catch_all));
        // The built-in fallbacks for omitted sections equal what the file documents.
        let minimal = Policy::parse(
            "minimal.toml",
            "[[rules]]\nname = \"all\"\naction = \"member_perk\"\nchannel = \"push\"\n",
        )
        .unwrap();
        assert_eq!(minimal.risk_bands(), p.risk_bands());
        assert_eq!(minimal.value_tiers(), p.value_tiers());
        assert_eq!(minimal.default_caps(), p.default_caps());
        assert_eq!(minimal.control(), p.control());
        assert_eq!(minimal.recent_complaint_days(), p.recent_complaint_days());
        assert_eq!(minimal.outcome_window_days(), p.outcome_window_days());
        assert_eq!(minimal.expires_after_days(), p.expires_after_days());
    }

    /// (segment, stage, tier, band, recent complaint, tenure days, action, channel)
    type Case = (
        &'static str,
        Stage,
        ValueTier,
        RiskBand,
        bool,
        f64,
        &'static str,
        &'static str,
    );

    /// Each DOMAIN.md segment → its action, with the default policy.
    #[test]
    fn each_segment_gets_its_action() {
        use RiskBand::*;
        use Stage::*;
        use ValueTier::*;
        let p = default();
        #[rustfmt::skip]
        let table: &[Case] = &[
            // segment                          stage    tier      band  complaint tenure action channel
            ("recent complaint, low value",     AtRisk,  Bronze,   High,     true,  200.0, "care_contact", "customer_service"),
            ("recent complaint, high value",    AtRisk,  Platinum, Critical, true,  400.0, "care_contact", "customer_service"),
            ("recent complaint, newcomer",      New,     Bronze,   Medium,   true,    5.0, "care_contact", "customer_service"),
            ("recent complaint, dormant",       Dormant, Silver,   High,     true,  300.0, "care_contact", "customer_service"),
            ("high value at risk (gold)",       AtRisk,  Gold,     High,     false, 400.0, "dedicated_service", "phone"),
            ("high value at risk (platinum)",   Grace,   Platinum, Critical, false, 900.0, "dedicated_service", "phone"),
            ("high value, dormant, critical",   Dormant, Gold,     Critical, false, 500.0, "dedicated_service", "phone"),
            ("new user going quiet",            New,     Bronze,   Medium,   false,   6.0, "newcomer_coupon", "push"),
            ("new user silent, at risk",        AtRisk,  Bronze,   High,     false,  20.0, "newcomer_coupon", "push"),
            ("newcomer who spent a bit",        AtRisk,  Silver,   High,     false,  29.9, "newcomer_coupon", "push"),
            ("dormant",                         Dormant, Bronze,   High,     false, 200.0, "recall_push_coupon", "push"),
            ("churned",                         Churned, Silver,   Critical, false, 400.0, "recall_push_coupon", "push"),
            ("active, mid value",               Active,  Silver,   Medium,   false, 120.0, "points_bonus", "app_inbox"),
            ("slipping, mid value",             AtRisk,  Silver,   High,     false,  60.0, "points_bonus", "app_inbox"),
            ("low value, short-lived",          AtRisk,  Bronze,   High,     false,  60.0, "limited_time_discount", "push"),
            ("low value, short-lived, grace",   Grace,   Bronze,   Medium,   false, 179.9, "limited_time_discount", "push"),
            ("low value, long-standing",        AtRisk,  Bronze,   High,     false, 180.0, "member_perk", "push"),
            ("high value, only medium risk",    Active,  Gold,     Medium,   false, 300.0, "member_perk", "push"),
        ];
        for &(what, stage, tier, band, recent_complaint, tenure_days, action, channel) in table {
            let rule = p.decide_action(&Segment {
                stage,
                tier,
                band,
                recent_complaint,
                tenure_days,
            });
            assert_eq!(
                (rule.action.as_str(), rule.channel.as_str()),
                (action, channel),
                "{what}: got rule `{}`",
                rule.name
            );
        }
    }

    #[test]
    fn complaints_never_get_a_coupon() {
        let p = default();
        for stage in Stage::ALL {
            for tier in ValueTier::ALL {
                for band in RiskBand::ALL {
                    for tenure_days in [0.0, 10.0, 100.0, 1000.0] {
                        let rule = p.decide_action(&Segment {
                            stage,
                            tier,
                            band,
                            recent_complaint: true,
                            tenure_days,
                        });
                        assert!(
                            !rule.action.contains("coupon") && !rule.action.contains("discount")
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn band_boundaries() {
        let p = default();
        let b = *p.risk_bands();
        assert_eq!(p.risk_band(0.0), RiskBand::Low);
        assert_eq!(p.risk_band(b.medium - 1e-9), RiskBand::Low);
        assert_eq!(p.risk_band(b.medium), RiskBand::Medium);
        assert_eq!(p.risk_band(b.high - 1e-9), RiskBand::Medium);
        assert_eq!(p.risk_band(b.high), RiskBand::High);
        assert_eq!(p.risk_band(b.critical - 1e-9), RiskBand::High);
        assert_eq!(p.risk_band(b.critical), RiskBand::Critical);
        assert_eq!(p.risk_band(1.0), RiskBand::Critical);
        assert_eq!(p.risk_band(f64::NAN), RiskBand::Low);
    }

    #[test]
    fn tier_boundaries_either_leg_suffices() {
        let p = default();
        let t = *p.value_tiers();
        assert_eq!(p.value_tier(0.0, 0.0), ValueTier::Bronze);
        assert_eq!(
            p.value_tier(t.silver.total - 0.01, t.silver.recent_90d - 0.01),
            ValueTier::Bronze
        );
        assert_eq!(p.value_tier(t.silver.total, 0.0), ValueTier::Silver);
        assert_eq!(p.value_tier(0.0, t.silver.recent_90d), ValueTier::Silver);
        assert_eq!(p.value_tier(t.gold.total, 0.0), ValueTier::Gold);
        assert_eq!(p.value_tier(0.0, t.gold.recent_90d), ValueTier::Gold);
        // The higher leg wins: a long-time silver total with a platinum recent spend.
        assert_eq!(
            p.value_tier(t.silver.total, t.platinum.recent_90d),
            ValueTier::Platinum
        );
        assert_eq!(p.value_tier(t.platinum.total, 0.0), ValueTier::Platinum);
        assert_eq!(p.value_tier(f64::NAN, f64::NAN), ValueTier::Bronze);
    }

    #[test]
    fn label_sets_are_bounded_and_distinct() {
        let bands: Vec<_> = RiskBand::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(bands, ["low", "medium", "high", "critical"]);
        let tiers: Vec<_> = ValueTier::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(tiers, ["bronze", "silver", "gold", "platinum"]);
        assert_eq!(ExperimentArm::Control.as_str(), "control");
        assert_eq!(ExperimentArm::Treatment.as_str(), "treatment");
        assert_eq!(SuppressReason::Cooldown.as_str(), "cooldown");
        assert_eq!(SuppressReason::MonthlyCap.as_str(), "monthly_cap");
        // Serde uses the same spelling as the labels.
        for b in RiskBand::ALL {
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
        for t in ValueTier::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for a in ExperimentArm::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    const DAY0: u16 = 20_000; // 2024-10-04

    /// Runs one risk decision per entry of `days`, returning the days an alert went out.
    fn run(caps: CapRule, days: impl IntoIterator<Item = u16>) -> (Vec<u16>, [usize; 2]) {
        let mut state = CapState::default();
        let mut sent = Vec::new();
        let mut suppressed = [0usize; 2];
        for d in days {
            match state.check(d, &caps) {
                Ok(()) => {
                    state.record(d);
                    sent.push(d);
                }
                Err(SuppressReason::Cooldown) => suppressed[0] += 1,
                Err(SuppressReason::MonthlyCap) => suppressed[1] += 1,
            }
        }
        (sent, suppressed)
    }

    #[test]
    fn a_burst_of_risk_gives_one_alert_per_cooldown() {
        let caps = default().default_caps();
        // Ten decisions on the same day.
        let (sent, suppressed) = run(caps, std::iter::repeat_n(DAY0, 10));
        assert_eq!(sent, [DAY0]);
        assert_eq!(suppressed, [9, 0]);
        // Ten daily decisions: one alert, the next only once the 7-day cooldown has passed.
        let (sent, suppressed) = run(caps, (0..10).map(|i| DAY0 + i));
        assert_eq!(sent, [DAY0, DAY0 + 7]);
        assert_eq!(suppressed, [8, 0]);
        // Every 7 consecutive days hold at most one alert.
        let (sent, _) = run(caps, (0..7).map(|i| DAY0 + i));
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn the_monthly_cap_holds_over_any_30_days() {
        let caps = CapRule {
            cooldown_days: 7,
            max_per_30d: 2,
        };
        let (sent, suppressed) = run(caps, (0..=60).map(|i| DAY0 + i));
        assert_eq!(sent, [DAY0, DAY0 + 7, DAY0 + 30, DAY0 + 37, DAY0 + 60]);
        assert!(suppressed[1] > 0);
        for &d in &sent {
            let in_window = sent.iter().filter(|&&s| s >= d && s < d + 30).count();
            assert!(in_window <= 2);
        }
        // The largest cap the state supports, no cooldown.
        let caps = CapRule {
            cooldown_days: 0,
            max_per_30d: CAP_HISTORY as u8,
        };
        let (sent, suppressed) = run(caps, (0..40).map(|i| DAY0 + i));
        assert_eq!(
            sent,
            [
                DAY0,
                DAY0 + 1,
                DAY0 + 2,
                DAY0 + 3,
                DAY0 + 30,
                DAY0 + 31,
                DAY0 + 32,
                DAY0 + 33
            ]
        );
        assert_eq!(suppressed, [0, 32]);
    }

    #[test]
    fn per_rule_caps_override_the_defaults() {
        let p = default();
        let care = p
            .rules()
            .iter()
            .find(|r| r.action == "care_contact")
            .unwrap();
        assert_eq!(
            p.caps_for(care),
            CapRule {
                cooldown_days: 30,
                max_per_30d: 1
            }
        );
        let discount = p
            .rules()
            .iter()
            .find(|r| r.action == "limited_time_discount")
            .unwrap();
        assert_eq!(
            p.caps_for(discount),
            CapRule {
                cooldown_days: 14,
                max_per_30d: 2
            }
        );
        let catch_all = p.rules().last().unwrap();
        assert_eq!(p.caps_for(catch_all), p.default_caps());
    }

    #[test]
    fn cap_state_is_compact_and_round_trips() {
        assert_eq!(std::mem::size_of::<CapState>(), 8);
        let mut s = CapState::default();
        assert_eq!(s.last_alert_day(), None);
        for d in [DAY0, DAY0 + 9, DAY0 + 3, DAY0 + 20, DAY0 + 30] {
            s.record(d);
        }
        // Newest first, oldest dropped.
        assert_eq!(
            s.alert_days().collect::<Vec<_>>(),
            [DAY0 + 30, DAY0 + 20, DAY0 + 9, DAY0 + 3]
        );
        assert_eq!(CapState::from_bytes(s.to_bytes()), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CapState>(&json).unwrap(), s);
        // An out-of-order decision before the last alert is inside the cooldown.
        assert_eq!(
            s.check(DAY0 + 25, &default().default_caps()),
            Err(SuppressReason::Cooldown)
        );
    }

    #[test]
    fn control_share_is_within_one_point_and_deterministic() {
        let p = default();
        let n = 100_000;
        let control = (0..n)
            .filter(|i| p.experiment_arm(&format!("user-{i}")) == ExperimentArm::Control)
            .count();
        let share = control as f64 / n as f64;
        assert!((share - 0.10).abs() <= 0.01, "control share {share}");
        // Stable across calls and policy instances.
        let again = default();
        for i in 0..1000 {
            let u = format!("user-{i}");
            assert_eq!(p.experiment_arm(&u), again.experiment_arm(&u));
        }
        // Another salt is another split.
        let other = Policy::parse(
            "salted.toml",
            "[control]\nsalt = \"experiment-2\"\n[[rules]]\nname = \"all\"\naction = \"a\"\nchannel = \"c\"\n",
        )
        .unwrap();
        let differ = (0..10_000)
            .map(|i| format!("user-{i}"))
            .filter(|u| p.experiment_arm(u) != other.experiment_arm(u))
            .count();
        assert!(differ > 1000, "only {differ} of 10000 ids changed arm");
        // The edges: nobody, everybody.
        for (share, arm) in [
            ("0.0", ExperimentArm::Treatment),
            ("1.0", ExperimentArm::Control),
        ] {
            let p = Policy::parse(
                "edge.toml",
                &format!("[control]\nshare = {share}\n[[rules]]\nname = \"all\"\naction = \"a\"\nchannel = \"c\"\n"),
            )
            .unwrap();
            assert!((0..1000).all(|i| p.experiment_arm(&format!("u{i}")) == arm));
        }
    }
}
