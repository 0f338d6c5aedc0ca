//! Offline training: labelled snapshots from a replay of history, then a smartcore fit.
//!
//! Rows come from replaying events in event-time order through the same [`Engine`] the service
//! runs and snapshotting every user's features at each cutoff; the label is "no purchase and no
//! login within the horizon after the cutoff". Validation is time-split only: the validation
//! cutoff lies at or after the last training cutoff plus the horizon, so no label used for
//! training looks into the validation period.

use ahash::AHashSet;
use serde_json::json;
use sha2::{Digest, Sha256};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use super::metrics::{at_threshold, average_precision, best_f1_threshold, roc_auc};
use super::{Model, ModelArtifact, ModelFeature, Transform, ARTIFACT_FORMAT};
use crate::engine::{Engine, EngineConfig};
use crate::event::{Event, EventKind};
use crate::features::{FeatureVector, FEATURE_NAMES};
use crate::{Millis, DAY_MS};

/// Why training could not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no events to train on")]
    NoEvents,
    #[error(
        "cutoff {cutoff} plus the {horizon_days}-day horizon ends after the last event ({last}); \
         its labels would be unknown — choose an earlier cutoff or a shorter horizon"
    )]
    CutoffTooLate {
        cutoff: String,
        horizon_days: i64,
        last: String,
    },
    #[error("validation cutoff {validation} must be at or after the last training cutoff plus the horizon ({earliest}), or future labels leak into training")]
    Leak {
        validation: String,
        earliest: String,
    },
    #[error("no cutoffs: give --cutoffs, or a longer history (at least two horizons)")]
    NoCutoffs,
    #[error("the {set} set has only one class ({positives} churners of {rows} rows): cannot fit or evaluate")]
    OneClass {
        set: &'static str,
        positives: usize,
        rows: usize,
    },
    #[error("smartcore failed to fit: {0}")]
    Fit(String),
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Label horizon: churned = no purchase and no login within this after the cutoff.
    pub horizon: Millis,
    /// Training cutoffs; empty = automatic (monthly, as many as fit before validation).
    pub train_cutoffs: Vec<Millis>,
    /// Validation cutoff; `None` = the latest cutoff whose horizon the data covers.
    pub validation_cutoff: Option<Millis>,
    /// L2 regularisation strength of the logistic regression.
    pub alpha: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            horizon: 90 * DAY_MS,
            train_cutoffs: Vec::new(),
            validation_cutoff: None,
            alpha: 1.0,
        }
    }
}

/// One labelled snapshot.
#[derive(Debug, Clone)]
pub struct Row {
    pub cutoff: Millis,
    pub user_id: String,
    pub features: FeatureVector,
    /// `true` = churned (no purchase and no login within the horizon).
    pub churned: bool,
}

/// Replays `events` (sorted by time) and snapshots every user active within the horizon before
/// each cutoff, labelled by what they did in the horizon after it.
pub fn labelled_snapshots(events: &[Event], cutoffs: &[Millis], horizon: Millis) -> Vec<Row> {
    let mut cutoffs = cutoffs.to_vec();
    cutoffs.sort_unstable();
    let mut engine = Engine::new(
        EngineConfig {
            allowed_lateness: Millis::MAX / 4,
            ..EngineConfig::default()
        },
        None,
    );
    let mut rows: Vec<Row> = Vec::new();
    // (cutoff, first row index of that cutoff, users who returned within the horizon)
    let mut pending: Vec<(Millis, usize, AHashSet<String>)> = Vec::new();
    let mut next = 0;
    let snapshot = |engine: &Engine, cutoff: Millis, rows: &mut Vec<Row>| {
        for (user, state, fv) in engine.snapshot(cutoff) {
            if cutoff - state.last_activity <= horizon {
                rows.push(Row {
                    cutoff,
                    user_id: user.to_string(),
                    features: fv,
                    churned: true,
                });
            }
        }
    };
    for e in events {
        while next < cutoffs.len() && cutoffs[next] < e.ts {
            pending.push((cutoffs[next], rows.len(), AHashSet::new()));
            snapshot(&engine, cutoffs[next], &mut rows);
            next += 1;
        }
        if matches!(e.kind, EventKind::Purchase | EventKind::Login) {
            for (c, _, returned) in pending.iter_mut() {
                if e.ts > *c && e.ts <= *c + horizon {
                    returned.insert(e.user_id.clone());
                }
            }
        }
        engine.advance(e.ts, &mut Vec::new());
        // Sorted input cannot be too late; erase requests simply drop the user.
        let _ = engine.apply(e);
    }
    for (i, (_, start, returned)) in pending.iter().enumerate() {
        let end = pending.get(i + 1).map_or(rows.len(), |p| p.1);
        for row in &mut rows[*start..end] {
            row.churned = !returned.contains(&row.user_id);
        }
    }
    rows
}

/// Training outcome: the artifact (unsaved) and a human summary.
pub struct Trained {
    pub artifact: ModelArtifact,
    pub summary: serde_json::Value,
}

/// Fingerprint of a training set: event count and a hash of ids, users and times, so the card
/// can say exactly which data a model saw.
pub fn fingerprint(events: &[Event]) -> String {
    let mut h = Sha256::new();
    for e in events {
        h.update(e.event_id.as_bytes());
        h.update(e.user_id.as_bytes());
        h.update(e.ts.to_be_bytes());
        h.update(e.kind.as_str().as_bytes());
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn transform_for(name: &str) -> Transform {
    // Ratios and trends are already scale-free; counts, spend and day spans are heavy-tailed.
    if name.ends_with("_trend") || name == "recency_vs_cycle" {
        Transform::Identity
    } else {
        Transform::Log1p
    }
}

/// Trains a logistic regression on `events` (sorted by time).
pub fn train(events: &[Event], cfg: &TrainConfig) -> Result<Trained, TrainError> {
    let (first, last) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (f.ts, l.ts),
        _ => return Err(TrainError::NoEvents),
    };
    let rfc = crate::alert::rfc3339;
    let validation = cfg.validation_cutoff.unwrap_or(last - cfg.horizon);
    let mut train_cutoffs = cfg.train_cutoffs.clone();
    if train_cutoffs.is_empty() {
        // Monthly cutoffs back from the last one that does not leak, keeping 30 days of history.
        let mut c = validation - cfg.horizon;
        while c >= first + 30 * DAY_MS && train_cutoffs.len() < 12 {
            train_cutoffs.push(c);
            c -= 30 * DAY_MS;
        }
    }
    if train_cutoffs.is_empty() {
        return Err(TrainError::NoCutoffs);
    }
    train_cutoffs.sort_unstable();
    for &c in train_cutoffs.iter().chain(std::iter::once(&validation)) {
        if c + cfg.horizon > last {
            return Err(TrainError::CutoffTooLate {
                cutoff: rfc(c),
                horizon_days: cfg.horizon / DAY_MS,
                last: rfc(last),
            });
        }
    }
    let latest_train = *train_cutoffs.last().unwrap_or(&validation);
    if validation < latest_train + cfg.horizon {
        return Err(TrainError::Leak {
            validation: rfc(validation),
            earliest: rfc(latest_train + cfg.horizon),
        });
    }

    let mut all_cutoffs = train_cutoffs.clone();
    all_cutoffs.push(validation);
    let rows = labelled_snapshots(events, &all_cutoffs, cfg.horizon);
    let (valid_rows, train_rows): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| r.cutoff == validation);
    for (set, rs) in [("training", &train_rows), ("validation", &valid_rows)] {
        let positives = rs.iter().filter(|r| r.churned).count();
        if positives == 0 || positives == rs.len() {
            return Err(TrainError::OneClass {
                set,
                positives,
                rows: rs.len(),
            });
        }
    }

    // Transform, then standardise with training statistics; drop constant features (they carry
    // no signal and would divide by zero).
    let transformed =
        |r: &Row, i: usize| transform_for(FEATURE_NAMES[i]).apply(r.features.values[i]);
    let n = train_rows.len() as f64;
    let mut features = Vec::new();
    for (i, name) in FEATURE_NAMES.iter().enumerate() {
        let mean = train_rows.iter().map(|r| transformed(r, i)).sum::<f64>() / n;
        let var = train_rows
            .iter()
            .map(|r| (transformed(r, i) - mean).powi(2))
            .sum::<f64>()
            / n;
        if var.sqrt() > 1e-9 {
            features.push((
                i,
                ModelFeature {
                    name: (*name).into(),
                    transform: transform_for(name),
                    mean,
                    std: var.sqrt(),
                    coef: 0.0,
                },
            ));
        }
    }
    let matrix = |rs: &[&Row]| -> Vec<Vec<f64>> {
        rs.iter()
            .map(|r| {
                features
                    .iter()
                    .map(|(i, f)| (transformed(r, *i) - f.mean) / f.std)
                    .collect()
            })
            .collect()
    };
    let x = DenseMatrix::from_2d_vec(&matrix(&train_rows))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let y: Vec<i32> = train_rows.iter().map(|r| i32::from(r.churned)).collect();
    let params = LogisticRegressionParameters::default().with_alpha(cfg.alpha);
    let fitted =
        LogisticRegression::fit(&x, &y, params).map_err(|e| TrainError::Fit(e.to_string()))?;
    let coefs = fitted.coefficients();
    for (j, (_, f)) in features.iter_mut().enumerate() {
        f.coef = *coefs.get((0, j));
    }
    let intercept = *fitted.intercept().get((0, 0));

    let mut artifact = ModelArtifact {
        format: ARTIFACT_FORMAT.into(),
        version: String::new(),
        kind: "logistic_regression".into(),
        features: features.into_iter().map(|(_, f)| f).collect(),
        intercept,
        threshold: 0.5,
        training: json!({}),
    };
    let model = Model::from_artifact(artifact.clone(), "training")
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let score_set = |rs: &[&Row]| -> (Vec<f64>, Vec<bool>) {
        (
            rs.iter().map(|r| model.score(&r.features)).collect(),
            rs.iter().map(|r| r.churned).collect(),
        )
    };
    let (train_scores, train_labels) = score_set(&train_rows);
    let (valid_scores, valid_labels) = score_set(&valid_rows);
    // smartcore's own predictions must agree with the probability computed from its coefficients.
    let predicted = fitted
        .predict(&x)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let agree = predicted
        .iter()
        .zip(&train_scores)
        .filter(|(p, s)| (**p == 1) == (**s >= 0.5))
        .count();
    // The alert threshold is chosen on the training rows (max F1) so validation stays unseen.
    let chosen = best_f1_threshold(&train_scores, &train_labels);
    artifact.threshold = (chosen.threshold * 1e6).round() / 1e6;
    let at = at_threshold(&valid_scores, &valid_labels, artifact.threshold);
    let churn_rate = |l: &[bool]| l.iter().filter(|&&b| b).count() as f64 / l.len() as f64;
    let metrics = json!({
        "validation": {
            "cutoff": rfc(validation),
            "rows": valid_rows.len(),
            "churn_rate": churn_rate(&valid_labels),
            "roc_auc": roc_auc(&valid_scores, &valid_labels),
            "pr_auc": average_precision(&valid_scores, &valid_labels),
            "precision": at.precision,
            "recall": at.recall,
            "f1": at.f1,
            "alert_rate": at.alert_rate,
        },
        "training": {
            "rows": train_rows.len(),
            "churn_rate": churn_rate(&train_labels),
            "roc_auc": roc_auc(&train_scores, &train_labels),
            "smartcore_prediction_agreement": agree as f64 / train_rows.len() as f64,
        },
    });
    artifact.training = json!({
        "data": {
            "events": events.len(),
            "fingerprint": fingerprint(events),
            "first_event": rfc(first),
            "last_event": rfc(last),
        },
        "label": "churned = no purchase and no login within the horizon after the cutoff",
        "horizon_days": cfg.horizon / DAY_MS,
        "train_cutoffs": train_cutoffs.iter().map(|&c| rfc(c)).collect::<Vec<_>>(),
        "validation_cutoff": rfc(validation),
        "params": { "alpha": cfg.alpha, "solver": "smartcore LogisticRegression (L-BFGS)" },
        "threshold_objective": "max F1 on the training rows",
        "metrics": metrics,
    });
    let summary = artifact.training.clone();
    Ok(Trained { artifact, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, SynthConfig};

    #[test]
    fn learns_that_silence_means_churn_on_synthetic_data() {
        let cfg = SynthConfig {
            users: 600,
            days: 300,
            end: 20_000 * DAY_MS,
            churn_share: 0.4,
            seed: 3,
        };
        let (_, events) = generate(&cfg);
        let trained = train(
            &events,
            &TrainConfig {
                horizon: 60 * DAY_MS,
                ..TrainConfig::default()
            },
        )
        .unwrap();
        let auc = trained.summary["metrics"]["validation"]["roc_auc"]
            .as_f64()
            .unwrap();
        assert!(auc > 0.8, "validation AUC {auc}");
        let agreement = trained.summary["metrics"]["training"]["smartcore_prediction_agreement"]
            .as_f64()
            .unwrap();
        assert!(
            agreement > 0.99,
            "our probability disagrees with smartcore's predict: {agreement}"
        );
        let recency = trained
            .artifact
            .features
            .iter()
            .find(|f| f.name == "days_since_last_activity")
            .unwrap();
        assert!(recency.coef > 0.0, "longer silence must raise churn risk");
    }

    #[test]
    fn refuses_a_validation_cutoff_that_leaks() {
        let cfg = SynthConfig {
            users: 50,
            days: 300,
            end: 20_000 * DAY_MS,
            churn_share: 0.4,
            seed: 3,
        };
        let (_, events) = generate(&cfg);
        let t0 = events[0].ts;
        let bad = TrainConfig {
            horizon: 60 * DAY_MS,
            train_cutoffs: vec![t0 + 100 * DAY_MS],
            validation_cutoff: Some(t0 + 120 * DAY_MS),
            alpha: 1.0,
        };
        assert!(matches!(train(&events, &bad), Err(TrainError::Leak { .. })));
    }

    #[test]
    fn labels_follow_the_horizon() {
        let ev = |u: &str, d: i64, k| Event {
            event_id: format!("{u}{d}"),
            user_id: u.into(),
            kind: k,
            ts: d * DAY_MS,
            amount: 1.0,
        };
        let events = vec![
            ev("stays", 0, EventKind::Login),
            ev("leaves", 1, EventKind::Purchase),
            ev("stays", 15, EventKind::Purchase),
            ev("late", 2, EventKind::Login),
            ev("late", 40, EventKind::Login),
        ];
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.ts);
        let rows = labelled_snapshots(&sorted, &[10 * DAY_MS], 20 * DAY_MS);
        let label = |u: &str| rows.iter().find(|r| r.user_id == u).unwrap().churned;
        assert!(!label("stays"));
        assert!(label("leaves"));
        assert!(label("late"), "a return after the horizon does not count");
    }
}
