//! Win-back alerts: when to raise one and what it says.
//!
//! The rule is per *silence episode*: an episode starts at the user's latest activity; the first
//! time the score reaches the threshold inside it, one alert is raised, and no other until the
//! user acts again (which starts a new episode). Alert ids are a hash of (user, model version,
//! episode), so a replay or a restart that re-derives an alert gives it the same id and
//! consumers can dedupe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Contribution;
use crate::Millis;

/// Version of the alert payload layout, also sent as a Kafka header.
pub const ALERT_SCHEMA_VERSION: u32 = 1;

/// What made the engine score the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An event of the user arrived.
    Event,
    /// The user's inactivity timer fired: no event needed, which is how silent users are caught.
    Timer,
}

impl Trigger {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Event => "event",
            Trigger::Timer => "timer",
        }
    }
}

/// A top contributing feature, as carried in the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    pub value: f64,
    /// Log-odds this feature added to the score (coefficient × standardised value).
    pub contribution: f64,
}

impl From<&Contribution> for Reason {
    fn from(c: &Contribution) -> Self {
        Reason {
            feature: c.feature.to_string(),
            value: round4(c.value),
            contribution: round4(c.contribution),
        }
    }
}

/// The JSON published to the alert topic, keyed by `user_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinbackAlert {
    pub schema_version: u32,
    pub alert_id: String,
    pub user_id: String,
    /// Event time of the decision (RFC 3339): deterministic across replays, unlike wall time.
    pub ts: String,
    pub score: f64,
    pub threshold: f64,
    pub model_version: String,
    pub trigger: Trigger,
    /// Start of the silence episode this alert is about (the user's latest activity).
    pub last_activity_at: String,
    /// Lifecycle stage when the alert was raised.
    pub lifecycle_state: crate::features::Stage,
    /// Top features that pushed the score up.
    pub reasons: Vec<Reason>,
    /// Every feature the model used, with its value at decision time.
    pub features: serde_json::Map<String, serde_json::Value>,
}

/// Deterministic alert id: same user, model version and episode → same id.
pub fn alert_id(user_id: &str, model_version: &str, episode_start: Millis) -> String {
    let mut h = Sha256::new();
    h.update(user_id.as_bytes());
    h.update([0u8]);
    h.update(model_version.as_bytes());
    h.update([0u8]);
    h.update(episode_start.to_be_bytes());
    crate::hex_prefix(&h.finalize(), 16)
}

/// The episode rule: alert once per episode, never for opted-out users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDecision {
    /// Raise an alert.
    Raise,
    /// Score below threshold.
    BelowThreshold,
    /// Already alerted for this silence episode.
    AlreadyAlerted,
    /// The user opted out of contact (still scored and counted).
    OptedOut,
}

/// Decides whether a score becomes an alert.
pub fn decide(
    score: f64,
    threshold: f64,
    alerted_this_episode: bool,
    opted_out: bool,
) -> AlertDecision {
    if score < threshold {
        AlertDecision::BelowThreshold
    } else if alerted_this_episode {
        AlertDecision::AlreadyAlerted
    } else if opted_out {
        AlertDecision::OptedOut
    } else {
        AlertDecision::Raise
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ts: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Rounds for payload readability; scores keep enough digits to sort and compare.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_deterministic_and_episode_specific() {
        let a = alert_id("u1", "sha256:abc", 1000);
        assert_eq!(a, alert_id("u1", "sha256:abc", 1000));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("u1", "sha256:abc", 1001));
        assert_ne!(a, alert_id("u2", "sha256:abc", 1000));
        assert_ne!(a, alert_id("u1", "sha256:abd", 1000));
    }

    #[test]
    fn decision_table() {
        assert_eq!(
            decide(0.4, 0.5, false, false),
            AlertDecision::BelowThreshold
        );
        assert_eq!(decide(0.5, 0.5, false, false), AlertDecision::Raise);
        assert_eq!(decide(0.9, 0.5, true, false), AlertDecision::AlreadyAlerted);
        assert_eq!(decide(0.9, 0.5, false, true), AlertDecision::OptedOut);
    }
}
