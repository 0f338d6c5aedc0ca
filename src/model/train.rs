//! Offline training: labelled snapshots from a replay of history, then a fit (smartcore, or
//! churnguard's own gradient boosting).
//!
//! Rows are the labelled snapshots of [`super::dataset`] (the same engine the service runs; the
//! label is "no purchase and no login within the horizon after the cutoff"). Validation is time-split only: every validation
//! cutoff lies at or after the last training cutoff plus the training horizon, so no label used
//! for training looks past any validation cutoff. The validation labels may use a different
//! (longer) horizon than training — e.g. train on 13-week labels that end before the
//! validation cutoff, validate on 39-week labels after it (see `models/cdnow-*.md`).
//!
//! Models: logistic regression (probability from the coefficients) or a random-forest regressor
//! on 0/1 labels (probability = mean of the trees; trees stored in our own format, see
//! [`super::forest`]) or gradient-boosted trees on logistic loss (see [`super::boost`] and
//! [`super::trees`]). The threshold is chosen on the training rows, for max F1 or for an alert
//! budget (the top k % of users by risk).
//!
//! With `bgnbd` (or a `bgnbd_*` name in `features`) a BG/NBD model is fitted first, on the
//! training rows' purchase histories or on every user's at a given cutoff no later than the
//! validation cutoff (features only, no labels), and its P(alive) and expected purchases become
//! inputs like engine features; the fitted parameters go into the artifact (format 3).
//!
//! [`train`] reads as its phases: plan the cutoffs (`Plan`), snapshot and select the rows,
//! fit the derived inputs, standardise (`super::inputs`), fit (`super::fit`), choose the
//! threshold, evaluate, and build the record.

use super::bgnbd::{self, CustomerReader};
use super::dataset::{fingerprint, snapshots_for, DataSpan, Row, SnapshotSpec, RETURN_KINDS};
use super::evaluate::{evaluate_rows, DEFAULT_TOP_K_PCTS};
use super::fit::{self, FitCheck, Fitted};
use super::inputs::{self, FittedDerived, Inputs};
use super::quality::{best_f1_threshold, roc_auc, Evaluation};
use super::record::{
    BgNbdRecord, DataRecord, Days, EvaluationPoint, FitSummary, TrainingMetrics, TrainingRecord,
    ValidationSummary,
};
use super::{BgNbdSpec, DerivedSpec, Model, ModelArtifact, ModelError, DERIVED_NAMES};
use crate::event::Event;
use crate::features::{FeatureLayout, Windows};
use crate::{Millis, DAY_MS};

pub use super::train_config::{
    BgNbdConfig, ForestParams, GbmParams, ModelKind, ThresholdObjective, TrainConfig, TrainError,
};

/// A trained model and its training record as JSON (the same record the artifact carries).
pub struct Trained {
    /// The artifact, with its forest and derived transforms when it has them.
    pub artifact: ModelArtifact,
    pub summary: serde_json::Value,
}

impl Trained {
    /// Writes the artifact and fills in its version.
    pub fn save(&mut self, path: &std::path::Path) -> Result<(), ModelError> {
        self.artifact.save(path)
    }

    /// The trained model, ready to score.
    pub fn model(&self) -> Result<Model, ModelError> {
        Model::new(self.artifact.clone(), "training", self.artifact.windows()?)
    }
}

/// Trains a model on `events` (sorted by time): plan the cutoffs, snapshot the rows, fit the
/// derived inputs, standardise, fit, choose the threshold, evaluate, record.
pub fn train(events: &[Event], cfg: &TrainConfig) -> Result<Trained, TrainError> {
    let span = DataSpan::of(events).ok_or(TrainError::NoEvents)?;
    let plan = Plan::new(&span, cfg)?;
    let rows = snapshots_for(events, &plan.specs(cfg), cfg.progress, cfg.windows);
    let sets = RowSets::select(&rows, &plan, cfg.horizon)?;
    let layout = FeatureLayout::of(cfg.windows);
    let derived = fit_derived_inputs(&plan, &rows, &sets.train, layout, cfg)?;
    let inputs = inputs::standardise(
        &sets.train,
        derived.as_ref().map(|d| &d.fitted),
        layout,
        cfg,
    )?;
    let derived_spec = derived.as_ref().map(|d| d.fitted.0.clone());
    let fitted = fit::fit(&inputs, &sets.train, derived_spec.as_ref(), cfg)?;
    let mut artifact = fitted.artifact.clone();
    let (threshold, objective) = choose_threshold(&artifact, &sets.train, cfg)?;
    artifact.threshold = threshold;
    let model = Model::new(artifact.clone(), "training", cfg.windows).map_err(fit_failed)?;
    let evaluations: Vec<Evaluation> = plan
        .evals
        .iter()
        .zip(&sets.evals)
        .map(|(&(c, h), rs)| evaluate_rows(&model, rs, c, h, &DEFAULT_TOP_K_PCTS).0)
        .collect();
    artifact.training = build_record(RecordParts {
        events,
        span: &span,
        plan: &plan,
        cfg,
        inputs: &inputs,
        fitted: &fitted,
        train_scores: &objective.train_scores,
        train_labels: &sets.train.iter().map(|r| r.churned).collect::<Vec<_>>(),
        objective: objective.described,
        evaluations,
        bgnbd: derived.map(|d| d.record),
    });
    let summary = artifact.training.to_json();
    Ok(Trained { artifact, summary })
}

fn fit_failed(e: ModelError) -> TrainError {
    TrainError::Fit(e.to_string())
}

fn days(ms: Millis) -> f64 {
    ms as f64 / DAY_MS as f64
}

/// Which cutoffs training and evaluation use, checked for known labels and for leaks.
struct Plan {
    train_cutoffs: Vec<Millis>,
    /// The validation point first, then the further evaluations: `(cutoff, horizon)`.
    evals: Vec<(Millis, Millis)>,
    /// The BG/NBD settings, when derived inputs are fitted.
    bgnbd: Option<BgNbdConfig>,
}

impl Plan {
    fn new(span: &DataSpan, cfg: &TrainConfig) -> Result<Plan, TrainError> {
        let rfc = crate::time::rfc3339;
        let valid_horizon = cfg.validation_horizon.unwrap_or(cfg.horizon);
        let validation = cfg.validation_cutoff.unwrap_or(span.last - valid_horizon);
        let mut train_cutoffs = cfg.train_cutoffs.clone();
        if train_cutoffs.is_empty() {
            // Monthly cutoffs back from the last one that does not leak, keeping 30 days of
            // history.
            let mut c = validation - cfg.horizon;
            while c >= span.first + 30 * DAY_MS && train_cutoffs.len() < 12 {
                train_cutoffs.push(c);
                c -= 30 * DAY_MS;
            }
        }
        if train_cutoffs.is_empty() {
            return Err(TrainError::NoCutoffs);
        }
        train_cutoffs.sort_unstable();
        train_cutoffs.dedup();
        let mut evals = vec![(validation, valid_horizon)];
        evals.extend(cfg.extra_evaluations.iter().copied());
        let checks = train_cutoffs
            .iter()
            .map(|&c| (c, cfg.horizon))
            .chain(evals.iter().copied());
        for (c, h) in checks {
            if !span.covers(c, h) {
                return Err(TrainError::CutoffTooLate {
                    cutoff: rfc(c),
                    horizon_days: h / DAY_MS,
                    last: rfc(span.end),
                });
            }
        }
        let latest_train = *train_cutoffs.last().unwrap_or(&validation);
        for &(c, _) in &evals {
            if c < latest_train + cfg.horizon {
                return Err(TrainError::Leak {
                    validation: rfc(c),
                    earliest: rfc(latest_train + cfg.horizon),
                });
            }
        }
        // Derived inputs named in --features turn the BG/NBD fit on.
        let wants_derived = cfg
            .features
            .as_ref()
            .is_some_and(|names| names.iter().any(|n| DERIVED_NAMES.contains(&n.as_str())));
        let bgnbd = cfg
            .bgnbd
            .or_else(|| wants_derived.then(BgNbdConfig::default));
        if let Some(fit_at) = bgnbd.and_then(|b| b.fit_at) {
            if fit_at > validation {
                return Err(TrainError::BgNbdFitLeak {
                    fit_at: rfc(fit_at),
                    validation: rfc(validation),
                });
            }
        }
        Ok(Plan {
            train_cutoffs,
            evals,
            bgnbd,
        })
    }

    fn validation(&self) -> (Millis, Millis) {
        self.evals[0]
    }

    fn latest_train(&self) -> Millis {
        *self.train_cutoffs.last().unwrap_or(&self.validation().0)
    }

    /// Every snapshot to take: training cutoffs, evaluation points, and the BG/NBD fit
    /// snapshot (every user seen, zero horizon: its labels are never read).
    fn specs(&self, cfg: &TrainConfig) -> Vec<SnapshotSpec> {
        let spec = |(cutoff, horizon): (Millis, Millis)| SnapshotSpec {
            cutoff,
            horizon,
            active_within: cfg.active_within.unwrap_or(horizon),
        };
        let fit_spec = self
            .bgnbd
            .and_then(|b| b.fit_at)
            .map(|cutoff| SnapshotSpec {
                cutoff,
                horizon: 0,
                active_within: Millis::MAX / 4,
            });
        self.train_cutoffs
            .iter()
            .map(|&c| spec((c, cfg.horizon)))
            .chain(self.evals.iter().copied().map(spec))
            .chain(fit_spec)
            .collect()
    }
}

/// The training rows and each evaluation point's rows.
struct RowSets<'a> {
    train: Vec<&'a Row>,
    evals: Vec<Vec<&'a Row>>,
}

impl<'a> RowSets<'a> {
    /// Picks the rows of each set; training and validation must each hold both classes.
    fn select(rows: &'a [Row], plan: &Plan, horizon: Millis) -> Result<RowSets<'a>, TrainError> {
        let train: Vec<&Row> = rows
            .iter()
            .filter(|r| r.horizon == horizon && plan.train_cutoffs.binary_search(&r.cutoff).is_ok())
            .collect();
        let evals: Vec<Vec<&Row>> = plan
            .evals
            .iter()
            .map(|&(c, h)| {
                rows.iter()
                    .filter(|r| r.cutoff == c && r.horizon == h)
                    .collect()
            })
            .collect();
        for (set, rs) in [("training", &train), ("validation", &evals[0])] {
            let positives = rs.iter().filter(|r| r.churned).count();
            if positives == 0 || positives == rs.len() {
                return Err(TrainError::OneClass {
                    set,
                    positives,
                    rows: rs.len(),
                    returns: return_kinds(),
                });
            }
        }
        Ok(RowSets { train, evals })
    }
}

/// The return types as a list for messages: `purchase`, `login`.
fn return_kinds() -> String {
    let names: Vec<String> = RETURN_KINDS
        .iter()
        .map(|k| format!("`{}`", k.as_str()))
        .collect();
    names.join(" or ")
}

/// Fitted BG/NBD inputs and their record.
struct DerivedFit {
    fitted: FittedDerived,
    record: BgNbdRecord,
}

/// Fits BG/NBD, before anything reads its inputs: on the training rows' purchase histories, or
/// on every user's at the fit cutoff. `None` when the plan has no derived inputs.
fn fit_derived_inputs(
    plan: &Plan,
    rows: &[Row],
    train_rows: &[&Row],
    layout: &'static FeatureLayout,
    cfg: &TrainConfig,
) -> Result<Option<DerivedFit>, TrainError> {
    let Some(b) = plan.bgnbd else {
        return Ok(None);
    };
    let reader = CustomerReader::new(layout)?;
    const WEEK_DAYS: f64 = 7.0;
    let fit_rows: Vec<&Row> = match b.fit_at {
        Some(c) => rows
            .iter()
            .filter(|r| r.cutoff == c && r.horizon == 0)
            .collect(),
        None => train_rows.to_vec(),
    };
    let customers: Vec<bgnbd::Customer> = fit_rows
        .iter()
        .map(|r| reader.customer(&r.features, WEEK_DAYS))
        .collect();
    let (params, ll) = bgnbd::fit(&customers)?;
    let spec = BgNbdSpec {
        params,
        time_unit_days: WEEK_DAYS,
        horizon_days: days(b.horizon.unwrap_or(cfg.horizon)),
    };
    let record = BgNbdRecord {
        params,
        time_unit_days: WEEK_DAYS,
        expected_purchases_horizon_days: spec.horizon_days,
        fitted_on: b.fit_at.map_or_else(
            || "the training rows (every training cutoff)".to_string(),
            |c| format!("every user's snapshot at {}", crate::time::rfc3339(c)),
        ),
        customers: customers.len(),
        log_likelihood: ll,
        estimator: "maximum likelihood, Nelder-Mead on log-parameters".into(),
        extra: Default::default(),
    };
    Ok(Some(DerivedFit {
        fitted: (DerivedSpec { bgnbd: spec }, reader),
        record,
    }))
}

/// The chosen threshold's objective, and the training scores it was chosen on.
struct Objective {
    described: String,
    train_scores: Vec<f64>,
}

/// The alert threshold, chosen on the training rows so validation stays unseen: max F1, or the
/// score of the last user inside the alert budget. Rounded to 6 digits.
fn choose_threshold(
    artifact: &ModelArtifact,
    train_rows: &[&Row],
    cfg: &TrainConfig,
) -> Result<(f64, Objective), TrainError> {
    let model = Model::new(artifact.clone(), "training", cfg.windows).map_err(fit_failed)?;
    let train_scores: Vec<f64> = train_rows
        .iter()
        .map(|r| model.score(&r.features))
        .collect();
    let train_labels: Vec<bool> = train_rows.iter().map(|r| r.churned).collect();
    let (threshold, described) = match cfg.threshold {
        ThresholdObjective::MaxF1 => (
            best_f1_threshold(&train_scores, &train_labels).threshold,
            "max F1 on the training rows".to_string(),
        ),
        ThresholdObjective::AlertBudget { pct } => {
            let mut sorted = train_scores.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let k = ((sorted.len() as f64 * pct / 100.0).ceil() as usize).clamp(1, sorted.len());
            (
                sorted[k - 1],
                format!("alert budget: the top {pct}% of training rows by risk"),
            )
        }
    };
    Ok((
        ((threshold * 1e6).round() / 1e6).clamp(0.0, 1.0),
        Objective {
            described,
            train_scores,
        },
    ))
}

/// Everything the training record is built from.
struct RecordParts<'a> {
    events: &'a [Event],
    span: &'a DataSpan,
    plan: &'a Plan,
    cfg: &'a TrainConfig,
    inputs: &'a Inputs,
    fitted: &'a Fitted,
    train_scores: &'a [f64],
    train_labels: &'a [bool],
    objective: String,
    evaluations: Vec<Evaluation>,
    bgnbd: Option<BgNbdRecord>,
}

/// The training record: data, protocol, parameters and every measurement.
fn build_record(p: RecordParts<'_>) -> TrainingRecord {
    let rfc = crate::time::rfc3339;
    let cfg = p.cfg;
    let (validation, valid_horizon) = p.plan.validation();
    let population = match cfg.active_within {
        Some(a) if a >= Millis::MAX / 8 => "every user seen before the cutoff".to_string(),
        Some(a) => format!("users active within {} days before the cutoff", days(a)),
        None => "users active within the label horizon before the cutoff".to_string(),
    };
    let dropped_duplicate = &p.inputs.dropped_duplicate;
    TrainingRecord {
        event_mapping: cfg.event_mapping.clone(),
        data: Some(DataRecord {
            events: p.events.len() as u64,
            fingerprint: fingerprint(p.events),
            first_event: rfc(p.span.first),
            last_event: rfc(p.span.last),
            labels_known_until: Some(rfc(p.span.end)),
            extra: Default::default(),
        }),
        label: Some(format!(
            "churned = no {} within the horizon after the cutoff",
            RETURN_KINDS.map(|k| k.as_str()).join(" and no ")
        )),
        population: Some(population),
        active_within_days: Some(cfg.active_within.map(Days::of_millis)),
        horizon_days: Some(Days::of_millis(cfg.horizon)),
        train_cutoffs: Some(p.plan.train_cutoffs.iter().map(|&c| rfc(c)).collect()),
        training_labels_end: Some(rfc(p.plan.latest_train() + cfg.horizon)),
        validation_cutoff: Some(rfc(validation)),
        validation_horizon_days: Some(Days::of_millis(valid_horizon)),
        evaluation_points: Some(
            p.plan
                .evals
                .iter()
                .map(|&(c, h)| EvaluationPoint {
                    cutoff: rfc(c),
                    horizon_days: Days::of_millis(h),
                    extra: Default::default(),
                })
                .collect(),
        ),
        features_dropped_as_constant: Some(
            p.inputs
                .dropped_constant
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        // Only when some were: records of models without duplicates stay as they were.
        features_dropped_as_duplicate: (!dropped_duplicate.is_empty())
            .then(|| dropped_duplicate.clone()),
        params: Some(p.fitted.params.clone()),
        threshold_objective: Some(p.objective.clone()),
        metrics: Some(training_metrics(&p, validation, valid_horizon)),
        bgnbd: p.bgnbd,
        // Only when not the default, so default artifacts keep the versions they had before
        // windows were configurable.
        windows: (cfg.windows != Windows::default()).then(|| cfg.windows.to_string()),
        extra: Default::default(),
    }
}

fn training_metrics(p: &RecordParts<'_>, validation: Millis, horizon: Millis) -> TrainingMetrics {
    let v = &p.evaluations[0];
    let labels = p.train_labels;
    let churn_rate = labels.iter().filter(|&&b| b).count() as f64 / labels.len() as f64;
    let mut fit = FitSummary {
        rows: labels.len(),
        churn_rate,
        roc_auc: roc_auc(p.train_scores, labels),
        smartcore_prediction_agreement: None,
        max_abs_difference_to_smartcore_predict: None,
        nodes: None,
        splits_per_feature: None,
        max_abs_difference_to_fit: None,
        gain_share_per_feature: None,
        extra: Default::default(),
    };
    match &p.fitted.check {
        FitCheck::Agreement(a) => fit.smartcore_prediction_agreement = Some(*a),
        FitCheck::Forest {
            max_abs_difference,
            nodes,
            splits_per_feature,
        } => {
            fit.max_abs_difference_to_smartcore_predict = Some(*max_abs_difference);
            fit.nodes = Some(*nodes);
            fit.splits_per_feature = Some(splits_per_feature.clone());
        }
        FitCheck::Boosted {
            max_abs_difference,
            nodes,
            splits_per_feature,
            gain_share_per_feature,
        } => {
            fit.max_abs_difference_to_fit = Some(*max_abs_difference);
            fit.nodes = Some(*nodes);
            fit.splits_per_feature = Some(splits_per_feature.clone());
            fit.gain_share_per_feature = Some(gain_share_per_feature.clone());
        }
    }
    TrainingMetrics {
        validation: Some(ValidationSummary {
            cutoff: crate::time::rfc3339(validation),
            horizon_days: Some(Days::of_millis(horizon)),
            rows: v.rows,
            churn_rate: v.churn_rate,
            roc_auc: v.roc_auc,
            pr_auc: v.pr_auc,
            precision: v.at_threshold.precision,
            recall: v.at_threshold.recall,
            f1: v.at_threshold.f1,
            alert_rate: v.at_threshold.alert_rate,
            extra: Default::default(),
        }),
        training: Some(fit),
        evaluations: Some(p.evaluations.clone()),
        extra: Default::default(),
    }
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

        // With BG/NBD: its inputs are in the artifact, which scores as it did in training.
        let with = train(
            &events,
            &TrainConfig {
                horizon: 60 * DAY_MS,
                bgnbd: Some(BgNbdConfig::default()),
                ..TrainConfig::default()
            },
        )
        .unwrap();
        assert_eq!(with.artifact.format, crate::model::Format::V3);
        assert!(with
            .artifact
            .features
            .iter()
            .any(|f| f.name == "bgnbd_expected_purchases"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bg.json");
        let mut saved = with.model().unwrap();
        saved.save(&path).unwrap();
        let loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.version(), saved.version());
        let auc = with.summary["metrics"]["validation"]["roc_auc"]
            .as_f64()
            .unwrap();
        assert!(auc > 0.8, "validation AUC with BG/NBD {auc}");
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
            ..TrainConfig::default()
        };
        assert!(matches!(train(&events, &bad), Err(TrainError::Leak { .. })));
        // BG/NBD reads no labels, but its fit snapshot still must not look past validation.
        let validation = t0 + 200 * DAY_MS;
        let bgnbd_late = TrainConfig {
            horizon: 60 * DAY_MS,
            train_cutoffs: vec![t0 + 100 * DAY_MS],
            validation_cutoff: Some(validation),
            bgnbd: Some(BgNbdConfig {
                horizon: None,
                fit_at: Some(validation + DAY_MS),
            }),
            ..TrainConfig::default()
        };
        assert!(matches!(
            train(&events, &bgnbd_late),
            Err(TrainError::BgNbdFitLeak { .. })
        ));
    }
}
