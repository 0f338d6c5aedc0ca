//! The model artifact: what `models/*.json` holds, how its content-hash version is computed, and
//! how it is read and written.
//!
//! The version hash is the alert ids' seed, so its definition is frozen: SHA-256 over the JSON of
//! the artifact without its forest and derived transforms (fields in declaration order, the
//! training record with sorted keys, `version` empty), then the forest's JSON when there is one,
//! then `derived` and the derived transforms' JSON when there are some, then `gbm` and the
//! boosted trees' JSON when there are some. Every committed artifact
//! keeps its version under this code (see `tests/model_golden.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::derived::DerivedSpec;
use super::forest::Forest;
use super::record::{serialize_sorted, TrainingRecord};
use super::transform::Transform;
use super::trees::Boosted;
use crate::features::Windows;

/// The artifact format, by what the file carries. Every format is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// Logistic regression: coefficients only.
    #[serde(rename = "churnguard-model/1")]
    V1,
    /// Format 1 plus a tree ensemble under `forest`.
    #[serde(rename = "churnguard-model/2")]
    V2,
    /// Format 2 plus derived-input transforms under `derived`.
    #[serde(rename = "churnguard-model/3")]
    V3,
    /// Gradient-boosted trees under `gbm`, with or without `derived`.
    #[serde(rename = "churnguard-model/4")]
    V4,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::V1, Format::V2, Format::V3, Format::V4];

    /// The tag as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::V1 => "churnguard-model/1",
            Format::V2 => "churnguard-model/2",
            Format::V3 => "churnguard-model/3",
            Format::V4 => "churnguard-model/4",
        }
    }

    /// The format a new artifact of `kind` with or without derived transforms is written in:
    /// the oldest that can carry it, so readers of older formats keep reading what they can.
    pub fn for_content(kind: Kind, derived: bool) -> Format {
        match (kind, derived) {
            (Kind::GradientBoostedTrees, _) => Format::V4,
            (_, true) => Format::V3,
            (Kind::RandomForestRegressor, false) => Format::V2,
            (Kind::LogisticRegression, false) => Format::V1,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which estimator scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// score = sigmoid(intercept + Σ coef × standardised input).
    LogisticRegression,
    /// score = mean of the trees' leaf values (fitted on 0/1 labels); needs a forest.
    RandomForestRegressor,
    /// score = sigmoid(base score + Σ trees' leaf values); needs `gbm` (format 4).
    GradientBoostedTrees,
}

impl Kind {
    /// The name as written in files and in the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LogisticRegression => "logistic_regression",
            Kind::RandomForestRegressor => "random_forest_regressor",
            Kind::GradientBoostedTrees => "gradient_boosted_trees",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a model file could not be used. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "model file {requested} not found (tried {tried}); pass --model with the path of a \
         model artifact (e.g. models/churn-lr.json of the churnguard repository) or set \
         CHURNGUARD_MODEL"
    )]
    NotFound { requested: String, tried: String },
    #[error("model file {path} is not a valid churnguard model artifact: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("model file {path} has format {found:?}; this build reads {known}", known = known_formats())]
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

fn known_formats() -> String {
    let tags: Vec<String> = Format::ALL
        .iter()
        .map(|f| format!("{:?}", f.as_str()))
        .collect();
    tags.join(", ")
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

/// A trained model as stored in `models/*.json`. Validate it by building a
/// [`super::Model`] before scoring with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format: Format,
    /// `sha256:` + the first 16 hex digits of the content hash (see the module docs).
    pub version: String,
    pub kind: Kind,
    pub features: Vec<ModelFeature>,
    pub intercept: f64,
    /// Probability at or above which a user is alerted.
    pub threshold: f64,
    /// How the model was trained and what it measured.
    #[serde(serialize_with = "serialize_sorted")]
    pub training: TrainingRecord,
    /// The trees of a forest (format 2 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forest: Option<Forest>,
    /// Derived-input transforms (format 3, optional in format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<DerivedSpec>,
    /// Gradient-boosted trees (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbm: Option<Boosted>,
}

/// The part of an artifact the first hash input covers: every key but `forest`, `derived` and `gbm`,
/// in the order format 1 defined.
#[derive(Serialize)]
struct HashedFields<'a> {
    format: Format,
    version: &'a str,
    kind: Kind,
    features: &'a [ModelFeature],
    intercept: f64,
    threshold: f64,
    #[serde(serialize_with = "serialize_sorted")]
    training: &'a TrainingRecord,
}

impl ModelArtifact {
    /// The windows the model was trained with: recorded by training when not the default
    /// (7, 30, 90 days), which every artifact without the record was trained on.
    pub fn windows(&self) -> Result<Windows, ModelError> {
        match &self.training.windows {
            None => Ok(Windows::default()),
            Some(w) => w.parse().map_err(|_| ModelError::Inconsistent {
                path: "training".into(),
                detail: format!("recorded windows {w:?} are not a window list"),
            }),
        }
    }

    /// The content-hash version: the same weights, trees, transforms and training record
    /// always give the same version, so alert ids derived from it are stable across restarts
    /// and replays.
    pub fn compute_version(&self) -> String {
        let fields = HashedFields {
            format: self.format,
            version: "",
            kind: self.kind,
            features: &self.features,
            intercept: self.intercept,
            threshold: self.threshold,
            training: &self.training,
        };
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&fields).unwrap_or_default());
        if let Some(forest) = &self.forest {
            h.update(serde_json::to_vec(forest).unwrap_or_default());
        }
        if let Some(derived) = &self.derived {
            h.update(b"derived");
            h.update(serde_json::to_vec(derived).unwrap_or_default());
        }
        if let Some(gbm) = &self.gbm {
            h.update(b"gbm");
            h.update(serde_json::to_vec(gbm).unwrap_or_default());
        }
        format!("sha256:{}", crate::hex_prefix(&h.finalize(), 8))
    }

    /// Parses an artifact from the bytes of a model file (`origin` names it in errors). Only
    /// parsing: [`super::Model::new`] validates.
    pub fn from_json(text: &[u8], origin: &str) -> Result<ModelArtifact, ModelError> {
        let parse = |source| ModelError::Parse {
            path: origin.into(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(text).map_err(parse)?;
        // An unknown format is named as such, not as a failed enum match.
        if let Some(found) = value.get("format").and_then(|f| f.as_str()) {
            if !Format::ALL.iter().any(|f| f.as_str() == found) {
                return Err(ModelError::Format {
                    path: origin.into(),
                    found: found.into(),
                });
            }
        }
        serde_json::from_value(value).map_err(parse)
    }

    /// Fills in the version and writes the artifact as pretty JSON: a forest's or an ensemble's
    /// trees one per line (pretty-printing every node would triple the file), derived
    /// transforms last.
    pub fn save(&mut self, path: &Path) -> Result<(), ModelError> {
        self.version = self.compute_version();
        let text = self.to_file_text();
        std::fs::write(path, text + "\n").map_err(|source| ModelError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    fn to_file_text(&self) -> String {
        let core = ModelArtifact {
            forest: None,
            derived: None,
            gbm: None,
            ..self.clone()
        };
        let one_per_line = |lines: Vec<String>| format!("[\n{}\n    ]", lines.join(",\n"));
        let mut text = match (&self.forest, &self.gbm) {
            (None, None) => serde_json::to_string_pretty(&core).unwrap_or_default(),
            (Some(f), _) => {
                let mut v = serde_json::to_value(&core).unwrap_or_default();
                let lines: Vec<String> = f
                    .trees
                    .iter()
                    .map(|t| format!("      {}", serde_json::json!(t)))
                    .collect();
                v["forest"] = serde_json::json!({ "trees": "@TREES@" });
                serde_json::to_string_pretty(&v)
                    .unwrap_or_default()
                    .replace("\"@TREES@\"", &one_per_line(lines))
            }
            (None, Some(b)) => {
                let mut v = serde_json::to_value(&core).unwrap_or_default();
                let lines: Vec<String> = b
                    .trees
                    .iter()
                    .map(|t| format!("      {}", serde_json::json!(t)))
                    .collect();
                v["gbm"] = serde_json::json!({
                    "base_score": b.base_score,
                    "learning_rate": b.learning_rate,
                    "trees": "@TREES@",
                });
                serde_json::to_string_pretty(&v)
                    .unwrap_or_default()
                    .replace("\"@TREES@\"", &one_per_line(lines))
            }
        };
        if let Some(d) = &self.derived {
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
        text
    }
}
