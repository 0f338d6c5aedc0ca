//! Fitting the estimator on standardised inputs with smartcore, and checking that what the
//! artifact will score reproduces smartcore's own predictions.
//!
//! Logistic regression: the probability comes from the stored coefficients (smartcore has no
//! `predict_proba`), so the classes it implies at 0.5 must agree with smartcore's `predict`.
//! Random forest: the trees are read out of smartcore (see [`super::forest`]) and must reproduce
//! its predictions on every training row to 1e-9, or training fails. Boosted trees: fitted by
//! [`super::boost`]; the stored ensemble must reproduce the log-odds the fit reached on every
//! training row to 1e-9, or training fails.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use super::boost::fit_boosted;
use super::dataset::Row;
use super::forest::{extract_smartcore_forest, Forest};
use super::inputs::Inputs;
use super::record::TrainingRecord;
use super::train_config::{ForestParams, GbmParams, ModelKind, TrainConfig, TrainError};
use super::{DerivedSpec, Format, Kind, Model, ModelArtifact, ModelFeature};

/// What the fit produced, before a threshold is chosen.
pub(super) struct Fitted {
    /// The artifact with coefficients or trees, threshold 0.5 and an empty record.
    pub artifact: ModelArtifact,
    /// The estimator's parameters, for the record.
    pub params: Map<String, Value>,
    pub check: FitCheck,
}

/// How closely the artifact reproduces smartcore on the training rows.
pub(super) enum FitCheck {
    /// Share of rows where our probability ≥ 0.5 iff smartcore predicts churn.
    Agreement(f64),
    Forest {
        max_abs_difference: f64,
        nodes: usize,
        splits_per_feature: BTreeMap<String, usize>,
    },
    Boosted {
        max_abs_difference: f64,
        nodes: usize,
        splits_per_feature: BTreeMap<String, usize>,
        gain_share_per_feature: BTreeMap<String, f64>,
    },
}

/// An artifact of `kind` over `features`, in the oldest format that carries it, threshold 0.5
/// and nothing recorded yet.
pub(super) fn bare_artifact(
    kind: Kind,
    features: Vec<ModelFeature>,
    forest: Option<Forest>,
    derived: Option<DerivedSpec>,
) -> ModelArtifact {
    bare_artifact_with(kind, features, forest, derived, None)
}

/// [`bare_artifact`] with boosted trees.
fn bare_artifact_with(
    kind: Kind,
    features: Vec<ModelFeature>,
    forest: Option<Forest>,
    derived: Option<DerivedSpec>,
    gbm: Option<super::Boosted>,
) -> ModelArtifact {
    ModelArtifact {
        format: Format::for_content(kind, derived.is_some()),
        version: String::new(),
        kind,
        features,
        intercept: 0.0,
        threshold: 0.5,
        training: TrainingRecord::default(),
        forest,
        derived,
        gbm,
    }
}

/// Fits the model `cfg` asks for on the standardised `inputs` of `train_rows`.
pub(super) fn fit(
    inputs: &Inputs,
    train_rows: &[&Row],
    derived: Option<&DerivedSpec>,
    cfg: &TrainConfig,
) -> Result<Fitted, TrainError> {
    let x = DenseMatrix::from_2d_vec(&inputs.matrix).map_err(fit_error)?;
    let features: Vec<ModelFeature> = inputs.features.iter().map(|(_, f)| f.clone()).collect();
    match &cfg.kind {
        ModelKind::LogisticRegression { alpha } => {
            fit_logistic(&x, features, train_rows, derived, *alpha, cfg)
        }
        ModelKind::RandomForest(p) => fit_forest(&x, inputs, features, train_rows, derived, p),
        ModelKind::Gbm(p) => fit_gbm(inputs, features, train_rows, derived, p),
    }
}

fn fit_logistic(
    x: &DenseMatrix<f64>,
    mut features: Vec<ModelFeature>,
    train_rows: &[&Row],
    derived: Option<&DerivedSpec>,
    alpha: f64,
    cfg: &TrainConfig,
) -> Result<Fitted, TrainError> {
    let y: Vec<i32> = train_rows.iter().map(|r| i32::from(r.churned)).collect();
    let params = LogisticRegressionParameters::default().with_alpha(alpha);
    let fitted = LogisticRegression::fit(x, &y, params).map_err(fit_error)?;
    let coefs = fitted.coefficients();
    for (j, f) in features.iter_mut().enumerate() {
        f.coef = *coefs.get((0, j));
    }
    let mut artifact = bare_artifact(Kind::LogisticRegression, features, None, derived.cloned());
    artifact.intercept = *fitted.intercept().get((0, 0));
    let predicted = fitted.predict(x).map_err(fit_error)?;
    let ours = Model::new(artifact.clone(), "training", cfg.windows)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let agree = predicted
        .iter()
        .zip(train_rows)
        .filter(|(p, r)| (**p == 1) == (ours.score(&r.features) >= 0.5))
        .count();
    Ok(Fitted {
        artifact,
        params: object(json!({
            "alpha": alpha,
            "spline_knots": cfg.spline_knots,
            "solver": "smartcore LogisticRegression (L-BFGS)",
        })),
        check: FitCheck::Agreement(agree as f64 / train_rows.len() as f64),
    })
}

fn fit_forest(
    x: &DenseMatrix<f64>,
    inputs: &Inputs,
    features: Vec<ModelFeature>,
    train_rows: &[&Row],
    derived: Option<&DerivedSpec>,
    p: &ForestParams,
) -> Result<Fitted, TrainError> {
    let y: Vec<f64> = train_rows
        .iter()
        .map(|r| f64::from(u8::from(r.churned)))
        .collect();
    let mut params = RandomForestRegressorParameters::default()
        .with_n_trees(p.n_trees)
        .with_max_depth(p.max_depth)
        .with_min_samples_leaf(p.min_samples_leaf)
        .with_min_samples_split(2 * p.min_samples_leaf)
        .with_seed(p.seed);
    if let Some(m) = p.m {
        params = params.with_m(m.clamp(1, features.len()));
    }
    let fitted = RandomForestRegressor::fit(x, &y, params).map_err(fit_error)?;
    let expected = fitted.predict(x).map_err(fit_error)?;
    let trees = extract_smartcore_forest(&format!("{fitted:?}")).map_err(TrainError::Fit)?;
    let forest = Forest::new(trees, features.len()).map_err(TrainError::Fit)?;
    // Our trees must reproduce smartcore's predictions on every training row.
    let max_diff = inputs
        .matrix
        .iter()
        .zip(&expected)
        .map(|(row, e)| (forest.predict(row) - e).abs())
        .fold(0.0f64, f64::max);
    if max_diff > 1e-9 {
        return Err(TrainError::Fit(format!(
            "the forest read out of smartcore differs from smartcore's predictions by \
             {max_diff}; this smartcore version is not supported"
        )));
    }
    let mut splits = vec![0usize; features.len()];
    for tree in &forest.trees {
        for node in tree.iter().filter(|n| n.len() == 4) {
            splits[node[0] as usize] += 1;
        }
    }
    let check = FitCheck::Forest {
        max_abs_difference: max_diff,
        nodes: forest.node_count(),
        splits_per_feature: features
            .iter()
            .zip(&splits)
            .map(|(f, s)| (f.name.clone(), *s))
            .collect(),
    };
    Ok(Fitted {
        artifact: bare_artifact(
            Kind::RandomForestRegressor,
            features,
            Some(forest),
            derived.cloned(),
        ),
        params: object(json!({
            "n_trees": p.n_trees,
            "max_depth": p.max_depth,
            "min_samples_leaf": p.min_samples_leaf,
            "min_samples_split": 2 * p.min_samples_leaf,
            "m": p.m.map_or(json!("floor(sqrt(features))"), |m| json!(m)),
            "seed": p.seed,
            "estimator": "smartcore RandomForestRegressor on 0/1 labels (mean = probability)",
        })),
        check,
    })
}

fn fit_gbm(
    inputs: &Inputs,
    features: Vec<ModelFeature>,
    train_rows: &[&Row],
    derived: Option<&DerivedSpec>,
    p: &GbmParams,
) -> Result<Fitted, TrainError> {
    let y: Vec<bool> = train_rows.iter().map(|r| r.churned).collect();
    let fit = fit_boosted(&inputs.matrix, &y, p).map_err(TrainError::Boost)?;
    // The stored trees must score every training row as the fit left it.
    let max_diff = inputs
        .matrix
        .iter()
        .zip(&fit.train_logits)
        .map(|(row, z)| (fit.boosted.logit(row) - z).abs())
        .fold(0.0f64, f64::max);
    if max_diff > 1e-9 {
        return Err(TrainError::Boost(format!(
            "the stored trees differ from the fit's log-odds by {max_diff} on a training row"
        )));
    }
    let splits = fit.boosted.splits_per_feature(features.len());
    let total_gain: f64 = fit.gain.iter().sum();
    let check = FitCheck::Boosted {
        max_abs_difference: max_diff,
        nodes: fit.boosted.node_count(),
        splits_per_feature: features
            .iter()
            .zip(&splits)
            .map(|(f, s)| (f.name.clone(), *s))
            .collect(),
        gain_share_per_feature: features
            .iter()
            .zip(&fit.gain)
            .map(|(f, g)| {
                let share = if total_gain > 0.0 {
                    g / total_gain
                } else {
                    0.0
                };
                (f.name.clone(), (share * 1e6).round() / 1e6)
            })
            .collect(),
    };
    Ok(Fitted {
        artifact: bare_artifact_with(
            Kind::GradientBoostedTrees,
            features,
            None,
            derived.cloned(),
            Some(fit.boosted),
        ),
        params: object(json!({
            "n_trees": p.n_trees,
            "max_depth": p.max_depth,
            "min_samples_leaf": p.min_samples_leaf,
            "learning_rate": p.learning_rate,
            "l2": p.l2,
            "max_bins": p.max_bins,
            "estimator": "churnguard gradient boosting on logistic loss (histogram splits, \
                          no sampling)",
        })),
        check,
    })
}

fn fit_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Fit(e.to_string())
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
