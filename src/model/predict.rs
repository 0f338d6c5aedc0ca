//! A validated model, ready to score: the artifact checked once against the engine's features,
//! each input's index resolved, so scoring on the hot path only does arithmetic.
//!
//! smartcore's logistic regression has no `predict_proba`, so the probability is computed here
//! from the stored coefficients and intercept; a forest's probability is the mean of its trees;
//! boosted trees' is the sigmoid of their summed log-odds.

use std::path::Path;
use std::sync::Arc;

use super::artifact::{Format, Kind, ModelArtifact, ModelError};
use super::bgnbd::CustomerReader;
use super::derived::{input_index, DerivedSpec, NUM_DERIVED};
use super::forest::Forest;
use super::trees::Boosted;
use crate::features::layout::Counter;
use crate::features::{FeatureLayout, FeatureVector, Windows};
use crate::scoring::{Contribution, Scorer};

/// A loaded, validated model ready to score feature vectors.
#[derive(Debug, Clone)]
pub struct Model {
    pub(super) artifact: ModelArtifact,
    /// Index into `layout` for each model feature, resolved once at load time.
    pub(super) indices: Vec<usize>,
    /// The features of the windows this model was loaded for (the engine's).
    pub(super) layout: &'static FeatureLayout,
    /// Where the derived inputs read the engine's features (format 3 only).
    reader: Option<CustomerReader>,
    shared_version: Arc<str>,
}

/// Model inputs standardised on the stack when there are at most this many (every model of
/// the engine's features and derived inputs); more (spline terms) go to the heap.
const STACK_INPUTS: usize = 64;

/// Probabilities are clipped to this distance from 0 and 1 before taking log-odds.
const LOGIT_EPS: f64 = 1e-6;

pub(super) fn logit_of(p: f64) -> f64 {
    let p = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (p / (1.0 - p)).ln()
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    /// Loads and validates an artifact from disk, for the default windows (7, 30, 90 days).
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Model::load_for(path, Windows::default())
    }

    /// Loads and validates an artifact from disk for an engine running `windows`: every feature
    /// the model uses must be one those windows compute.
    pub fn load_for(path: &Path, windows: Windows) -> Result<Model, ModelError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ModelError::Read {
            path: p.clone(),
            source,
        })?;
        Model::from_json_for(&text, &p, windows)
    }

    /// Parses and validates an artifact from the bytes of a model file (`origin` names it in
    /// errors) for an engine running `windows`. Hot reload uses this so the bytes it
    /// fingerprinted are exactly the bytes it loads.
    pub fn from_json_for(text: &[u8], origin: &str, windows: Windows) -> Result<Model, ModelError> {
        Model::new(ModelArtifact::from_json(text, origin)?, origin, windows)
    }

    /// Validates an artifact (`origin` names it in errors) for an engine running `windows`:
    /// format and kind agree with what it carries (a forest needs format 2 or later, derived
    /// inputs need format 3 and format 3 needs them), every feature is one `windows` compute or
    /// a derived input, scaling is finite and positive, the threshold lies in [0, 1].
    pub fn new(
        mut artifact: ModelArtifact,
        origin: &str,
        windows: Windows,
    ) -> Result<Model, ModelError> {
        let layout = FeatureLayout::of(windows);
        let inconsistent = |detail: String| ModelError::Inconsistent {
            path: origin.into(),
            detail,
        };
        let reader = match (artifact.format, &artifact.derived) {
            (Format::V3 | Format::V4, Some(d)) => {
                d.bgnbd.validate().map_err(inconsistent)?;
                Some(CustomerReader::new(layout).map_err(|e| inconsistent(e.to_string()))?)
            }
            (Format::V3, None) => {
                return Err(inconsistent(format!(
                    "format {:?} needs a `derived` key",
                    Format::V3.as_str()
                )))
            }
            (_, Some(_)) => {
                return Err(inconsistent(format!(
                    "a `derived` key needs format {:?} or {:?}",
                    Format::V3.as_str(),
                    Format::V4.as_str()
                )))
            }
            (_, None) => None,
        };
        let n_features = artifact.features.len();
        let format = artifact.format;
        match (
            format,
            artifact.kind,
            artifact.forest.as_mut(),
            artifact.gbm.as_mut(),
        ) {
            (Format::V1 | Format::V2 | Format::V3, Kind::LogisticRegression, None, None) => {}
            (Format::V2 | Format::V3, Kind::RandomForestRegressor, Some(f), None) => {
                f.compile(n_features).map_err(inconsistent)?;
            }
            (Format::V4, Kind::GradientBoostedTrees, None, Some(b)) => {
                b.compile(n_features).map_err(inconsistent)?;
            }
            (format, kind, f, b) => {
                return Err(inconsistent(format!(
                    "kind {:?} {} a forest and {} boosted trees in format {:?}; known kinds: \
                     {:?} (format 1 to 3, no trees), {:?} (format 2 or 3, with `forest`), {:?} \
                     (format 4, with `gbm`)",
                    kind.as_str(),
                    if f.is_some() { "with" } else { "without" },
                    if b.is_some() { "with" } else { "without" },
                    format.as_str(),
                    Kind::LogisticRegression.as_str(),
                    Kind::RandomForestRegressor.as_str(),
                    Kind::GradientBoostedTrees.as_str(),
                )))
            }
        }
        let indices = resolve_inputs(&artifact, origin, layout)?;
        if !(0.0..=1.0).contains(&artifact.threshold) || !artifact.intercept.is_finite() {
            return Err(inconsistent(format!(
                "threshold {} must lie in [0, 1] and the intercept be finite",
                artifact.threshold
            )));
        }
        Ok(Model {
            shared_version: Arc::from(artifact.version.as_str()),
            artifact,
            indices,
            layout,
            reader,
        })
    }

    /// The derived transforms, for a format-3 model.
    pub fn derived(&self) -> Option<&DerivedSpec> {
        self.artifact.derived.as_ref()
    }

    /// The derived inputs of `x` (zeros without derived transforms: nothing reads them then).
    pub(super) fn derived_values(&self, x: &FeatureVector) -> [f64; NUM_DERIVED] {
        match (&self.artifact.derived, &self.reader) {
            (Some(d), Some(reader)) => d.bgnbd.values(reader, x),
            _ => [0.0; NUM_DERIVED],
        }
    }

    /// Raw value of model input `i` (an engine feature or a derived input).
    pub(super) fn raw(x: &FeatureVector, d: &[f64; NUM_DERIVED], i: usize) -> f64 {
        match i.checked_sub(x.layout().len()) {
            None => x.values[i],
            Some(k) => d[k],
        }
    }

    /// The features this model was loaded for.
    pub fn layout(&self) -> &'static FeatureLayout {
        self.layout
    }

    /// The trees, for a tree model.
    pub fn forest(&self) -> Option<&Forest> {
        self.artifact.forest.as_ref()
    }

    /// The boosted trees, for a gradient-boosted model.
    pub fn gbm(&self) -> Option<&Boosted> {
        self.artifact.gbm.as_ref()
    }

    /// Runs `f` on the standardised inputs of `x` (as [`Self::inputs`]), held on the stack for
    /// every model of at most 64 inputs, so tree models score without allocating.
    pub(super) fn with_inputs<R>(&self, x: &FeatureVector, f: impl FnOnce(&[f64]) -> R) -> R {
        let n = self.indices.len();
        if n > STACK_INPUTS {
            return f(&self.inputs(x));
        }
        let d = self.derived_values(x);
        let mut buf = [0.0; STACK_INPUTS];
        for ((slot, feat), &i) in buf
            .iter_mut()
            .zip(&self.artifact.features)
            .zip(&self.indices)
        {
            *slot = (feat.transform.apply(Self::raw(x, &d, i)) - feat.mean) / feat.std;
        }
        f(&buf[..n])
    }

    /// Writes this model's artifact with its version filled in.
    pub fn save(&mut self, path: &Path) -> Result<(), ModelError> {
        self.artifact.save(path)?;
        self.shared_version = Arc::from(self.artifact.version.as_str());
        Ok(())
    }

    /// Standardised model inputs, in the artifact's feature order.
    pub fn inputs(&self, x: &FeatureVector) -> Vec<f64> {
        let d = self.derived_values(x);
        self.artifact
            .features
            .iter()
            .zip(&self.indices)
            .map(|(f, &i)| (f.transform.apply(Self::raw(x, &d, i)) - f.mean) / f.std)
            .collect()
    }

    /// Content-hash version of the artifact.
    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    /// The version as a shared string, for records that outlive a scoring (pending outcomes).
    pub fn shared_version(&self) -> Arc<str> {
        Arc::clone(&self.shared_version)
    }

    /// Alert threshold on the probability.
    pub fn threshold(&self) -> f64 {
        self.artifact.threshold
    }

    /// The artifact this model was loaded from.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// Log-odds of churn (for a forest: of its probability, clipped to [1e-6, 1 − 1e-6]).
    /// For logistic regression and boosted trees this is the hot path, without allocation.
    pub fn logit(&self, x: &FeatureVector) -> f64 {
        if let Some(gbm) = &self.artifact.gbm {
            return self.with_inputs(x, |inputs| gbm.logit(inputs));
        }
        if let Some(forest) = &self.artifact.forest {
            return logit_of(forest.predict(&self.inputs(x)));
        }
        if self.artifact.derived.is_some() {
            let d = self.derived_values(x);
            let mut z = self.artifact.intercept;
            for (f, &i) in self.artifact.features.iter().zip(&self.indices) {
                z += f.coef * (f.transform.apply(Self::raw(x, &d, i)) - f.mean) / f.std;
            }
            return z;
        }
        let mut z = self.artifact.intercept;
        for (f, &i) in self.artifact.features.iter().zip(&self.indices) {
            z += f.coef * (f.transform.apply(x.values[i]) - f.mean) / f.std;
        }
        z
    }

    /// An upper bound of the log-odds at every instant between two snapshots of a silent user
    /// (see [`FeatureVector::silent_range`]): each term of a linear model is monotone in its
    /// input, so its largest value over a range sits at one end. `None` for tree models, whose
    /// output has no such structure, and for derived inputs, whose range over a silence is not
    /// derived from the engine's bounds (the engine then re-scores periodically instead).
    pub fn silent_logit_bound(&self, start: &FeatureVector, end: &FeatureVector) -> Option<f64> {
        if self.artifact.forest.is_some()
            || self.artifact.gbm.is_some()
            || self.artifact.derived.is_some()
            || !self
                .artifact
                .features
                .iter()
                .all(|f| f.transform.is_monotone())
        {
            return None;
        }
        let mut z = self.artifact.intercept;
        for (f, &i) in self.artifact.features.iter().zip(&self.indices) {
            let (lo, hi) = FeatureVector::silent_range(i, start, end);
            let term = |x: f64| f.coef * (f.transform.apply(x) - f.mean) / f.std;
            z += term(lo).max(term(hi));
        }
        Some(z)
    }

    /// Churn probability in `[0, 1]`.
    pub fn score(&self, x: &FeatureVector) -> f64 {
        match &self.artifact.forest {
            Some(forest) => forest.predict(&self.inputs(x)).clamp(0.0, 1.0),
            None => sigmoid(self.logit(x)),
        }
    }
}

/// The engine scores through [`Scorer`]; these are the model's own methods.
impl Scorer for Model {
    fn version(&self) -> &str {
        Model::version(self)
    }

    fn shared_version(&self) -> Arc<str> {
        Model::shared_version(self)
    }

    fn layout(&self) -> &'static FeatureLayout {
        Model::layout(self)
    }

    fn threshold(&self) -> f64 {
        Model::threshold(self)
    }

    fn score(&self, x: &FeatureVector) -> f64 {
        Model::score(self, x)
    }

    fn silent_score_bound(&self, start: &FeatureVector, end: &FeatureVector) -> Option<f64> {
        self.silent_logit_bound(start, end).map(sigmoid)
    }

    fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution> {
        Model::top_reasons(self, x, k)
    }

    fn input_names(&self) -> Vec<&str> {
        self.artifact
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect()
    }
}

/// Each model feature's input index under `layout`, checking its scaling on the way.
fn resolve_inputs(
    artifact: &ModelArtifact,
    origin: &str,
    layout: &'static FeatureLayout,
) -> Result<Vec<usize>, ModelError> {
    let inconsistent = |detail: String| ModelError::Inconsistent {
        path: origin.into(),
        detail,
    };
    let mut indices = Vec::with_capacity(artifact.features.len());
    for f in &artifact.features {
        let idx = input_index(layout, &f.name)
            .ok_or_else(|| missing_feature(artifact, &f.name, origin, layout))?;
        if idx >= layout.len() && artifact.derived.is_none() {
            return Err(inconsistent(format!(
                "feature {:?} is derived but the artifact carries no derived transforms",
                f.name
            )));
        }
        if !(f.std.is_finite()
            && f.std > 0.0
            && f.mean.is_finite()
            && f.coef.is_finite()
            && f.transform.is_finite())
        {
            return Err(inconsistent(format!(
                "feature {:?} has non-finite or non-positive scaling",
                f.name
            )));
        }
        indices.push(idx);
    }
    Ok(indices)
}

/// Why a model feature is not in `layout`: a windowed feature of other windows names both
/// window sets; anything else is a feature this build does not know.
fn missing_feature(
    artifact: &ModelArtifact,
    name: &str,
    origin: &str,
    layout: &FeatureLayout,
) -> ModelError {
    if Counter::parse_name(name).is_none() {
        return ModelError::UnknownFeature {
            path: origin.into(),
            name: name.into(),
            known: layout.names().join(", "),
        };
    }
    // Training records non-default windows; an artifact without them was trained on the
    // default ones, unless its names say otherwise.
    let model = match &artifact.training.windows {
        Some(w) => format!("was trained with windows {w}"),
        None => {
            let mut days: Vec<u16> = artifact
                .features
                .iter()
                .filter_map(|f| Counter::parse_name(&f.name).map(|(_, d)| d))
                .collect();
            days.sort_unstable();
            days.dedup();
            let listed: Vec<String> = days.iter().map(u16::to_string).collect();
            format!("uses windows of {} days", listed.join(","))
        }
    };
    ModelError::WindowsMismatch {
        path: origin.into(),
        name: name.into(),
        engine: layout.windows(),
        model,
    }
}
