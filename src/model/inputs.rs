//! Model inputs from snapshot rows: which features enter, how each is transformed and
//! standardised with training statistics, and which are left out because they carry nothing
//! (constant on the training rows) or nothing new (equal to an earlier input on every row, as
//! `events_30d` and `purchases_30d` are on purchase-only data).

use super::bgnbd::CustomerReader;
use super::dataset::Row;
use super::derived::{input_index, input_name, DerivedSpec, DERIVED_NAMES, NUM_DERIVED};
use super::record::DuplicateInput;
use super::train_config::{ModelKind, TrainConfig, TrainError};
use super::{ModelFeature, Transform};
use crate::features::{FeatureLayout, FeatureVector, MAX_FEATURES};

/// The derived transforms a training run fitted, with where they read the engine's features.
pub(super) type FittedDerived = (DerivedSpec, CustomerReader);

/// The standardised training inputs.
pub(super) struct Inputs {
    /// Model features with the input index each reads (spline terms repeat their feature's).
    pub features: Vec<(usize, ModelFeature)>,
    /// One row per training row: every feature transformed and standardised.
    pub matrix: Vec<Vec<f64>>,
    pub dropped_constant: Vec<&'static str>,
    pub dropped_duplicate: Vec<DuplicateInput>,
}

/// Builds the inputs of `train_rows`: the features `cfg` allows, transformed and standardised
/// with training statistics, constant and duplicate ones dropped, spline terms added.
pub(super) fn standardise(
    train_rows: &[&Row],
    derived: Option<&FittedDerived>,
    layout: &'static FeatureLayout,
    cfg: &TrainConfig,
) -> Result<Inputs, TrainError> {
    let raw: Vec<[f64; MAX_INPUTS]> = train_rows
        .iter()
        .map(|r| raw_inputs(&r.features, derived))
        .collect();
    let allowed = allowed_inputs(layout, derived.is_some(), cfg.features.as_deref())?;
    let transformed =
        |r: &[f64; MAX_INPUTS], i: usize| transform_for(input_name(layout, i)).apply(r[i]);
    let n = raw.len() as f64;
    let mut features: Vec<(usize, ModelFeature)> = Vec::new();
    let mut dropped_constant = Vec::new();
    let mut dropped_duplicate = Vec::new();
    for &i in &allowed {
        let name = input_name(layout, i);
        let mean = raw.iter().map(|r| transformed(r, i)).sum::<f64>() / n;
        let var = raw
            .iter()
            .map(|r| (transformed(r, i) - mean).powi(2))
            .sum::<f64>()
            / n;
        // Constant features carry no signal and would divide by zero.
        if var.sqrt() <= 1e-9 {
            dropped_constant.push(name);
            continue;
        }
        // An input equal to a kept one on every row adds nothing but a split of its weight.
        let same = features.iter().find(|(k, _)| {
            raw.iter()
                .all(|r| transformed(r, *k).to_bits() == transformed(r, i).to_bits())
        });
        if let Some((_, kept)) = same {
            dropped_duplicate.push(DuplicateInput {
                dropped: name.into(),
                same_as: kept.name.clone(),
            });
            continue;
        }
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
    }
    if cfg.spline_knots > 0 && matches!(cfg.kind, ModelKind::LogisticRegression { .. }) {
        features = with_spline_terms(features, &raw, cfg.spline_knots);
    }
    let matrix = raw
        .iter()
        .map(|r| {
            features
                .iter()
                .map(|(i, f)| (f.transform.apply(r[*i]) - f.mean) / f.std)
                .collect()
        })
        .collect();
    Ok(Inputs {
        features,
        matrix,
        dropped_constant,
        dropped_duplicate,
    })
}

/// Input indices that may enter the model, ascending: all of the layout's (and the derived
/// ones when fitted), or the named ones.
fn allowed_inputs(
    layout: &'static FeatureLayout,
    with_derived: bool,
    names: Option<&[String]>,
) -> Result<Vec<usize>, TrainError> {
    let Some(names) = names else {
        return Ok((0..layout.len())
            .chain((layout.len()..layout.len() + NUM_DERIVED).filter(|_| with_derived))
            .collect());
    };
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
    Ok(idx)
}

pub(super) fn transform_for(name: &str) -> Transform {
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
fn raw_inputs(f: &FeatureVector, derived: Option<&FittedDerived>) -> [f64; MAX_INPUTS] {
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
