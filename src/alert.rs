//! Win-back alerts: when to raise one and what it says.
//!
//! The rule is per *silence episode*: an episode starts at the user's latest activity; the first
//! time the score reaches the threshold inside it, one alert is raised, and no other until the
//! user acts again (which starts a new episode). Alert ids are a hash of (user, model version,
//! episode), so a replay or a restart that re-derives an alert gives it the same id and
//! consumers can dedupe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{ExperimentArm, RiskBand, ValueTier};
use crate::scoring::Contribution;
use crate::Millis;

/// Payload timestamps are RFC 3339 with milliseconds, UTC.
pub use crate::time::rfc3339;

/// Version of the alert payload layout, also sent as a Kafka header. The layout is documented
/// (and tested) as `deploy/schemas/winback-alert.v1.json`.
pub const ALERT_SCHEMA_VERSION: u32 = 1;

/// Version of the outcome event layout (`deploy/schemas/winback-outcome.v1.json`).
pub const OUTCOME_SCHEMA_VERSION: u32 = 1;

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
    pub alert_id: AlertId,
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
    /// Grade of `score` under the policy's band bounds.
    pub risk_band: RiskBand,
    /// Value tier from cumulative and 90-day spend.
    pub value_tier: ValueTier,
    /// What the policy recommends doing (a policy `action` label, e.g. `care_contact`).
    pub recommended_action: String,
    /// Where to deliver it (a policy `channel` label, e.g. `push`).
    pub channel: String,
    /// `control` alerts are published for measurement only: messaging systems must skip them.
    pub experiment_arm: ExperimentArm,
    /// After this instant (RFC 3339) the alert is stale and must not be acted on.
    pub expires_at: String,
    /// Top features that pushed the score up.
    pub reasons: Vec<Reason>,
    /// Every feature the model used, with its value at decision time.
    pub features: serde_json::Map<String, serde_json::Value>,
}

/// Whether an alerted user came back within the outcome window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A purchase or login inside the window.
    WonBack,
    /// The window ended without one.
    NotReturned,
}

impl Outcome {
    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::WonBack => "won_back",
            Outcome::NotReturned => "not_returned",
        }
    }
}

/// The engagement that counted as a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnKind {
    /// The user bought something.
    Purchase,
    /// The user logged in.
    Login,
}

impl ReturnKind {
    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnKind::Purchase => "purchase",
            ReturnKind::Login => "login",
        }
    }
}

/// One event per alert (treatment and control alike) once its outcome is known, published to
/// the optional outcome topic keyed by `user_id`: the raw material of win-back rate by arm, i.e.
/// of the uplift the campaigns buy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    pub schema_version: u32,
    /// The alert this outcome is about.
    pub alert_id: AlertId,
    pub user_id: String,
    pub experiment_arm: ExperimentArm,
    /// The alert's `ts` (RFC 3339).
    pub alerted_at: String,
    /// End of the observation window (RFC 3339).
    pub window_ends_at: String,
    pub outcome: Outcome,
    /// First return inside the window (RFC 3339), `null` when not returned.
    pub returned_at: Option<String>,
    /// What the return was, `null` when not returned.
    pub returned_by: Option<ReturnKind>,
    pub model_version: String,
}

/// An alert's identity: the first 16 bytes of SHA-256 over (user, model version, episode
/// start), so a replay or a restart that re-derives an alert gives it the same id. Printed, and
/// carried in payloads, headers and serde, as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId([u8; 16]);

impl AlertId {
    /// Deterministic id: same user, model version and episode → same id.
    pub fn derive(user_id: &str, model_version: &str, episode_start: Millis) -> AlertId {
        let mut h = Sha256::new();
        h.update(user_id.as_bytes());
        h.update([0u8]);
        h.update(model_version.as_bytes());
        h.update([0u8]);
        h.update(episode_start.to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize()[..16]);
        AlertId(id)
    }

    /// From its 16 bytes (durable state).
    pub fn from_bytes(bytes: [u8; 16]) -> AlertId {
        AlertId(bytes)
    }

    /// Its 16 bytes (durable state).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why text is not an alert id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert id {0:?} is not 32 lower-case hex digits")]
pub struct AlertIdError(String);

impl std::str::FromStr for AlertId {
    type Err = AlertIdError;

    fn from_str(s: &str) -> Result<AlertId, AlertIdError> {
        let invalid = || AlertIdError(s.chars().take(40).collect());
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        if s.len() != 32 {
            return Err(invalid());
        }
        let mut id = [0u8; 16];
        for (byte, pair) in id.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *byte = digit(pair[0])
                .zip(digit(pair[1]))
                .map(|(h, l)| h << 4 | l)
                .ok_or_else(invalid)?;
        }
        Ok(AlertId(id))
    }
}

impl Serialize for AlertId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlertId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AlertId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
    /// The frequency cap of the user's segment holds the alert back (re-checked at the next
    /// scoring, so a cap delays an alert rather than dropping the episode).
    Suppressed(crate::policy::SuppressReason),
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

/// Rounds for payload readability; scores keep enough digits to sort and compare.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The schema validators shared with the integration tests (`tests/util/schema.rs`).
#[cfg(test)]
#[path = "../tests/util/schema.rs"]
pub(crate) mod schema;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Stage;

    /// A complete v1 alert, as the engine would build it.
    pub(crate) fn sample_alert() -> WinbackAlert {
        let mut features = serde_json::Map::new();
        features.insert(
            "days_since_last_purchase".into(),
            serde_json::json!(22.1441),
        );
        features.insert("spend_total".into(), serde_json::json!(740.5));
        WinbackAlert {
            schema_version: ALERT_SCHEMA_VERSION,
            alert_id: AlertId::derive("u-1042", "sha256:0123456789abcdef", 1_726_129_870_000),
            user_id: "u-1042".into(),
            ts: rfc3339(1_728_043_200_000),
            score: 0.8123,
            threshold: 0.5,
            model_version: "sha256:0123456789abcdef".into(),
            trigger: Trigger::Timer,
            last_activity_at: rfc3339(1_726_129_870_000),
            lifecycle_state: Stage::AtRisk,
            risk_band: RiskBand::Critical,
            value_tier: ValueTier::Gold,
            recommended_action: "dedicated_service".into(),
            channel: "phone".into(),
            experiment_arm: ExperimentArm::Treatment,
            expires_at: rfc3339(1_728_043_200_000 + 7 * crate::DAY_MS),
            reasons: vec![Reason {
                feature: "days_since_last_purchase".into(),
                value: 22.1441,
                contribution: 1.2031,
            }],
            features,
        }
    }

    /// A complete v1 outcome event for [`sample_alert`].
    pub(crate) fn sample_outcome(outcome: Outcome) -> OutcomeEvent {
        let a = sample_alert();
        let won = outcome == Outcome::WonBack;
        OutcomeEvent {
            schema_version: OUTCOME_SCHEMA_VERSION,
            alert_id: a.alert_id,
            user_id: a.user_id,
            experiment_arm: ExperimentArm::Control,
            alerted_at: a.ts,
            window_ends_at: rfc3339(1_728_043_200_000 + 14 * crate::DAY_MS),
            outcome,
            returned_at: won.then(|| rfc3339(1_728_500_564_000)),
            returned_by: won.then_some(ReturnKind::Purchase),
            model_version: a.model_version,
        }
    }

    #[test]
    fn alerts_match_the_published_schema() {
        let json = serde_json::to_value(sample_alert()).unwrap();
        super::schema::validate_alert(&json).unwrap();
        // Round-trips.
        let back: WinbackAlert = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, sample_alert());
        // Every arm, band, tier and stage the code can produce is in the contract.
        for arm in ExperimentArm::ALL {
            for band in RiskBand::ALL {
                for tier in ValueTier::ALL {
                    for stage in Stage::ALL {
                        let a = WinbackAlert {
                            experiment_arm: arm,
                            risk_band: band,
                            value_tier: tier,
                            lifecycle_state: stage,
                            ..sample_alert()
                        };
                        super::schema::validate_alert(&serde_json::to_value(&a).unwrap()).unwrap();
                    }
                }
            }
        }
        // So is every action and channel of the default policy.
        for rule in crate::policy::Policy::default_embedded().rules() {
            let a = WinbackAlert {
                recommended_action: rule.action.clone(),
                channel: rule.channel.clone(),
                ..sample_alert()
            };
            super::schema::validate_alert(&serde_json::to_value(&a).unwrap()).unwrap();
        }
    }

    #[test]
    fn the_schema_refuses_broken_alerts() {
        let good = serde_json::to_value(sample_alert()).unwrap();
        let broken = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut j = good.clone();
            f(j.as_object_mut().unwrap());
            super::schema::validate_alert(&j)
        };
        for field in [
            "alert_id",
            "risk_band",
            "experiment_arm",
            "expires_at",
            "reasons",
        ] {
            assert!(broken(&|m| {
                m.remove(field);
            })
            .is_err());
        }
        assert!(broken(&|m| {
            m.insert("risk_band".into(), "extreme".into());
        })
        .is_err());
        assert!(broken(&|m| {
            m.insert("value_tier".into(), "diamond".into());
        })
        .is_err());
        assert!(broken(&|m| {
            m.insert("email".into(), "someone@example.com".into());
        })
        .is_err());
        assert!(broken(&|m| {
            m.insert("expires_at".into(), "next tuesday".into());
        })
        .is_err());
        assert!(broken(&|m| {
            m.insert("score".into(), 1.5.into());
        })
        .is_err());
    }

    #[test]
    fn outcomes_match_the_published_schema() {
        for outcome in [Outcome::WonBack, Outcome::NotReturned] {
            let json = serde_json::to_value(sample_outcome(outcome)).unwrap();
            super::schema::validate_outcome(&json).unwrap();
            let back: OutcomeEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, sample_outcome(outcome));
        }
        let good = serde_json::to_value(sample_outcome(Outcome::WonBack)).unwrap();
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("window_ends_at");
        assert!(super::schema::validate_outcome(&missing).is_err());
        let mut unknown = good.clone();
        unknown["outcome"] = "maybe".into();
        assert!(super::schema::validate_outcome(&unknown).is_err());
        // A win-back says when and how; a non-return says neither.
        let mut no_when = good.clone();
        no_when["returned_at"] = serde_json::Value::Null;
        assert!(super::schema::validate_outcome(&no_when).is_err());
        let mut lost_but_returned = good;
        lost_but_returned["outcome"] = "not_returned".into();
        assert!(super::schema::validate_outcome(&lost_but_returned).is_err());
    }

    #[test]
    fn the_schema_examples_are_valid() {
        for (text, validate) in [
            (
                super::schema::ALERT_SCHEMA,
                super::schema::validate_alert as fn(&serde_json::Value) -> Result<(), String>,
            ),
            (
                super::schema::OUTCOME_SCHEMA,
                super::schema::validate_outcome,
            ),
        ] {
            let schema: serde_json::Value = serde_json::from_str(text).unwrap();
            for example in schema["examples"].as_array().unwrap() {
                validate(example).unwrap();
            }
        }
    }

    #[test]
    fn alert_ids_are_deterministic_and_episode_specific() {
        let a = AlertId::derive("u1", "sha256:abc", 1000);
        assert_eq!(a, AlertId::derive("u1", "sha256:abc", 1000));
        assert_eq!(a.to_string().len(), 32);
        assert_ne!(a, AlertId::derive("u1", "sha256:abc", 1001));
        assert_ne!(a, AlertId::derive("u2", "sha256:abc", 1000));
        assert_ne!(a, AlertId::derive("u1", "sha256:abd", 1000));
    }

    #[test]
    fn alert_ids_print_as_the_hex_of_their_hash() {
        // The same strings as when ids were built as hex: ids on the wire do not change.
        let a = AlertId::derive("u1", "sha256:abc", 1000);
        assert_eq!(a.to_string(), "53c7a56e1ad3ba1dda56e297bd282063");
        assert_eq!(
            serde_json::to_value(sample_alert()).unwrap()["alert_id"],
            "9c98f8aea5a1a7b8d7ca1efac0b241c8"
        );
        assert_eq!("53c7a56e1ad3ba1dda56e297bd282063".parse::<AlertId>(), Ok(a));
        assert_eq!(AlertId::from_bytes(a.to_bytes()), a);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        assert_eq!(
            serde_json::from_str::<AlertId>(&format!("\"{a}\"")).unwrap(),
            a
        );
        for bad in [
            "",
            "53c7",
            "53C7A56E1AD3BA1DDA56E297BD282063",
            "53c7a56e1ad3ba1dda56e297bd28206g",
        ] {
            assert!(bad.parse::<AlertId>().is_err(), "{bad:?}");
        }
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
