//! The user lifecycle: new → active → at_risk → grace → dormant → churned, and back to active
//! (or new) on return.
//!
//! A user's stage is a function of their state at an instant, so it needs no storage of its own
//! beyond the last stage seen (to report transitions), and a restored state re-derives it. What
//! drives it is *engagement* — logins and purchases, the two signals whose absence defines churn —
//! plus a decline rule: a user still engaging, but far below their own recent norm, is at risk.

use serde::{Deserialize, Serialize};

use crate::{Millis, DAY_MS};

/// Lifecycle stage of one user.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Stage {
    /// Recently arrived and engaging (also the stage of a state never scored).
    #[default]
    New = 0,
    /// Engaging at their usual pace.
    Active = 1,
    /// Silent for a while, or engaging far below their own norm.
    AtRisk = 2,
    /// Silent long enough that a win-back window is open: a login or purchase now returns them.
    Grace = 3,
    /// The grace window passed without a return.
    Dormant = 4,
    /// No login and no purchase for the churn horizon.
    Churned = 5,
}

impl Stage {
    /// Every stage, in lifecycle order.
    pub const ALL: [Stage; 6] = [
        Stage::New,
        Stage::Active,
        Stage::AtRisk,
        Stage::Grace,
        Stage::Dormant,
        Stage::Churned,
    ];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Active => "active",
            Stage::AtRisk => "at_risk",
            Stage::Grace => "grace",
            Stage::Dormant => "dormant",
            Stage::Churned => "churned",
        }
    }

    /// Inverse of `self as u8`.
    pub fn from_u8(v: u8) -> Stage {
        Stage::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Stage::New)
    }
}

/// Thresholds of the lifecycle, in days of silence (no login and no purchase) unless noted.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    /// Users first seen less than this many days ago are `new` while they engage.
    pub new_user_days: f64,
    /// Silence after which a user is `at_risk`.
    pub at_risk_days: f64,
    /// Silence after which the grace window opens.
    pub grace_start_days: f64,
    /// Length of the grace window; after it the user is `dormant`.
    pub grace_days: f64,
    /// Silence after which the user is `churned`.
    pub churn_days: f64,
    /// A user whose last-30-day activity is below this share of their own monthly rate over the
    /// 60 days before is `at_risk` even while still engaging.
    pub decline_ratio: f64,
    /// The decline rule only applies to users with at least this many events per month before.
    pub decline_min_monthly_events: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            new_user_days: 14.0,
            at_risk_days: 14.0,
            grace_start_days: 30.0,
            grace_days: 14.0,
            churn_days: 90.0,
            decline_ratio: 0.5,
            decline_min_monthly_events: 4.0,
        }
    }
}

/// Why a lifecycle configuration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid lifecycle thresholds: {0}")]
pub struct LifecycleConfigError(String);

impl LifecycleConfig {
    /// Checks the thresholds are ordered as the lifecycle requires.
    pub fn validate(&self) -> Result<(), LifecycleConfigError> {
        let dormant = self.grace_start_days + self.grace_days;
        let ok = self.new_user_days >= 0.0
            && self.at_risk_days > 0.0
            && self.at_risk_days <= self.grace_start_days
            && self.grace_days >= 0.0
            && dormant <= self.churn_days
            && (0.0..=1.0).contains(&self.decline_ratio);
        if ok {
            Ok(())
        } else {
            Err(LifecycleConfigError(format!(
                "need 0 < at_risk ({}) <= grace_start ({}), grace_start + grace ({dormant}) <= churn ({}), \
                 decline_ratio ({}) in [0, 1]",
                self.at_risk_days, self.grace_start_days, self.churn_days, self.decline_ratio
            )))
        }
    }

    /// Instants after `last_engaged` at which the stage changes by silence alone (timers).
    pub fn silence_deadlines(&self, last_engaged: Millis) -> [Millis; 4] {
        let at = |days: f64| last_engaged.saturating_add((days * DAY_MS as f64).ceil() as Millis);
        [
            at(self.at_risk_days),
            at(self.grace_start_days),
            at(self.grace_start_days + self.grace_days),
            at(self.churn_days),
        ]
    }
}

/// The inputs the stage depends on, as of one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageInputs {
    /// Days since the last login or purchase (or since first seen, if neither ever happened).
    pub days_silent: f64,
    pub tenure_days: f64,
    pub events_30d: f64,
    /// Events in the 60 days before the last 30.
    pub events_prior_60d: f64,
    /// Days since the user last came back from an at-risk silence, if ever.
    pub days_since_return: Option<f64>,
}

/// The stage these inputs put a user in.
pub fn stage(cfg: &LifecycleConfig, x: &StageInputs) -> Stage {
    if x.days_silent >= cfg.churn_days {
        Stage::Churned
    } else if x.days_silent >= cfg.grace_start_days + cfg.grace_days {
        Stage::Dormant
    } else if x.days_silent >= cfg.grace_start_days {
        Stage::Grace
    } else if x.days_silent >= cfg.at_risk_days {
        Stage::AtRisk
    } else {
        // A user who just came back has the silence in their 30-day window; judge their pace
        // only once a full window has passed since the return.
        let settled = x.days_since_return.is_none_or(|d| d >= 30.0);
        let prior_monthly = x.events_prior_60d / 2.0;
        let declining = settled
            && prior_monthly >= cfg.decline_min_monthly_events
            && x.events_30d < cfg.decline_ratio * prior_monthly;
        if declining {
            Stage::AtRisk
        } else if x.tenure_days < cfg.new_user_days {
            Stage::New
        } else {
            Stage::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_silent: f64, tenure_days: f64) -> Stage {
        stage(
            &LifecycleConfig::default(),
            &StageInputs {
                days_silent,
                tenure_days,
                events_30d: 10.0,
                events_prior_60d: 20.0,
                days_since_return: None,
            },
        )
    }

    #[test]
    fn silence_walks_the_ladder() {
        assert_eq!(at(0.0, 3.0), Stage::New);
        assert_eq!(at(0.0, 40.0), Stage::Active);
        assert_eq!(at(13.9, 40.0), Stage::Active);
        assert_eq!(at(14.0, 40.0), Stage::AtRisk);
        assert_eq!(at(30.0, 60.0), Stage::Grace);
        assert_eq!(at(44.0, 60.0), Stage::Dormant);
        assert_eq!(at(90.0, 120.0), Stage::Churned);
    }

    #[test]
    fn a_sharp_decline_is_at_risk_even_while_engaging() {
        let cfg = LifecycleConfig::default();
        let declining = StageInputs {
            days_silent: 1.0,
            tenure_days: 200.0,
            events_30d: 4.0,
            events_prior_60d: 40.0,
            days_since_return: None,
        };
        assert_eq!(stage(&cfg, &declining), Stage::AtRisk);
        // Just back from a long silence: active, not judged on a window holding the silence.
        let returned = StageInputs {
            days_since_return: Some(3.0),
            ..declining
        };
        assert_eq!(stage(&cfg, &returned), Stage::Active);
        // Too little history for a norm: no decline rule.
        let sparse = StageInputs {
            events_30d: 0.0,
            events_prior_60d: 4.0,
            ..declining
        };
        assert_eq!(stage(&cfg, &sparse), Stage::Active);
    }

    #[test]
    fn deadlines_match_the_thresholds() {
        let cfg = LifecycleConfig::default();
        let d = cfg.silence_deadlines(0);
        assert_eq!(d, [14 * DAY_MS, 30 * DAY_MS, 44 * DAY_MS, 90 * DAY_MS]);
        for (i, t) in d.iter().enumerate() {
            let s = stage(
                &cfg,
                &StageInputs {
                    days_silent: *t as f64 / DAY_MS as f64,
                    tenure_days: 100.0,
                    events_30d: 0.0,
                    events_prior_60d: 0.0,
                    days_since_return: None,
                },
            );
            assert_eq!(
                s,
                [Stage::AtRisk, Stage::Grace, Stage::Dormant, Stage::Churned][i]
            );
        }
    }

    #[test]
    fn invalid_orderings_are_refused() {
        let mut cfg = LifecycleConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.grace_start_days = 80.0; // 80 + 14 > 90
        assert!(cfg.validate().is_err());
    }
}
