//! Churn-risk models: the artifact format and scoring.
//!
//! A model is trained offline by `churnguard train` (see [`train`]) and saved as one JSON file.
//! The artifact carries everything serving needs to reproduce training exactly: feature names in
//! order, each feature's transform and standardisation, coefficients, the alert threshold, and a
//! content-hash version. smartcore's logistic regression has no `predict_proba`, so the
//! probability is computed here from the stored coefficients and intercept.
//!
//! Two kinds are served:
//!
//! - `logistic_regression` (format `churnguard-model/1`, unchanged): score = sigmoid(intercept +
//!   Σ coef × standardised value); a reason is `coef × standardised value`, in log-odds.
//! - `random_forest_regressor` (format `churnguard-model/2` = format 1 plus a `forest` key): a
//!   smartcore random-forest *regressor* fitted on 0/1 labels over the same standardised inputs;
//!   score = mean of the trees' leaf values (a churn probability; `coef` is unused and 0). A
//!   reason is the *perturbation contribution*: logit(score) − logit(score with that one feature
//!   set to its training mean), i.e. how many log-odds of risk this feature's value adds compared
//!   with an average user — the same unit as the regression's reasons.
//!
//! - `gradient_boosted_trees` (format `churnguard-model/4`, key `gbm`): trees fitted by
//!   churnguard's own booster ([`boost`]) on logistic loss over the same standardised inputs,
//!   stored in churnguard's tree format ([`trees`]); score = sigmoid(base score + Σ leaf values).
//!   A reason is the input's path attribution in log-odds; base value plus all reasons is the
//!   score's log-odds. Derived inputs are optional in format 4.
//!
//! - Either kind with **derived inputs** (format `churnguard-model/3` = format 2 plus a
//!   `derived` key): model-level features computed from the engine's features with parameters
//!   fitted at training time, today BG/NBD's P(alive) and expected purchases (see [`bgnbd`]).
//!   The parameters live in the artifact so serving derives exactly what training did; model
//!   features name them like engine features (`bgnbd_p_alive`, `bgnbd_expected_purchases`).
//!
//! All formats are read; format 1 files (e.g. `models/churn-lr.json`) keep loading unchanged.
//!
//! Files: [`artifact`] (what a file holds, its version hash, reading and writing), [`record`]
//! (the typed training record), [`transform`] and [`derived`] (how inputs are computed),
//! [`gammagamma`] (the spend model beside BG/NBD),
//! [`predict`] (the validated [`Model`]), [`forest`] and [`trees`] (tree formats and their
//! scoring), [`explain`] (alert reasons), [`locate`] (finding the model file); the offline
//! side: [`dataset`] (labelled snapshots), [`train`], [`boost`] (the gradient-boosting fit),
//! [`evaluate`], [`quality`] (metrics), [`card`] and [`plots`].

pub mod artifact;
pub mod bgnbd;
pub mod boost;
pub mod card;
pub mod dataset;
pub mod derived;
pub mod evaluate;
pub mod explain;
mod fit;
pub mod forest;
pub mod gammagamma;
mod inputs;
pub mod locate;
pub mod plots;
pub mod predict;
pub mod quality;
pub mod record;
pub mod reload;
pub mod train;
pub mod train_config;
pub mod transform;
pub mod trees;

pub use crate::scoring::Contribution;
pub use artifact::{Format, Kind, ModelArtifact, ModelError, ModelFeature};
pub use derived::{input_index, input_name, BgNbdSpec, DerivedSpec, DERIVED_NAMES, NUM_DERIVED};
pub use explain::Attribution;
pub use forest::Forest;
pub use predict::{sigmoid, Model};
pub use record::TrainingRecord;
pub use transform::Transform;
pub use trees::{Boosted, Tree};

#[cfg(test)]
mod gbm_tests;
#[cfg(test)]
mod tests;
