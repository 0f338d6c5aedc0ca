//! What the engine needs from a churn model, as a trait: a probability, an alert threshold, an
//! explanation, and a bound that lets it skip re-scoring silent users.
//!
//! The engine holds an `Arc<dyn Scorer>`, so it depends on no model format, and the model tools
//! (which drive the engine to build their training sets) depend on the engine without a cycle.
//! The `model` module's `Model` is the implementation the service, `replay` and the tests use.

use std::sync::Arc;

use serde::Serialize;

use crate::features::{FeatureLayout, FeatureVector};

/// A feature's contribution to one score: `coef × standardised value`, the log-odds it adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: &'static str,
    pub value: f64,
    pub contribution: f64,
}

/// A churn model as the engine uses it.
pub trait Scorer: Send + Sync {
    /// Content version, carried in alerts and part of their ids.
    fn version(&self) -> &str;

    /// The same version, shared by every alert of this model (no copy per alert).
    fn shared_version(&self) -> Arc<str>;

    /// The feature layout the model's inputs were resolved against: it must be the engine's.
    fn layout(&self) -> &'static FeatureLayout;

    /// Probability at or above which a user is alerted.
    fn threshold(&self) -> f64;

    /// Churn probability of one feature vector.
    fn score(&self, x: &FeatureVector) -> f64;

    /// An upper bound of the probability at any instant between the snapshots `start` and
    /// `end` of a user who sends no event in between, when the model can give one.
    fn silent_score_bound(&self, start: &FeatureVector, end: &FeatureVector) -> Option<f64>;

    /// The `k` features that pushed the score up most.
    fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution>;

    /// Names of the features the model reads, in its order (the alert payload lists them).
    fn input_names(&self) -> Vec<&str>;
}
