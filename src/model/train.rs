//! Offline training: labelled snapshots from a replay of history, then a smartcore fit.
//!
//! Rows come from replaying events in event-time order through the same [`Engine`] the service
//! runs and snapshotting every user's features at each cutoff; the label is "no purchase and no
//! login within the horizon after the cutoff". Validation is time-split only: every validation
//! cutoff lies at or after the last training cutoff plus the training horizon, so no label used
//! for training looks past any validation cutoff. The validation labels may use a different
//! (longer) horizon than training — e.g. train on 13-week labels that end before the
//! validation cutoff, validate on 39-week labels after it (see `models/cdnow-*.md`).
//!
//! Models: logistic regression (probability from the coefficients) or a random-forest regressor
//! on 0/1 labels (probability = mean of the trees; trees stored in our own format, see
//! [`super::forest`]). The threshold is chosen on the training rows, for max F1 or for an alert
//! budget (the top k % of users by risk).
//!
//! With `bgnbd` (or a `bgnbd_*` name in `features`) a BG/NBD model is fitted first, on the
//! training rows' purchase histories or on every user's at a given cutoff no later than the
//! validation cutoff (features only, no labels), and its P(alive) and expected purchases become
//! inputs like engine features; the fitted parameters go into the artifact (format 3).

use ahash::AHashMap;
use serde_json::json;
use sha2::{Digest, Sha256};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use super::bgnbd::{self, CustomerReader};
use super::evaluate::{evaluate_rows, Evaluation, DEFAULT_TOP_K_PCTS};
use super::forest::{extract_smartcore_forest, Forest};
use super::metrics::{best_f1_threshold, roc_auc};
use super::{
    input_index, input_name, BgNbdSpec, DerivedSpec, Model, ModelArtifact, ModelFeature, Transform,
    ARTIFACT_FORMAT, ARTIFACT_FORMAT_V2, ARTIFACT_FORMAT_V3, DERIVED_NAMES, KIND_FOREST, KIND_LR,
    NUM_DERIVED,
};
use crate::engine::{Engine, EngineConfig};
use crate::event::{Event, EventKind};
use crate::features::{FeatureLayout, FeatureVector, Windows, MAX_FEATURES};
use crate::{Millis, DAY_MS};

/// Why training could not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no events to train on")]
    NoEvents,
    #[error(
        "cutoff {cutoff} plus the {horizon_days}-day horizon ends after the data ({last}); \
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
    #[error("unknown feature {0:?} in --features (known: {1})")]
    UnknownFeature(String, String),
    #[error("smartcore failed to fit: {0}")]
    Fit(String),
    #[error("BG/NBD: {0}")]
    BgNbd(#[from] bgnbd::BgNbdError),
    #[error("the BG/NBD fit cutoff {fit_at} lies after the validation cutoff {validation}: its features would see the validation period")]
    BgNbdFitLeak { fit_at: String, validation: String },
}

/// How to fit the BG/NBD derived inputs (see [`super::bgnbd`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BgNbdConfig {
    /// Horizon of `bgnbd_expected_purchases`; `None` = the training label horizon.
    pub horizon: Option<Millis>,
    /// Fit on every user's snapshot at this cutoff (features only, no labels, so any cutoff up
    /// to the validation cutoff is honest); `None` = on the training rows.
    pub fit_at: Option<Millis>,
}

/// Which model to fit.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelKind {
    /// L2-regularised logistic regression (smartcore, L-BFGS).
    LogisticRegression { alpha: f64 },
    /// smartcore random-forest regressor on 0/1 labels.
    RandomForest(ForestParams),
}

/// Random-forest hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestParams {
    pub n_trees: usize,
    pub max_depth: u16,
    pub min_samples_leaf: usize,
    /// Features tried per split; `None` = ⌊√p⌋ (smartcore's default).
    pub m: Option<usize>,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: 6,
            min_samples_leaf: 50,
            m: None,
            seed: 42,
        }
    }
}

/// How the alert threshold is chosen (on the training rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdObjective {
    /// The threshold maximising F1.
    MaxF1,
    /// Alert the top `pct` % of users by risk: the (100 − pct) % quantile of training scores.
    AlertBudget { pct: f64 },
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Training label horizon: churned = no purchase and no login within this after the cutoff.
    pub horizon: Millis,
    /// Training cutoffs; empty = automatic (monthly, as many as fit before validation).
    pub train_cutoffs: Vec<Millis>,
    /// Validation cutoff; `None` = the latest cutoff whose horizon the data covers.
    pub validation_cutoff: Option<Millis>,
    /// Horizon of the validation labels; `None` = `horizon`.
    pub validation_horizon: Option<Millis>,
    /// Further out-of-time evaluations `(cutoff, horizon)`, each also after the training labels.
    pub extra_evaluations: Vec<(Millis, Millis)>,
    /// Rows at a cutoff are the users active within this before it; `None` = the cutoff's
    /// horizon (users silent longer than a horizon have churned already).
    pub active_within: Option<Millis>,
    /// Restrict the model to these features (in layout order); `None` = all. Names of derived
    /// inputs ([`DERIVED_NAMES`]) turn on the BG/NBD fit with default settings.
    pub features: Option<Vec<String>>,
    /// Fit BG/NBD and offer its derived inputs to the model (all of them when `features` is
    /// `None`).
    pub bgnbd: Option<BgNbdConfig>,
    /// Sliding windows of the engine the rows come from: they decide the feature list, and the
    /// artifact records them when they are not the default.
    pub windows: Windows,
    pub kind: ModelKind,
    /// Logistic regression only: spline knots per feature (0 = linear in the transformed
    /// feature). Each feature gets this many hinge terms at quantiles of its training values,
    /// stored in the artifact as `hinge`/`log1p_hinge` transforms.
    pub spline_knots: usize,
    pub threshold: ThresholdObjective,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            horizon: 90 * DAY_MS,
            train_cutoffs: Vec::new(),
            validation_cutoff: None,
            validation_horizon: None,
            extra_evaluations: Vec::new(),
            active_within: None,
            features: None,
            bgnbd: None,
            windows: Windows::default(),
            kind: ModelKind::LogisticRegression { alpha: 1.0 },
            spline_knots: 0,
            threshold: ThresholdObjective::MaxF1,
            progress: false,
        }
    }
}

/// One labelled snapshot.
#[derive(Debug, Clone)]
pub struct Row {
    pub cutoff: Millis,
    /// Label horizon of this row.
    pub horizon: Millis,
    pub user_id: String,
    pub features: FeatureVector,
    /// `true` = churned (no purchase and no login within the horizon).
    pub churned: bool,
}

/// Where to snapshot: at `cutoff`, users active within `active_within` before it, labelled
/// over `horizon` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSpec {
    pub cutoff: Millis,
    pub horizon: Millis,
    pub active_within: Millis,
}

/// Replays `events` (sorted by time) and snapshots every user active within the horizon before
/// each cutoff, labelled by what they did in the horizon after it.
pub fn labelled_snapshots(events: &[Event], cutoffs: &[Millis], horizon: Millis) -> Vec<Row> {
    let specs: Vec<SnapshotSpec> = cutoffs
        .iter()
        .map(|&cutoff| SnapshotSpec {
            cutoff,
            horizon,
            active_within: horizon,
        })
        .collect();
    snapshots(events, &specs, false)
}

/// A progress bar on stderr, drawn only when asked for and stderr is a terminal.
pub fn progress_bar(len: u64, enabled: bool, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !(enabled && std::io::stderr().is_terminal()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Replays `events` (sorted by time) through one engine and takes every snapshot in `specs`
/// (any order; the same cutoff may appear with several horizons). Rows come out grouped by
/// spec, in the order of `specs` sorted by (cutoff, horizon). Default windows; see
/// [`snapshots_for`].
pub fn snapshots(events: &[Event], specs: &[SnapshotSpec], progress: bool) -> Vec<Row> {
    snapshots_for(events, specs, progress, Windows::default())
}

/// [`snapshots`] with the features of `windows`.
pub fn snapshots_for(
    events: &[Event],
    specs: &[SnapshotSpec],
    progress: bool,
    windows: Windows,
) -> Vec<Row> {
    let mut specs = specs.to_vec();
    specs.sort_by_key(|s| (s.cutoff, s.horizon));
    specs.dedup();
    let mut engine = Engine::new(
        EngineConfig {
            allowed_lateness: Millis::MAX / 4,
            windows,
            ..EngineConfig::default()
        },
        None,
    );
    let mut rows: Vec<Row> = Vec::new();
    // Per spec: first row index, and the users who returned within its horizon.
    let mut taken: Vec<(SnapshotSpec, usize)> = Vec::new();
    // Latest purchase-or-login time per user among events after the earliest snapshot: a user
    // returned within spec s iff some such event lies in (cutoff, cutoff + horizon]. Kept as the
    // sorted list of return times per user (purchases and logins only).
    let mut returns: AHashMap<String, Vec<Millis>> = AHashMap::new();
    let mut next = 0;
    let bar = progress_bar(events.len() as u64, progress, "replaying");
    for (k, e) in events.iter().enumerate() {
        while next < specs.len() && specs[next].cutoff < e.ts {
            let spec = specs[next];
            taken.push((spec, rows.len()));
            for (user, state, fv) in engine.snapshot(spec.cutoff) {
                if spec.cutoff - state.last_activity_ms() <= spec.active_within {
                    rows.push(Row {
                        cutoff: spec.cutoff,
                        horizon: spec.horizon,
                        user_id: user.to_string(),
                        features: fv,
                        churned: true,
                    });
                }
            }
            next += 1;
        }
        if !taken.is_empty() && matches!(e.kind, EventKind::Purchase | EventKind::Login) {
            returns.entry(e.user_id.clone()).or_default().push(e.ts);
        }
        engine.advance(e.ts, &mut Vec::new());
        // Sorted input cannot be too late; erase requests simply drop the user.
        let _ = engine.apply(e);
        if k % 8192 == 0 {
            bar.set_position(k as u64);
        }
    }
    bar.finish_and_clear();
    for (i, (spec, start)) in taken.iter().enumerate() {
        let end = taken.get(i + 1).map_or(rows.len(), |p| p.1);
        for row in &mut rows[*start..end] {
            let came_back = returns.get(&row.user_id).is_some_and(|ts| {
                // `ts` is sorted (events are): the first return after the cutoff decides.
                let j = ts.partition_point(|&t| t <= spec.cutoff);
                <[Millis]>::get(ts, j).is_some_and(|&t| t <= spec.cutoff + spec.horizon)
            });
            row.churned = !came_back;
        }
    }
    rows
}

pub struct Trained {
    pub artifact: ModelArtifact,
    /// The trees of a forest model.
    pub forest: Option<Forest>,
    /// The fitted derived-input transforms (BG/NBD), when used.
    pub derived: Option<DerivedSpec>,
    pub summary: serde_json::Value,
}

impl Trained {
    /// Writes the artifact (with the forest and derived transforms, when present) and fills in
    /// its version.
    pub fn save(&mut self, path: &std::path::Path) -> Result<(), super::ModelError> {
        self.artifact
            .save_full(self.forest.as_ref(), self.derived.as_ref(), path)
    }

    /// The trained model, ready to score.
    pub fn model(&self) -> Result<Model, super::ModelError> {
        let windows = self.artifact.windows()?;
        Model::from_parts_full(
            self.artifact.clone(),
            self.forest.clone(),
            self.derived.clone(),
            "training",
            windows,
        )
    }
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
    format!("sha256:{}", crate::hex_prefix(&h.finalize(), 8))
}

fn transform_for(name: &str) -> Transform {
    // Ratios, trends and probabilities are already scale-free; counts, spend, day spans and
    // expected purchases are heavy-tailed.
    if name.ends_with("_trend") || name == "recency_vs_cycle" || name == "bgnbd_p_alive" {
        Transform::Identity
    } else {
        Transform::Log1p
    }
}

/// Adds, after each feature, up to `knots` hinge terms at the quantiles `j / (knots + 1)` of its
/// transformed training values (a linear spline); knots that coincide or leave a constant term
/// are skipped. Each term is standardised with training statistics like any feature.
fn with_spline_terms(
    features: Vec<(usize, ModelFeature)>,
    rows: &[[f64; MAX_INPUTS]],
    knots: usize,
) -> Vec<(usize, ModelFeature)> {
    let mut out = Vec::with_capacity(features.len() * (knots + 1));
    for (i, f) in features {
        let mut values: Vec<f64> = rows.iter().map(|r| f.transform.apply(r[i])).collect();
        values.sort_by(f64::total_cmp);
        let mut placed: Vec<f64> = Vec::new();
        for j in 1..=knots {
            let q = values[(values.len() * j / (knots + 1)).min(values.len() - 1)];
            if placed.iter().any(|k| (k - q).abs() < 1e-9) {
                continue;
            }
            placed.push(q);
        }
        let base = f.transform;
        out.push((i, f.clone()));
        for knot in placed {
            let t = base.hinge(knot);
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| base_hinge(v, knot)).sum::<f64>() / n;
            let var = values
                .iter()
                .map(|&v| (base_hinge(v, knot) - mean).powi(2))
                .sum::<f64>()
                / n;
            if var.sqrt() > 1e-6 {
                out.push((
                    i,
                    ModelFeature {
                        name: f.name.clone(),
                        transform: t,
                        mean,
                        std: var.sqrt(),
                        coef: 0.0,
                    },
                ));
            }
        }
    }
    out
}

/// Most inputs of any model: the engine's features, then the derived inputs.
const MAX_INPUTS: usize = MAX_FEATURES + NUM_DERIVED;

/// A row's raw inputs: its layout's features, then the derived ones (0 without BG/NBD; nothing
/// reads them then), then zeros.
fn raw_inputs(
    f: &FeatureVector,
    derived: Option<&(DerivedSpec, CustomerReader)>,
) -> [f64; MAX_INPUTS] {
    let n = f.layout().len();
    let mut out = [0.0; MAX_INPUTS];
    out[..n].copy_from_slice(f.as_slice());
    if let Some((d, reader)) = derived {
        out[n..n + NUM_DERIVED].copy_from_slice(&d.bgnbd.values(reader, f));
    }
    out
}

/// A hinge on an already-transformed value.
fn base_hinge(transformed: f64, knot: f64) -> f64 {
    (transformed - knot).max(0.0)
}

/// The end of the data's label coverage: the end of the UTC day of the last event (sources with
/// day resolution, like CDNOW, cover the whole of their last day).
pub fn data_end(last: Millis) -> Millis {
    (last.div_euclid(DAY_MS) + 1) * DAY_MS
}

fn days(ms: Millis) -> f64 {
    ms as f64 / DAY_MS as f64
}

/// Trains a model on `events` (sorted by time).
pub fn train(events: &[Event], cfg: &TrainConfig) -> Result<Trained, TrainError> {
    let (first, last) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (f.ts, l.ts),
        _ => return Err(TrainError::NoEvents),
    };
    let rfc = crate::time::rfc3339;
    let end = data_end(last);
    let valid_horizon = cfg.validation_horizon.unwrap_or(cfg.horizon);
    let validation = cfg.validation_cutoff.unwrap_or(last - valid_horizon);
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
    train_cutoffs.dedup();
    let mut evals = vec![(validation, valid_horizon)];
    evals.extend(cfg.extra_evaluations.iter().copied());
    let checks = train_cutoffs
        .iter()
        .map(|&c| (c, cfg.horizon))
        .chain(evals.iter().copied());
    for (c, h) in checks {
        if c + h > end {
            return Err(TrainError::CutoffTooLate {
                cutoff: rfc(c),
                horizon_days: h / DAY_MS,
                last: rfc(end),
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
    let bgnbd_cfg = cfg
        .bgnbd
        .or_else(|| wants_derived.then(BgNbdConfig::default));
    if let Some(fit_at) = bgnbd_cfg.and_then(|b| b.fit_at) {
        if fit_at > validation {
            return Err(TrainError::BgNbdFitLeak {
                fit_at: rfc(fit_at),
                validation: rfc(validation),
            });
        }
    }
    let active_within = |h: Millis| cfg.active_within.unwrap_or(h);
    let spec = |(cutoff, horizon): (Millis, Millis)| SnapshotSpec {
        cutoff,
        horizon,
        active_within: active_within(horizon),
    };
    // The BG/NBD fit snapshot: every user seen, with a zero horizon (its labels are never read).
    let fit_spec = bgnbd_cfg.and_then(|b| b.fit_at).map(|cutoff| SnapshotSpec {
        cutoff,
        horizon: 0,
        active_within: Millis::MAX / 4,
    });
    let specs: Vec<SnapshotSpec> = train_cutoffs
        .iter()
        .map(|&c| spec((c, cfg.horizon)))
        .chain(evals.iter().copied().map(spec))
        .chain(fit_spec)
        .collect();
    let rows = snapshots_for(events, &specs, cfg.progress, cfg.windows);
    let layout = FeatureLayout::of(cfg.windows);
    let train_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.horizon == cfg.horizon && train_cutoffs.binary_search(&r.cutoff).is_ok())
        .collect();
    let eval_rows: Vec<Vec<&Row>> = evals
        .iter()
        .map(|&(c, h)| {
            rows.iter()
                .filter(|r| r.cutoff == c && r.horizon == h)
                .collect()
        })
        .collect();
    for (set, rs) in [("training", &train_rows), ("validation", &eval_rows[0])] {
        let positives = rs.iter().filter(|r| r.churned).count();
        if positives == 0 || positives == rs.len() {
            return Err(TrainError::OneClass {
                set,
                positives,
                rows: rs.len(),
            });
        }
    }

    // BG/NBD, fitted before anything reads its inputs: on the training rows' purchase
    // histories, or on every user's at the fit cutoff.
    let mut bgnbd_record = serde_json::Value::Null;
    let derived: Option<(DerivedSpec, CustomerReader)> = match bgnbd_cfg {
        None => None,
        Some(b) => {
            let reader = CustomerReader::new(layout)?;
            const WEEK_DAYS: f64 = 7.0;
            let fit_rows: Vec<&Row> = match b.fit_at {
                Some(c) => rows
                    .iter()
                    .filter(|r| r.cutoff == c && r.horizon == 0)
                    .collect(),
                None => train_rows.clone(),
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
            bgnbd_record = json!({
                "params": params,
                "time_unit_days": WEEK_DAYS,
                "expected_purchases_horizon_days": spec.horizon_days,
                "fitted_on": b.fit_at.map_or_else(
                    || "the training rows (every training cutoff)".to_string(),
                    |c| format!("every user's snapshot at {}", rfc(c)),
                ),
                "customers": customers.len(),
                "log_likelihood": ll,
                "estimator": "maximum likelihood, Nelder-Mead on log-parameters",
            });
            Some((DerivedSpec { bgnbd: spec }, reader))
        }
    };
    let train_raw: Vec<[f64; MAX_INPUTS]> = train_rows
        .iter()
        .map(|r| raw_inputs(&r.features, derived.as_ref()))
        .collect();

    // Which features may enter the model.
    let allowed: Vec<usize> = match &cfg.features {
        None => (0..layout.len())
            .chain((layout.len()..layout.len() + NUM_DERIVED).filter(|_| derived.is_some()))
            .collect(),
        Some(names) => {
            let mut idx = names
                .iter()
                .map(|n| {
                    input_index(layout, n).ok_or_else(|| {
                        TrainError::UnknownFeature(
                            n.clone(),
                            layout
                                .names()
                                .iter()
                                .chain(&DERIVED_NAMES)
                                .copied()
                                .collect::<Vec<_>>()
                                .join(", "),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            idx.sort_unstable();
            idx.dedup();
            idx
        }
    };

    // Transform, then standardise with training statistics; drop constant features (they carry
    // no signal and would divide by zero).
    let transformed =
        |r: &[f64; MAX_INPUTS], i: usize| transform_for(input_name(layout, i)).apply(r[i]);
    let n = train_rows.len() as f64;
    let mut features = Vec::new();
    let mut dropped = Vec::new();
    for &i in &allowed {
        let name = input_name(layout, i);
        let mean = train_raw.iter().map(|r| transformed(r, i)).sum::<f64>() / n;
        let var = train_raw
            .iter()
            .map(|r| (transformed(r, i) - mean).powi(2))
            .sum::<f64>()
            / n;
        if var.sqrt() > 1e-9 {
            features.push((
                i,
                ModelFeature {
                    name: name.into(),
                    transform: transform_for(name),
                    mean,
                    std: var.sqrt(),
                    coef: 0.0,
                },
            ));
        } else {
            dropped.push(name);
        }
    }
    if cfg.spline_knots > 0 && matches!(cfg.kind, ModelKind::LogisticRegression { .. }) {
        features = with_spline_terms(features, &train_raw, cfg.spline_knots);
    }
    let train_matrix: Vec<Vec<f64>> = train_raw
        .iter()
        .map(|r| {
            features
                .iter()
                .map(|(i, f)| (f.transform.apply(r[*i]) - f.mean) / f.std)
                .collect()
        })
        .collect();
    let derived = derived.map(|(d, _)| d);
    let format = |base: &str| {
        if derived.is_some() {
            ARTIFACT_FORMAT_V3.to_string()
        } else {
            base.to_string()
        }
    };
    let x = DenseMatrix::from_2d_vec(&train_matrix).map_err(|e| TrainError::Fit(e.to_string()))?;
    let mut artifact = ModelArtifact {
        format: format(ARTIFACT_FORMAT),
        version: String::new(),
        kind: KIND_LR.into(),
        features: Vec::new(),
        intercept: 0.0,
        threshold: 0.5,
        training: json!({}),
    };
    let mut fit_check = json!({});
    let (forest, params) = match &cfg.kind {
        ModelKind::LogisticRegression { alpha } => {
            let y: Vec<i32> = train_rows.iter().map(|r| i32::from(r.churned)).collect();
            let params = LogisticRegressionParameters::default().with_alpha(*alpha);
            let fitted = LogisticRegression::fit(&x, &y, params)
                .map_err(|e| TrainError::Fit(e.to_string()))?;
            let coefs = fitted.coefficients();
            for (j, (_, f)) in features.iter_mut().enumerate() {
                f.coef = *coefs.get((0, j));
            }
            artifact.intercept = *fitted.intercept().get((0, 0));
            // smartcore's own predictions must agree with the probability computed from its
            // coefficients.
            let predicted = fitted
                .predict(&x)
                .map_err(|e| TrainError::Fit(e.to_string()))?;
            let lr = Model::from_parts_full(
                ModelArtifact {
                    features: features.iter().map(|(_, f)| f.clone()).collect(),
                    ..artifact.clone()
                },
                None,
                derived.clone(),
                "training",
                cfg.windows,
            )
            .map_err(|e| TrainError::Fit(e.to_string()))?;
            let agree = predicted
                .iter()
                .zip(&train_rows)
                .filter(|(p, r)| (**p == 1) == (lr.score(&r.features) >= 0.5))
                .count();
            fit_check = json!({
                "smartcore_prediction_agreement": agree as f64 / train_rows.len() as f64
            });
            (
                None,
                json!({
                    "alpha": alpha,
                    "spline_knots": cfg.spline_knots,
                    "solver": "smartcore LogisticRegression (L-BFGS)",
                }),
            )
        }
        ModelKind::RandomForest(p) => {
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
            let fitted = RandomForestRegressor::fit(&x, &y, params)
                .map_err(|e| TrainError::Fit(e.to_string()))?;
            let expected = fitted
                .predict(&x)
                .map_err(|e| TrainError::Fit(e.to_string()))?;
            let trees =
                extract_smartcore_forest(&format!("{fitted:?}")).map_err(TrainError::Fit)?;
            let forest = Forest::new(trees, features.len()).map_err(TrainError::Fit)?;
            // Our trees must reproduce smartcore's predictions on every training row.
            let max_diff = train_matrix
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
            artifact.format = format(ARTIFACT_FORMAT_V2);
            artifact.kind = KIND_FOREST.into();
            fit_check = json!({
                "max_abs_difference_to_smartcore_predict": max_diff,
                "nodes": forest.node_count(),
                "splits_per_feature": features
                    .iter()
                    .zip(&splits)
                    .map(|((_, f), s)| (f.name.clone(), json!(s)))
                    .collect::<serde_json::Map<_, _>>(),
            });
            (
                Some(forest),
                json!({
                    "n_trees": p.n_trees,
                    "max_depth": p.max_depth,
                    "min_samples_leaf": p.min_samples_leaf,
                    "min_samples_split": 2 * p.min_samples_leaf,
                    "m": p.m.map_or(json!("floor(sqrt(features))"), |m| json!(m)),
                    "seed": p.seed,
                    "estimator": "smartcore RandomForestRegressor on 0/1 labels (mean = probability)",
                }),
            )
        }
    };
    artifact.features = features.into_iter().map(|(_, f)| f).collect();
    let build = |artifact: &ModelArtifact| {
        Model::from_parts_full(
            artifact.clone(),
            forest.clone(),
            derived.clone(),
            "training",
            cfg.windows,
        )
        .map_err(|e| TrainError::Fit(e.to_string()))
    };
    let mut model = build(&artifact)?;
    let train_scores: Vec<f64> = train_rows
        .iter()
        .map(|r| model.score(&r.features))
        .collect();
    let train_labels: Vec<bool> = train_rows.iter().map(|r| r.churned).collect();
    // The alert threshold is chosen on the training rows so validation stays unseen.
    let (threshold, objective) = match cfg.threshold {
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
    artifact.threshold = ((threshold * 1e6).round() / 1e6).clamp(0.0, 1.0);
    model = build(&artifact)?;
    let evaluations: Vec<Evaluation> = evals
        .iter()
        .zip(&eval_rows)
        .map(|(&(c, h), rs)| evaluate_rows(&model, rs, c, h, &DEFAULT_TOP_K_PCTS).0)
        .collect();
    let v = &evaluations[0];
    let churn_rate = |l: &[bool]| l.iter().filter(|&&b| b).count() as f64 / l.len() as f64;
    let mut training_metrics = json!({
        "rows": train_rows.len(),
        "churn_rate": churn_rate(&train_labels),
        "roc_auc": roc_auc(&train_scores, &train_labels),
    });
    if let (Some(m), Some(c)) = (training_metrics.as_object_mut(), fit_check.as_object()) {
        m.extend(c.clone());
    }
    let metrics = json!({
        "validation": {
            "cutoff": rfc(validation),
            "horizon_days": days(valid_horizon),
            "rows": v.rows,
            "churn_rate": v.churn_rate,
            "roc_auc": v.roc_auc,
            "pr_auc": v.pr_auc,
            "precision": v.at_threshold.precision,
            "recall": v.at_threshold.recall,
            "f1": v.at_threshold.f1,
            "alert_rate": v.at_threshold.alert_rate,
        },
        "training": training_metrics,
        "evaluations": evaluations,
    });
    let population = match cfg.active_within {
        Some(a) if a >= Millis::MAX / 8 => "every user seen before the cutoff".to_string(),
        Some(a) => format!("users active within {} days before the cutoff", days(a)),
        None => "users active within the label horizon before the cutoff".to_string(),
    };
    artifact.training = json!({
        "data": {
            "events": events.len(),
            "fingerprint": fingerprint(events),
            "first_event": rfc(first),
            "last_event": rfc(last),
            "labels_known_until": rfc(end),
        },
        "label": "churned = no purchase and no login within the horizon after the cutoff",
        "population": population,
        "active_within_days": cfg.active_within.map(days),
        "horizon_days": days(cfg.horizon),
        "train_cutoffs": train_cutoffs.iter().map(|&c| rfc(c)).collect::<Vec<_>>(),
        "training_labels_end": rfc(latest_train + cfg.horizon),
        "validation_cutoff": rfc(validation),
        "validation_horizon_days": days(valid_horizon),
        "evaluation_points": evals
            .iter()
            .map(|&(c, h)| json!({ "cutoff": rfc(c), "horizon_days": days(h) }))
            .collect::<Vec<_>>(),
        "features_dropped_as_constant": dropped,
        "params": params,
        "threshold_objective": objective,
        "metrics": metrics,
    });
    // Only when used: retraining a model without BG/NBD keeps the record (and version) as before.
    if let (false, Some(t)) = (bgnbd_record.is_null(), artifact.training.as_object_mut()) {
        t.insert("bgnbd".into(), bgnbd_record);
    }
    // Only when not the default, so default artifacts (and their content-hash versions) stay
    // what they were before windows were configurable.
    if cfg.windows != Windows::default() {
        artifact.training["windows"] = json!(cfg.windows.to_string());
    }
    let summary = artifact.training.clone();
    Ok(Trained {
        artifact,
        forest,
        derived,
        summary,
    })
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
        assert_eq!(with.artifact.format, ARTIFACT_FORMAT_V3);
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
