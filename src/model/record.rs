//! The training record an artifact carries: which data, which protocol, which parameters and
//! what the evaluation measured.
//!
//! Typed, so a reader (the model card, `evaluate`'s defaults, telemetry) cannot misspell a key
//! and silently read nothing. Two rules keep every committed artifact loading with its
//! content-hash version unchanged: every field is optional and absent fields stay absent, and
//! keys this build does not know are kept (`extra`, flattened) and written back as they came.
//! The record is always written with its keys sorted (see [`serialize_sorted`]), the layout the
//! version hash was first defined over.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::bgnbd::BgNbdParams;
use super::quality::Evaluation;
use crate::{Millis, DAY_MS};

/// Keys of a record object this build does not model, kept verbatim.
pub type Extra = Map<String, Value>;

/// Everything training recorded about a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRecord>,
    /// Fingerprint of the event mapping the training events were read through; absent for the
    /// native schema. The service warns when it decodes with another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_mapping: Option<String>,
    /// How labels are defined, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Which users are rows at a cutoff, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<String>,
    /// `--active-within` in days; recorded as `null` when it defaulted to the horizon.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_within_days: Option<Option<Days>>,
    /// Training label horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<Days>,
    /// Training cutoffs, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_cutoffs: Option<Vec<String>>,
    /// The last training cutoff plus the horizon: no training label looks past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_labels_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_cutoff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_horizon_days: Option<Days>,
    /// The validation point, then every further out-of-time evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_points: Option<Vec<EvaluationPoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_dropped_as_constant: Option<Vec<String>>,
    /// Inputs equal to an earlier input on every training row (e.g. `events_30d` =
    /// `purchases_30d` on purchase-only data); absent when none was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_dropped_as_duplicate: Option<Vec<DuplicateInput>>,
    /// The estimator's parameters, which differ by kind; shown verbatim in the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
    /// How the threshold was chosen, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_objective: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<TrainingMetrics>,
    /// The BG/NBD fit, for models with derived inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgnbd: Option<BgNbdRecord>,
    /// The engine windows, recorded only when not the default (7, 30, 90 days), so default
    /// artifacts keep their versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl TrainingRecord {
    /// The evaluations recorded at training (validation first); empty when none were.
    pub fn evaluations(&self) -> &[Evaluation] {
        self.metrics
            .as_ref()
            .and_then(|m| m.evaluations.as_deref())
            .unwrap_or_default()
    }

    /// The record as JSON, keys sorted.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Which data a model saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub events: u64,
    /// Hash of every event's id, user, time and type (see `dataset::fingerprint`).
    pub fingerprint: String,
    pub first_event: String,
    pub last_event: String,
    /// The end of the last event's day: labels are known up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_known_until: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One evaluation cutoff and its label horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationPoint {
    pub cutoff: String,
    pub horizon_days: Days,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An input left out because it equals another on every training row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateInput {
    pub dropped: String,
    pub same_as: String,
}

/// What training measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<FitSummary>,
    /// Every evaluation point in full, validation first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<Vec<Evaluation>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The headline figures at the validation cutoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSummary {
    pub cutoff: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<Days>,
    pub rows: usize,
    pub churn_rate: f64,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub alert_rate: f64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// In-sample figures and the checks of the fit against the estimator's own predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    pub rows: usize,
    pub churn_rate: f64,
    pub roc_auc: Option<f64>,
    /// Logistic regression: share of rows where smartcore's class equals ours at 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smartcore_prediction_agreement: Option<f64>,
    /// Forest: largest difference between our trees and smartcore's predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_difference_to_smartcore_predict: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits_per_feature: Option<BTreeMap<String, usize>>,
    /// Boosted trees: largest difference between the log-odds the fit reached on a training
    /// row and what the stored artifact scores for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_difference_to_fit: Option<f64>,
    /// Boosted trees: each input's share of the total split gain (loss reduction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain_share_per_feature: Option<BTreeMap<String, f64>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The BG/NBD fit behind the derived inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbdRecord {
    pub params: BgNbdParams,
    pub time_unit_days: f64,
    pub expected_purchases_horizon_days: f64,
    /// Which snapshots the fit saw, in words.
    pub fitted_on: String,
    pub customers: usize,
    pub log_likelihood: f64,
    pub estimator: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A span in days, kept as the JSON number it was written as (older artifacts wrote whole
/// numbers as integers), so re-writing a record reproduces it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Days(serde_json::Number);

impl Days {
    /// `days` as a record value (a non-finite span, which no caller has, records as 0).
    pub fn new(days: f64) -> Days {
        Days(serde_json::Number::from_f64(days).unwrap_or_else(|| 0.into()))
    }

    /// A duration in milliseconds as days.
    pub fn of_millis(ms: Millis) -> Days {
        Days::new(ms as f64 / DAY_MS as f64)
    }

    pub fn get(&self) -> f64 {
        self.0.as_f64().unwrap_or(0.0)
    }

    /// The span in milliseconds, rounded.
    pub fn millis(&self) -> Millis {
        (self.get() * DAY_MS as f64).round() as Millis
    }
}

impl std::fmt::Display for Days {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A key that is present deserialises to `Some`, even when its value is `null`, so `null` and
/// absent stay apart.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Writes a record with its keys sorted, as every artifact so far was written and hashed.
pub fn serialize_sorted<T: Serialize, S: Serializer>(record: &T, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(record)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_nulls_and_whole_numbers_survive_a_round_trip() {
        let text = r#"{"active_within_days":null,"data":{"events":3,"fingerprint":"f","first_event":"a","last_event":"b","source":"x"},"horizon_days":60,"label":"l","metrics":{"training":{"churn_rate":0.5,"roc_auc":null,"rows":2}},"someday":[1,2.0]}"#;
        let record: TrainingRecord = serde_json::from_str(text).unwrap();
        assert_eq!(record.active_within_days, Some(None));
        assert_eq!(
            record.horizon_days.as_ref().map(Days::millis),
            Some(60 * DAY_MS)
        );
        assert_eq!(record.to_json().to_string(), text);
        let empty: TrainingRecord = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.to_json().to_string(), "{}");
        assert!(empty.evaluations().is_empty());
    }
}
