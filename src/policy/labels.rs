//! The policy's label sets: risk bands, value tiers and experiment arms.
//!
//! Each is a small closed enum whose `as_str` is both the payload value and the metric label, so
//! the set of label values is bounded by construction and serde uses the same spelling.

use serde::{Deserialize, Serialize};

/// How likely the user is to churn, graded for routing and metrics (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    /// Below the `medium` bound.
    Low,
    /// At or above `medium`.
    Medium,
    /// At or above `high`.
    High,
    /// At or above `critical`.
    Critical,
}

impl RiskBand {
    /// Every band, lowest first.
    pub const ALL: [RiskBand; 4] = [
        RiskBand::Low,
        RiskBand::Medium,
        RiskBand::High,
        RiskBand::Critical,
    ];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskBand::Low => "low",
            RiskBand::Medium => "medium",
            RiskBand::High => "high",
            RiskBand::Critical => "critical",
        }
    }
}

/// What the user is worth, from their spend: different tiers get different win-back actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTier {
    /// Reached no other tier.
    Bronze,
    /// Reached the silver thresholds.
    Silver,
    /// Reached the gold thresholds.
    Gold,
    /// Reached the platinum thresholds.
    Platinum,
}

impl ValueTier {
    /// Every tier, lowest first.
    pub const ALL: [ValueTier; 4] = [
        ValueTier::Bronze,
        ValueTier::Silver,
        ValueTier::Gold,
        ValueTier::Platinum,
    ];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueTier::Bronze => "bronze",
            ValueTier::Silver => "silver",
            ValueTier::Gold => "gold",
            ValueTier::Platinum => "platinum",
        }
    }
}

/// Whether a user may be contacted (`treatment`) or is held out to measure uplift (`control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentArm {
    /// Alerts are acted on.
    Treatment,
    /// Alerts are published flagged, never acted on: the baseline win-back rate.
    Control,
}

impl ExperimentArm {
    /// Both arms.
    pub const ALL: [ExperimentArm; 2] = [ExperimentArm::Treatment, ExperimentArm::Control];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentArm::Treatment => "treatment",
            ExperimentArm::Control => "control",
        }
    }
}
