//! Churn-risk models: the artifact format and scoring.
//!
//! A model is trained offline by `churnguard train` (see [`train`]) and saved as one JSON file.
//! The artifact carries everything serving needs to reproduce training exactly: feature names in
//! order, each feature's transform and standardisation, coefficients, the alert threshold, and a
//! content-hash version. smartcore's logistic regression has no `predict_proba`, so the
//! probability is computed here from the stored coefficients and intercept.

pub mod metrics;
pub mod train;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{FeatureVector, FEATURE_NAMES};

/// Format tag written into every artifact; bumped on incompatible changes.
pub const ARTIFACT_FORMAT: &str = "churnguard-model/1";

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
    #[error("model file {path} has format {found:?}; this build reads {ARTIFACT_FORMAT:?}")]
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
    #[error("model {path} is inconsistent: {detail}")]
    Inconsistent { path: String, detail: String },
    #[error("cannot write model file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// How a raw feature value is transformed before standardisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Identity,
    /// `ln(1 + max(x, 0))`: tames heavy-tailed counts and spend.
    Log1p,
}

impl Transform {
    fn apply(self, x: f64) -> f64 {
        match self {
            Transform::Identity => x,
            Transform::Log1p => x.max(0.0).ln_1p(),
        }
    }
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
    /// Computes the content-hash version: the same weights and training record always give the
    /// same version, so alert ids derived from it are stable across restarts and replays.
    pub fn compute_version(&self) -> String {
        let mut unversioned = self.clone();
        unversioned.version = String::new();
        let bytes = serde_json::to_vec(&unversioned).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Writes the artifact as pretty JSON with its version filled in.
    pub fn save(&mut self, path: &Path) -> Result<(), ModelError> {
        self.version = self.compute_version();
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| ModelError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A feature's contribution to one score: `coef × standardised value`, the log-odds it adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: &'static str,
    pub value: f64,
    pub contribution: f64,
}

/// A loaded, validated model ready to score feature vectors.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: ModelArtifact,
    /// Index into [`FEATURE_NAMES`] for each model feature, resolved once at load time.
    indices: Vec<usize>,
}

impl Model {
    /// Loads and validates an artifact from disk.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: p.clone(),
            source,
        })?;
        let artifact: ModelArtifact =
            serde_json::from_str(&text).map_err(|source| ModelError::Parse {
                path: p.clone(),
                source,
            })?;
        Model::from_artifact(artifact, &p)
    }

    /// Validates an in-memory artifact (`origin` names it in errors).
    pub fn from_artifact(artifact: ModelArtifact, origin: &str) -> Result<Model, ModelError> {
        if artifact.format != ARTIFACT_FORMAT {
            return Err(ModelError::Format {
                path: origin.into(),
                found: artifact.format,
            });
        }
        let mut indices = Vec::with_capacity(artifact.features.len());
        for f in &artifact.features {
            let idx =
                FeatureVector::index_of(&f.name).ok_or_else(|| ModelError::UnknownFeature {
                    path: origin.into(),
                    name: f.name.clone(),
                    known: FEATURE_NAMES.join(", "),
                })?;
            if !(f.std.is_finite() && f.std > 0.0 && f.mean.is_finite() && f.coef.is_finite()) {
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
        Ok(Model { artifact, indices })
    }

    /// Content-hash version of the artifact.
    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    /// Alert threshold on the probability.
    pub fn threshold(&self) -> f64 {
        self.artifact.threshold
    }

    /// The artifact this model was loaded from.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// Log-odds of churn: the hot path, no allocation.
    pub fn logit(&self, x: &FeatureVector) -> f64 {
        let mut z = self.artifact.intercept;
        for (f, &i) in self.artifact.features.iter().zip(&self.indices) {
            z += f.coef * (f.transform.apply(x.values[i]) - f.mean) / f.std;
        }
        z
    }

    /// Churn probability in `[0, 1]`.
    pub fn score(&self, x: &FeatureVector) -> f64 {
        sigmoid(self.logit(x))
    }

    /// The `k` features that pushed this score up the most (positive contributions first).
    pub fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution> {
        let mut all: Vec<Contribution> = self
            .artifact
            .features
            .iter()
            .zip(&self.indices)
            .map(|(f, &i)| Contribution {
                feature: FEATURE_NAMES[i],
                value: x.values[i],
                contribution: f.coef * (f.transform.apply(x.values[i]) - f.mean) / f.std,
            })
            .collect();
        all.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        all.truncate(k);
        all
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
        let mut x = FeatureVector {
            values: [0.0; crate::features::NUM_FEATURES],
        };
        x.values[FeatureVector::index_of("days_since_last_activity").unwrap()] = 15.0;
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
    fn version_is_a_content_hash() {
        let a = artifact();
        let mut b = artifact();
        assert_eq!(a.compute_version(), b.compute_version());
        b.intercept = -0.5;
        assert_ne!(a.compute_version(), b.compute_version());
    }
}
