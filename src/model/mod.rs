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
//! - Either kind with **derived inputs** (format `churnguard-model/3` = format 2 plus a
//!   `derived` key): model-level features computed from the engine's features with parameters
//!   fitted at training time, today BG/NBD's P(alive) and expected purchases (see [`bgnbd`]).
//!   The parameters live in the artifact so serving derives exactly what training did; model
//!   features name them like engine features (`bgnbd_p_alive`, `bgnbd_expected_purchases`).
//!
//! All formats are read; format 1 files (e.g. `models/churn-lr.json`) keep loading unchanged.

pub mod bgnbd;
pub mod card;
pub mod evaluate;
pub mod forest;
pub mod metrics;
pub mod plots;
pub mod reload;
pub mod train;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::layout::Counter;
use crate::features::{FeatureLayout, FeatureVector, Windows};
use crate::scoring::Scorer;
use bgnbd::{BgNbdParams, CustomerReader};
pub use forest::Forest;

/// Format tag of logistic-regression artifacts (unchanged since the first release).
pub const ARTIFACT_FORMAT: &str = "churnguard-model/1";
/// Format tag of artifacts that carry a tree ensemble under the `forest` key.
pub const ARTIFACT_FORMAT_V2: &str = "churnguard-model/2";
/// Format tag of artifacts with derived inputs under the `derived` key (format 2 plus it).
pub const ARTIFACT_FORMAT_V3: &str = "churnguard-model/3";
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
    fn validate(&self) -> Result<(), String> {
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

/// `kind` of logistic-regression models.
pub const KIND_LR: &str = "logistic_regression";
/// `kind` of random-forest-regressor models.
pub const KIND_FOREST: &str = "random_forest_regressor";

/// Why a model file could not be used. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model file {path} is not a valid churnguard model artifact: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("model file {path} has format {found:?}; this build reads {ARTIFACT_FORMAT:?}, {ARTIFACT_FORMAT_V2:?} and {ARTIFACT_FORMAT_V3:?}")]
    Format { path: String, found: String },
    #[error(
        "model {path} uses feature {name:?}, which this build of churnguard does not compute \
         (known features: {known}); retrain the model with this version"
    )]
    UnknownFeature {
        path: String,
        name: String,
        known: String,
    },
    #[error(
        "model {path} uses feature {name:?}, which windows {engine} do not compute (the model \
         {model}); run with --windows set to the model's windows, or retrain with these"
    )]
    WindowsMismatch {
        path: String,
        name: String,
        /// The windows the engine runs.
        engine: Windows,
        /// What the artifact says about its windows (recorded, or inferred from its names).
        model: String,
    },
    #[error("model {path} is inconsistent: {detail}")]
    Inconsistent { path: String, detail: String },
    #[error("cannot write model file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

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
    fn is_monotone(self) -> bool {
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

    fn is_finite(self) -> bool {
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

/// One model input: which feature, how it is transformed and standardised, and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFeature {
    pub name: String,
    pub transform: Transform,
    pub mean: f64,
    pub std: f64,
    pub coef: f64,
}

/// A trained model as stored in `models/*.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format: String,
    /// `sha256:` + the first 16 hex digits of the hash of the artifact without this field.
    pub version: String,
    pub kind: String,
    pub features: Vec<ModelFeature>,
    pub intercept: f64,
    /// Probability at or above which a user is alerted.
    pub threshold: f64,
    /// Free-form description of training: data fingerprint, cutoffs, parameters, metrics.
    pub training: serde_json::Value,
}

impl ModelArtifact {
    /// The windows the model was trained with: recorded by training when not the default
    /// (7, 30, 90 days), which every artifact without the record was trained on.
    pub fn windows(&self) -> Result<Windows, ModelError> {
        match self.training.get("windows") {
            None => Ok(Windows::default()),
            Some(w) => w
                .as_str()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| ModelError::Inconsistent {
                    path: "training".into(),
                    detail: format!("recorded windows {w} are not a window list"),
                }),
        }
    }

    /// Computes the content-hash version: the same weights and training record always give the
    /// same version, so alert ids derived from it are stable across restarts and replays.
    pub fn compute_version(&self) -> String {
        self.compute_version_with(None)
    }

    /// Content-hash version of the artifact together with a forest (format 2): the hash covers
    /// the trees too; without a forest it hashes the artifact alone (format 1).
    pub fn compute_version_with(&self, forest: Option<&Forest>) -> String {
        self.compute_version_full(forest, None)
    }

    /// Content-hash version covering the forest and the derived transforms when present
    /// (without them, the same hash as formats 1 and 2, so their versions never change).
    pub fn compute_version_full(
        &self,
        forest: Option<&Forest>,
        derived: Option<&DerivedSpec>,
    ) -> String {
        let mut unversioned = self.clone();
        unversioned.version = String::new();
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&unversioned).unwrap_or_default());
        if let Some(forest) = forest {
            h.update(serde_json::to_vec(forest).unwrap_or_default());
        }
        if let Some(derived) = derived {
            h.update(b"derived");
            h.update(serde_json::to_vec(derived).unwrap_or_default());
        }
        format!("sha256:{}", crate::hex_prefix(&h.finalize(), 8))
    }

    /// Writes the artifact as pretty JSON with its version filled in.
    pub fn save(&mut self, path: &Path) -> Result<(), ModelError> {
        self.save_with(None, path)
    }

    /// Writes the artifact, plus the forest under `forest` for tree models, with its version.
    pub fn save_with(&mut self, forest: Option<&Forest>, path: &Path) -> Result<(), ModelError> {
        self.save_full(forest, None, path)
    }

    /// Writes the artifact with its forest and derived transforms, when present, and version.
    pub fn save_full(
        &mut self,
        forest: Option<&Forest>,
        derived: Option<&DerivedSpec>,
        path: &Path,
    ) -> Result<(), ModelError> {
        self.version = self.compute_version_full(forest, derived);
        let mut text = match forest {
            None => serde_json::to_string_pretty(self).unwrap_or_default(),
            Some(f) => {
                #[derive(Serialize)]
                struct WithForest<'a> {
                    #[serde(flatten)]
                    artifact: &'a ModelArtifact,
                    forest: &'a Forest,
                }
                // Trees on one line each: pretty-printing every node would triple the file.
                let mut v = serde_json::to_value(WithForest {
                    artifact: self,
                    forest: f,
                })
                .unwrap_or_default();
                let trees = v["forest"]["trees"].take();
                v["forest"]["trees"] = serde_json::Value::String("@TREES@".into());
                let lines: Vec<String> = trees
                    .as_array()
                    .map(|ts| ts.iter().map(|t| format!("      {t}")).collect())
                    .unwrap_or_default();
                serde_json::to_string_pretty(&v)
                    .unwrap_or_default()
                    .replace("\"@TREES@\"", &format!("[\n{}\n    ]", lines.join(",\n")))
            }
        };
        if let Some(d) = derived {
            // Appended as the last key so the trees' one-line layout above is kept.
            let body = serde_json::to_string_pretty(&serde_json::json!({ "derived": d }))
                .unwrap_or_default();
            let inner = body
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .trim_end();
            let head = text.trim_end().trim_end_matches('}').trim_end();
            text = format!("{head},{inner}\n}}");
        }
        std::fs::write(path, text + "\n").map_err(|source| ModelError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

pub use crate::scoring::Contribution;

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

/// A loaded, validated model ready to score feature vectors.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: ModelArtifact,
    /// Index into `layout` for each model feature, resolved once at load time.
    indices: Vec<usize>,
    /// The features of the windows this model was loaded for (the engine's).
    layout: &'static FeatureLayout,
    /// The trees of a `random_forest_regressor` (format 2); `None` for logistic regression.
    forest: Option<Forest>,
    /// Derived-input transforms (format 3) and where they read the engine's features.
    derived: Option<(DerivedSpec, CustomerReader)>,
    shared_version: Arc<str>,
}

/// Probabilities are clipped to this distance from 0 and 1 before taking log-odds.
const LOGIT_EPS: f64 = 1e-6;

fn logit_of(p: f64) -> f64 {
    let p = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (p / (1.0 - p)).ln()
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

    /// [`Model::from_json_for`] the default windows.
    pub fn from_json(text: &[u8], origin: &str) -> Result<Model, ModelError> {
        Model::from_json_for(text, origin, Windows::default())
    }

    /// Parses and validates an artifact from the bytes of a model file (`origin` names it in
    /// errors) for an engine running `windows`. Hot reload uses this so the bytes it
    /// fingerprinted are exactly the bytes it loads.
    pub fn from_json_for(text: &[u8], origin: &str, windows: Windows) -> Result<Model, ModelError> {
        let p = origin.to_string();
        let mut value: serde_json::Value =
            serde_json::from_slice(text).map_err(|source| ModelError::Parse {
                path: p.clone(),
                source,
            })?;
        let derived = match value.as_object_mut().and_then(|o| o.remove("derived")) {
            Some(d) => Some(serde_json::from_value::<DerivedSpec>(d).map_err(|source| {
                ModelError::Parse {
                    path: p.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let forest =
            match value.as_object_mut().and_then(|o| o.remove("forest")) {
                Some(f) => Some(serde_json::from_value::<Forest>(f).map_err(|source| {
                    ModelError::Parse {
                        path: p.clone(),
                        source,
                    }
                })?),
                None => None,
            };
        let artifact: ModelArtifact =
            serde_json::from_value(value).map_err(|source| ModelError::Parse {
                path: p.clone(),
                source,
            })?;
        Model::from_parts_full(artifact, forest, derived, &p, windows)
    }

    /// Validates an in-memory artifact (`origin` names it in errors), for the default windows.
    pub fn from_artifact(artifact: ModelArtifact, origin: &str) -> Result<Model, ModelError> {
        Model::from_parts(artifact, None, origin)
    }

    /// [`Model::from_parts_for`] the default windows.
    pub fn from_parts(
        artifact: ModelArtifact,
        forest: Option<Forest>,
        origin: &str,
    ) -> Result<Model, ModelError> {
        Model::from_parts_for(artifact, forest, origin, Windows::default())
    }

    /// Validates an artifact and, for tree models, its forest (`origin` names it in errors), for
    /// an engine running `windows`.
    pub fn from_parts_for(
        artifact: ModelArtifact,
        forest: Option<Forest>,
        origin: &str,
        windows: Windows,
    ) -> Result<Model, ModelError> {
        Model::from_parts_full(artifact, forest, None, origin, windows)
    }

    /// Validates an artifact with its forest and derived transforms (`origin` names it in
    /// errors), for an engine running `windows`. Derived inputs need format 3, and format 3
    /// needs them.
    pub fn from_parts_full(
        artifact: ModelArtifact,
        forest: Option<Forest>,
        derived: Option<DerivedSpec>,
        origin: &str,
        windows: Windows,
    ) -> Result<Model, ModelError> {
        let layout = FeatureLayout::of(windows);
        let inconsistent = |detail: String| ModelError::Inconsistent {
            path: origin.into(),
            detail,
        };
        let derived = match (artifact.format.as_str(), derived) {
            (ARTIFACT_FORMAT_V3, Some(d)) => {
                d.bgnbd.validate().map_err(inconsistent)?;
                let reader =
                    CustomerReader::new(layout).map_err(|e| inconsistent(e.to_string()))?;
                Some((d, reader))
            }
            (ARTIFACT_FORMAT_V3, None) => {
                return Err(inconsistent(format!(
                    "format {ARTIFACT_FORMAT_V3:?} needs a `derived` key"
                )))
            }
            (_, Some(_)) => {
                return Err(inconsistent(format!(
                    "a `derived` key needs format {ARTIFACT_FORMAT_V3:?}"
                )))
            }
            (_, None) => None,
        };
        let forest = match (artifact.format.as_str(), artifact.kind.as_str(), forest) {
            (ARTIFACT_FORMAT | ARTIFACT_FORMAT_V2 | ARTIFACT_FORMAT_V3, KIND_LR, None) => None,
            (ARTIFACT_FORMAT_V2 | ARTIFACT_FORMAT_V3, KIND_FOREST, Some(mut f)) => {
                f.compile(artifact.features.len()).map_err(inconsistent)?;
                Some(f)
            }
            (ARTIFACT_FORMAT | ARTIFACT_FORMAT_V2 | ARTIFACT_FORMAT_V3, kind, f) => {
                return Err(inconsistent(format!(
                    "kind {kind:?} {} a forest; known kinds: {KIND_LR:?} (no forest), \
                     {KIND_FOREST:?} (format {ARTIFACT_FORMAT_V2:?} with a forest)",
                    if f.is_some() { "with" } else { "without" }
                )))
            }
            _ => {
                return Err(ModelError::Format {
                    path: origin.into(),
                    found: artifact.format,
                })
            }
        };
        let mut indices = Vec::with_capacity(artifact.features.len());
        for f in &artifact.features {
            let idx = input_index(layout, &f.name)
                .ok_or_else(|| missing_feature(&artifact, &f.name, origin, layout))?;
            if idx >= layout.len() && derived.is_none() {
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
                return Err(ModelError::Inconsistent {
                    path: origin.into(),
                    detail: format!(
                        "feature {:?} has non-finite or non-positive scaling",
                        f.name
                    ),
                });
            }
            indices.push(idx);
        }
        if !(0.0..=1.0).contains(&artifact.threshold) || !artifact.intercept.is_finite() {
            return Err(ModelError::Inconsistent {
                path: origin.into(),
                detail: format!(
                    "threshold {} must lie in [0, 1] and the intercept be finite",
                    artifact.threshold
                ),
            });
        }
        Ok(Model {
            shared_version: Arc::from(artifact.version.as_str()),
            artifact,
            indices,
            layout,
            forest,
            derived,
        })
    }

    /// The derived transforms, for a format-3 model.
    pub fn derived(&self) -> Option<&DerivedSpec> {
        self.derived.as_ref().map(|(d, _)| d)
    }

    /// The derived inputs of `x` (zeros without derived transforms: nothing reads them then).
    fn derived_values(&self, x: &FeatureVector) -> [f64; NUM_DERIVED] {
        match &self.derived {
            Some((d, reader)) => d.bgnbd.values(reader, x),
            None => [0.0; NUM_DERIVED],
        }
    }

    /// Raw value of model input `i` (an engine feature or a derived input).
    fn raw(x: &FeatureVector, d: &[f64; NUM_DERIVED], i: usize) -> f64 {
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
        self.forest.as_ref()
    }

    /// Writes this model (artifact and, for tree models, the forest) with its version filled in.
    pub fn save(&mut self, path: &Path) -> Result<(), ModelError> {
        let derived = self.derived.as_ref().map(|(d, _)| d);
        self.artifact
            .save_full(self.forest.as_ref(), derived, path)?;
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
    /// For logistic regression this is the hot path, without allocation.
    pub fn logit(&self, x: &FeatureVector) -> f64 {
        if let Some(forest) = &self.forest {
            return logit_of(forest.predict(&self.inputs(x)));
        }
        if self.derived.is_some() {
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
    /// input, so its largest value over a range sits at one end. `None` for forests, whose
    /// output has no such structure, and for derived inputs, whose range over a silence is not
    /// derived from the engine's bounds (the engine then re-scores periodically instead).
    pub fn silent_logit_bound(&self, start: &FeatureVector, end: &FeatureVector) -> Option<f64> {
        if self.forest.is_some()
            || self.derived.is_some()
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
        match &self.forest {
            Some(forest) => forest.predict(&self.inputs(x)).clamp(0.0, 1.0),
            None => sigmoid(self.logit(x)),
        }
    }

    /// The `k` features that pushed this score up the most (positive contributions first), in
    /// log-odds. Logistic regression: `coef × standardised value`. Forest: logit(score) −
    /// logit(score with the feature set to its training mean), see the module docs.
    pub fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution> {
        let contributions: Vec<f64> = match &self.forest {
            Some(forest) => {
                let mut inputs = self.inputs(x);
                let base = logit_of(forest.predict(&inputs));
                (0..inputs.len())
                    .map(|j| {
                        let own = inputs[j];
                        inputs[j] = 0.0; // the training mean, standardised
                        let without = logit_of(forest.predict(&inputs));
                        inputs[j] = own;
                        base - without
                    })
                    .collect()
            }
            None => {
                let d = self.derived_values(x);
                self.artifact
                    .features
                    .iter()
                    .zip(&self.indices)
                    .map(|(f, &i)| {
                        f.coef * (f.transform.apply(Self::raw(x, &d, i)) - f.mean) / f.std
                    })
                    .collect()
            }
        };
        let d = self.derived_values(x);
        // A feature with spline terms appears several times: its contribution is their sum.
        let mut all: Vec<Contribution> = Vec::with_capacity(self.indices.len());
        for (&i, contribution) in self.indices.iter().zip(contributions) {
            let name = input_name(self.layout, i);
            match all.iter_mut().find(|c| c.feature == name) {
                Some(c) => c.contribution += contribution,
                None => all.push(Contribution {
                    feature: name,
                    value: Self::raw(x, &d, i),
                    contribution,
                }),
            }
        }
        all.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        all.truncate(k);
        all
    }
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
    let recorded = artifact.training["windows"].as_str().map(str::to_string);
    let model = match recorded {
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

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> ModelArtifact {
        ModelArtifact {
            format: ARTIFACT_FORMAT.into(),
            version: String::new(),
            kind: "logistic_regression".into(),
            features: vec![ModelFeature {
                name: "days_since_last_activity".into(),
                transform: Transform::Identity,
                mean: 10.0,
                std: 5.0,
                coef: 2.0,
            }],
            intercept: -1.0,
            threshold: 0.5,
            training: serde_json::json!({}),
        }
    }

    #[test]
    fn probability_follows_the_coefficients() {
        let m = Model::from_artifact(artifact(), "test").unwrap();
        let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
        x.set("days_since_last_activity", 15.0);
        // z = -1 + 2 * (15 - 10) / 5 = 1
        assert!((m.score(&x) - sigmoid(1.0)).abs() < 1e-12);
        assert_eq!(m.top_reasons(&x, 1)[0].feature, "days_since_last_activity");
    }

    #[test]
    fn refuses_unknown_features_with_a_clear_error() {
        let mut a = artifact();
        a.features[0].name = "shoe_size".into();
        let err = Model::from_artifact(a, "m.json").unwrap_err().to_string();
        assert!(
            err.contains("shoe_size") && err.contains("retrain"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_model_of_other_windows_naming_both() {
        let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json"));
        let longer: Windows = "7,30,90,180".parse().unwrap();
        let err = Model::load_for(shipped, longer).unwrap_err();
        assert!(matches!(err, ModelError::WindowsMismatch { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("7,30,90,180") && text.contains("uses windows of 7,30,90 days"),
            "{text}"
        );
        // Recorded windows are named as recorded.
        let mut a = artifact();
        a.features[0].name = "purchases_180d".into();
        a.training = serde_json::json!({ "windows": "7,30,90,180" });
        let text = Model::from_artifact(a.clone(), "m.json")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("\"purchases_180d\"")
                && text.contains("trained with windows 7,30,90,180"),
            "{text}"
        );
        // Under its own windows the same artifact loads, and scores through its own layout.
        let m = Model::from_parts_for(a, None, "m.json", longer).unwrap();
        assert!(std::ptr::eq(m.layout(), FeatureLayout::of(longer)));
        let mut x = FeatureVector::zeros(m.layout());
        assert!(x.set("purchases_180d", 15.0));
        assert!((m.logit(&x) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn forest_artifacts_round_trip_score_and_explain() {
        let mut a = artifact();
        a.format = ARTIFACT_FORMAT_V2.into();
        a.kind = KIND_FOREST.into();
        a.features[0].coef = 0.0;
        // Standardised silence <= 0 (≤ 10 days): 0.1, else 0.9.
        let forest = Forest::new(
            vec![vec![vec![0.0, 0.0, 1.0, 2.0], vec![0.1], vec![0.9]]],
            1,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let mut m = Model::from_parts(a, Some(forest), "test").unwrap();
        m.save(&path).unwrap();
        let loaded = Model::load(&path).unwrap();
        assert_eq!(
            loaded.version(),
            m.artifact().compute_version_with(m.forest())
        );
        assert_ne!(loaded.version(), m.artifact().compute_version());
        let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
        let i = FeatureLayout::default_layout()
            .index_of("days_since_last_activity")
            .unwrap();
        x.values[i] = 30.0;
        assert!((loaded.score(&x) - 0.9).abs() < 1e-12);
        let r = &loaded.top_reasons(&x, 1)[0];
        assert!((r.contribution - (logit_of(0.9) - logit_of(0.1))).abs() < 1e-9);
        x.values[i] = 5.0;
        assert!((loaded.score(&x) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn format_1_lr_files_still_load_and_kinds_must_match() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");
        let m = Model::load(Path::new(path)).unwrap();
        assert!(m.forest().is_none());
        assert_eq!(m.artifact().kind, KIND_LR);
        let mut a = artifact();
        a.kind = KIND_FOREST.into();
        assert!(
            Model::from_artifact(a, "x").is_err(),
            "a forest kind needs trees"
        );
    }

    #[test]
    fn spline_terms_round_trip_and_explain_as_one_feature() {
        let mut a = artifact();
        let mut hinge = a.features[0].clone();
        hinge.transform = Transform::Identity.hinge(20.0);
        hinge.mean = 0.0;
        hinge.std = 1.0;
        hinge.coef = -0.1;
        a.features.push(hinge);
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#"{"hinge":{"knot":20.0}}"#), "{text}");
        let m = Model::from_json(text.as_bytes(), "test").unwrap();
        let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
        x.set("days_since_last_activity", 30.0);
        // z = -1 + 2 * (30 - 10) / 5 - 0.1 * max(0, 30 - 20) = 6
        assert!((m.logit(&x) - 6.0).abs() < 1e-12);
        let reasons = m.top_reasons(&x, 5);
        assert_eq!(reasons.len(), 1, "both terms explain one feature");
        assert!((reasons[0].contribution - 7.0).abs() < 1e-12);
        assert_eq!(Transform::Log1p.hinge(1.0).apply(0.0), 0.0);
        assert!(
            (Transform::Log1pHinge { knot: 1.0 }.apply(9.0) - (10f64.ln() - 1.0)).abs() < 1e-12
        );
        let mut bad = artifact();
        bad.features[0].transform = Transform::Hinge { knot: f64::NAN };
        assert!(Model::from_artifact(bad, "x").is_err());
    }

    #[test]
    fn derived_bgnbd_inputs_round_trip_and_need_format_3() {
        let spec = DerivedSpec {
            bgnbd: BgNbdSpec {
                params: BgNbdParams {
                    r: 0.243,
                    alpha: 4.414,
                    a: 0.793,
                    b: 2.426,
                },
                time_unit_days: 7.0,
                horizon_days: 273.0,
            },
        };
        let mut a = artifact();
        a.format = ARTIFACT_FORMAT_V3.into();
        a.features[0] = ModelFeature {
            name: "bgnbd_p_alive".into(),
            transform: Transform::Identity,
            mean: 0.5,
            std: 0.25,
            coef: -1.0,
        };
        let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
        let set = |x: &mut FeatureVector, n: &str, v: f64| {
            assert!(x.set(n, v), "{n}");
        };
        // Customer 1 of Fader-Hardie's data: x = 2, t_x = 30.43, T = 38.86 weeks.
        set(&mut x, "purchases_total", 3.0);
        set(&mut x, "mean_interpurchase_days", 30.43 * 7.0 / 2.0);
        set(&mut x, "days_since_last_purchase", (38.86 - 30.43) * 7.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        let mut m =
            Model::from_parts_full(a.clone(), None, Some(spec.clone()), "t", Windows::default())
                .unwrap();
        m.save(&path).unwrap();
        let loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.derived(), Some(&spec));
        assert_ne!(
            loaded.version(),
            a.compute_version(),
            "the hash covers `derived`"
        );
        // P(alive) = 0.72658 (independent reference, see bgnbd's tests).
        let z = -1.0 - (0.726_578_570_080_673 - 0.5) / 0.25;
        assert!((loaded.logit(&x) - z).abs() < 1e-9, "{}", loaded.logit(&x));
        assert!((loaded.score(&x) - sigmoid(z)).abs() < 1e-9);
        let r = &loaded.top_reasons(&x, 1)[0];
        assert_eq!(r.feature, "bgnbd_p_alive");
        assert!((r.value - 0.726_578_570_080_673).abs() < 1e-9);
        assert!(loaded.silent_logit_bound(&x, &x).is_none());
        // Derived inputs without their transforms, or transforms without format 3, are refused.
        assert!(Model::from_parts_full(a.clone(), None, None, "t", Windows::default()).is_err());
        let mut v1 = a.clone();
        v1.format = ARTIFACT_FORMAT.into();
        assert!(Model::from_parts_full(
            v1.clone(),
            None,
            Some(spec.clone()),
            "t",
            Windows::default()
        )
        .is_err());
        assert!(Model::from_artifact(v1, "t").is_err());
        let mut bad = spec;
        bad.bgnbd.params.a = 1.0;
        assert!(Model::from_parts_full(a, None, Some(bad), "t", Windows::default()).is_err());
    }

    #[test]
    fn version_is_a_content_hash() {
        let a = artifact();
        let mut b = artifact();
        assert_eq!(a.compute_version(), b.compute_version());
        b.intercept = -0.5;
        assert_ne!(a.compute_version(), b.compute_version());
    }
}
