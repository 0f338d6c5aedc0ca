//! Feature transforms applied before standardisation, shared by training and serving so both
//! compute exactly the same model inputs.

use serde::{Deserialize, Serialize};

/// How a raw feature value is transformed before standardisation.
///
/// The hinge variants are the basis terms of a linear spline: a feature listed once with
/// `log1p` and again with `log1p_hinge` at a few knots lets a logistic regression bend its
/// response (e.g. risk that rises steeply with the first weeks of silence, then flattens).
/// They live in the artifact, so serving applies exactly the spline training fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Identity,
    /// `ln(1 + max(x, 0))`: tames heavy-tailed counts and spend.
    Log1p,
    /// `max(0, x − knot)`: a spline term on the raw scale.
    Hinge {
        knot: f64,
    },
    /// `max(0, ln(1 + max(x, 0)) − knot)`: a spline term on the log scale.
    Log1pHinge {
        knot: f64,
    },
}

impl Transform {
    /// Whether the transform never decreases (bounds over ranges of inputs rely on it): every
    /// transform here is a non-decreasing function of its input.
    pub(crate) fn is_monotone(self) -> bool {
        match self {
            Transform::Identity
            | Transform::Log1p
            | Transform::Hinge { .. }
            | Transform::Log1pHinge { .. } => true,
        }
    }

    /// The transformed value (training and serving share this).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Transform::Identity => x,
            Transform::Log1p => log1p_nonneg(x),
            Transform::Hinge { knot } => (x - knot).max(0.0),
            Transform::Log1pHinge { knot } => (log1p_nonneg(x) - knot).max(0.0),
        }
    }

    /// The hinge term of this transform's scale at `knot` (spline basis).
    pub fn hinge(self, knot: f64) -> Transform {
        match self {
            Transform::Log1p | Transform::Log1pHinge { .. } => Transform::Log1pHinge { knot },
            Transform::Identity | Transform::Hinge { .. } => Transform::Hinge { knot },
        }
    }

    pub(crate) fn is_finite(self) -> bool {
        match self {
            Transform::Identity | Transform::Log1p => true,
            Transform::Hinge { knot } | Transform::Log1pHinge { knot } => knot.is_finite(),
        }
    }
}

/// `ln(1 + max(x, 0))`, from a table for small whole numbers. Most log-transformed features are
/// counts, and the table holds exactly `ln_1p` of each, so results are bit-identical to the
/// direct computation at a fraction of its cost on the scoring path.
fn log1p_nonneg(x: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    const SIZE: usize = 1024;
    let x = x.max(0.0);
    if x < SIZE as f64 {
        let n = x as usize;
        if n as f64 == x {
            let table = TABLE.get_or_init(|| (0..SIZE).map(|n| (n as f64).ln_1p()).collect());
            return table[n];
        }
    }
    x.ln_1p()
}
