//! Derived inputs: model-level features computed from the engine's features with parameters
//! fitted at training time (today BG/NBD's P(alive) and expected purchases, see [`super::bgnbd`]).
//! The parameters live in the artifact so serving derives exactly what training did.

use serde::{Deserialize, Serialize};

use super::bgnbd::{BgNbdParams, CustomerReader};
use crate::features::{FeatureLayout, FeatureVector};

/// Names of the derived inputs a model may use, after the engine's features: with a layout of
/// `n` features, model input `n + k` is `DERIVED_NAMES[k]`.
pub const DERIVED_NAMES: [&str; NUM_DERIVED] = ["bgnbd_p_alive", "bgnbd_expected_purchases"];
/// Number of derived inputs.
pub const NUM_DERIVED: usize = 2;

/// The model-level transforms a format-3 artifact carries, fitted at training time so serving
/// derives exactly the inputs training saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedSpec {
    pub bgnbd: BgNbdSpec,
}

/// A fitted BG/NBD model as a feature transform: `bgnbd_p_alive` and
/// `bgnbd_expected_purchases` (over `horizon_days`) from the engine's purchase count, recency
/// and purchase cycle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdSpec {
    pub params: BgNbdParams,
    /// The model's time unit in days (7: the parameters are per week, as published).
    pub time_unit_days: f64,
    /// Horizon of the expected-purchases input, in days.
    pub horizon_days: f64,
}

impl BgNbdSpec {
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.params.validate().map_err(|e| e.to_string())?;
        if !(self.time_unit_days.is_finite()
            && self.time_unit_days > 0.0
            && self.horizon_days.is_finite()
            && self.horizon_days >= 0.0)
        {
            return Err(format!(
                "BG/NBD time unit {} and horizon {} days must be positive",
                self.time_unit_days, self.horizon_days
            ));
        }
        Ok(())
    }

    /// The derived inputs of one feature vector, in [`DERIVED_NAMES`] order.
    pub fn values(&self, reader: &CustomerReader, x: &FeatureVector) -> [f64; NUM_DERIVED] {
        let c = reader.customer(x, self.time_unit_days);
        [
            self.params.p_alive(&c),
            self.params
                .expected_purchases(&c, self.horizon_days / self.time_unit_days),
        ]
    }
}

/// Index of an engine feature of `layout` or a derived input by name (derived ones after the
/// engine's).
pub fn input_index(layout: &FeatureLayout, name: &str) -> Option<usize> {
    layout.index_of(name).or_else(|| {
        DERIVED_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|k| layout.len() + k)
    })
}

/// The name of input `i` of `layout` (see [`input_index`]).
pub fn input_name(layout: &FeatureLayout, i: usize) -> &'static str {
    match i.checked_sub(layout.len()) {
        None => layout.names()[i],
        Some(k) => DERIVED_NAMES[k],
    }
}
