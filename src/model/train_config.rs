//! What to train and why training can fail: the configuration of [`super::train::train`],
//! apart from the training code so its phases (`super::inputs`, `super::fit`) read it
//! without importing the trainer.

use super::bgnbd;
pub use super::boost::GbmParams;
use crate::features::Windows;
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
    #[error(
        "the {set} set has only one class ({positives} churners of {rows} rows): cannot fit or \
         evaluate. A user counts as returned when an event of type {returns} follows the cutoff \
         within the horizon; if the data has no such events, map its return events (orders, \
         sign-ins, visits) to one of these types when converting it, otherwise choose other \
         cutoffs or horizon"
    )]
    OneClass {
        set: &'static str,
        positives: usize,
        rows: usize,
        /// The event types that count as a return.
        returns: String,
    },
    #[error("unknown feature {0:?} in --features (known: {1})")]
    UnknownFeature(String, String),
    #[error("smartcore failed to fit: {0}")]
    Fit(String),
    #[error("gradient boosting: {0}")]
    Boost(String),
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
    /// Gradient-boosted trees on logistic loss, fitted by churnguard (see [`super::boost`]).
    Gbm(GbmParams),
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
    /// inputs ([`DERIVED_NAMES`](super::derived::DERIVED_NAMES)) turn on the BG/NBD fit with default settings.
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
    /// Fingerprint of the event mapping the events were read through (`None`: the native
    /// schema); recorded in the artifact so the service can tell when it decodes otherwise.
    pub event_mapping: Option<String>,
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
            event_mapping: None,
        }
    }
}
