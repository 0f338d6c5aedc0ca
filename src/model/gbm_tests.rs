//! Tests of gradient-boosted trees: the fit, the stored format, scoring after a round trip
//! through a file, and explanations that add up to the score.

use proptest::prelude::*;

use super::boost::{fit_boosted, GbmParams};
use super::train::{train, ModelKind, TrainConfig};
use super::*;
use crate::features::{FeatureLayout, FeatureVector, Windows};
use crate::synth::{generate, SynthConfig};
use crate::DAY_MS;

const NAMES: [&str; 3] = ["days_since_last_activity", "purchases_total", "spend_total"];

/// Deterministic pseudo-random rows of three inputs and a label that depends on two of them.
fn dataset(seed: u64, n: usize) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 10_000) as f64 / 1000.0
    };
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        // Rounded so many rows share values, as counts do.
        let r = vec![next().round(), next(), (next() * 4.0).round()];
        let noise = next();
        y.push(r[0] * 0.6 - r[2] * 0.5 + noise * 0.4 > 2.5);
        rows.push(r);
    }
    (rows, y)
}

/// An artifact over [`NAMES`] (identity transforms, unscaled) scoring with `gbm`.
fn gbm_artifact(gbm: Boosted) -> ModelArtifact {
    ModelArtifact {
        format: Format::V4,
        version: String::new(),
        kind: Kind::GradientBoostedTrees,
        features: NAMES
            .iter()
            .map(|n| ModelFeature {
                name: (*n).into(),
                transform: Transform::Identity,
                mean: 0.0,
                std: 1.0,
                coef: 0.0,
            })
            .collect(),
        intercept: 0.0,
        threshold: 0.5,
        training: TrainingRecord::default(),
        forest: None,
        derived: None,
        gbm: Some(gbm),
    }
}

fn vector(v: &[f64]) -> FeatureVector {
    let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
    for (name, value) in NAMES.iter().zip(v) {
        x.set(name, *value);
    }
    x
}

fn small_params() -> GbmParams {
    GbmParams {
        n_trees: 20,
        max_depth: 3,
        min_samples_leaf: 5,
        ..GbmParams::default()
    }
}

#[test]
fn the_fit_is_deterministic_and_separates_the_classes() {
    let (rows, y) = dataset(7, 600);
    let a = fit_boosted(&rows, &y, &small_params()).unwrap();
    let b = fit_boosted(&rows, &y, &small_params()).unwrap();
    assert_eq!(a.boosted, b.boosted, "same rows, same trees");
    let scores: Vec<f64> = rows.iter().map(|r| a.boosted.logit(r)).collect();
    let auc = quality::roc_auc(&scores, &y).unwrap();
    assert!(auc > 0.9, "in-sample AUC {auc}");
    // What serving computes is exactly what the fit reached.
    for (r, z) in rows.iter().zip(&a.train_logits) {
        assert_eq!(a.boosted.logit(r), *z);
    }
    // The label ignores input 1: it earns the least gain.
    assert!(
        a.gain[1] < a.gain[0] && a.gain[1] < a.gain[2],
        "{:?}",
        a.gain
    );
}

#[test]
fn refuses_bad_parameters_and_one_class() {
    let (rows, y) = dataset(3, 50);
    for bad in [
        GbmParams {
            n_trees: 0,
            ..small_params()
        },
        GbmParams {
            learning_rate: 0.0,
            ..small_params()
        },
        GbmParams {
            l2: 0.0,
            ..small_params()
        },
        GbmParams {
            max_bins: 300,
            ..small_params()
        },
    ] {
        assert!(fit_boosted(&rows, &y, &bad).is_err(), "{bad:?}");
    }
    let err = fit_boosted(&rows, &vec![true; rows.len()], &small_params()).unwrap_err();
    assert!(err.contains("one class"), "{err}");
    let mut nan = rows.clone();
    nan[4][1] = f64::NAN;
    let err = fit_boosted(&nan, &y, &small_params()).unwrap_err();
    assert!(err.contains("row 4"), "{err}");
}

#[test]
fn refuses_malformed_trees_naming_the_node() {
    let tree = |feature: Vec<i64>, left: Vec<u32>, right: Vec<u32>| Tree {
        threshold: vec![0.5; feature.len()],
        value: vec![0.1; feature.len()],
        cover: vec![1.0; feature.len()],
        feature,
        left,
        right,
    };
    let ok = tree(vec![0, -1, -1], vec![1, 0, 0], vec![2, 0, 0]);
    assert!(Boosted::new(0.0, 0.1, vec![ok.clone()], 1).is_ok());
    for (bad, says) in [
        (
            tree(vec![1, -1, -1], vec![1, 0, 0], vec![2, 0, 0]),
            "node 0",
        ),
        (
            tree(vec![0, -1, -1], vec![0, 0, 0], vec![2, 0, 0]),
            "node 0",
        ),
        (
            tree(vec![0, -1, -1], vec![1, 2, 0], vec![2, 0, 0]),
            "node 1",
        ),
        (
            Tree {
                cover: vec![1.0],
                ..ok.clone()
            },
            "length",
        ),
        (
            Tree {
                value: vec![0.1, f64::NAN, 0.2],
                ..ok.clone()
            },
            "node 1",
        ),
    ] {
        let err = Boosted::new(0.0, 0.1, vec![bad], 1).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    assert!(Boosted::new(0.0, 0.1, Vec::new(), 1).is_err());
}

#[test]
fn kind_format_and_trees_must_agree() {
    let (rows, y) = dataset(5, 200);
    let fit = fit_boosted(&rows, &y, &small_params()).unwrap();
    let good = gbm_artifact(fit.boosted);
    assert!(Model::new(good.clone(), "x", Windows::default()).is_ok());
    let cases = [
        ModelArtifact {
            gbm: None,
            ..good.clone()
        },
        ModelArtifact {
            format: Format::V3,
            ..good.clone()
        },
        ModelArtifact {
            kind: Kind::LogisticRegression,
            ..good.clone()
        },
    ];
    for bad in cases {
        let err = Model::new(bad, "m.json", Windows::default()).unwrap_err();
        assert!(err.to_string().contains("m.json"), "{err}");
    }
}

#[test]
fn a_trained_gbm_artifact_scores_the_same_after_a_round_trip() {
    let (_, events) = generate(&SynthConfig {
        users: 600,
        days: 300,
        end: 20_000 * DAY_MS,
        churn_share: 0.4,
        seed: 3,
    });
    let cfg = TrainConfig {
        horizon: 60 * DAY_MS,
        kind: ModelKind::Gbm(GbmParams {
            n_trees: 60,
            ..GbmParams::default()
        }),
        ..TrainConfig::default()
    };
    let mut trained = train(&events, &cfg).unwrap();
    assert_eq!(trained.artifact.format, Format::V4);
    let auc = trained.summary["metrics"]["validation"]["roc_auc"]
        .as_f64()
        .unwrap();
    assert!(auc > 0.8, "validation AUC {auc}");
    let diff = trained.summary["metrics"]["training"]["max_abs_difference_to_fit"]
        .as_f64()
        .unwrap();
    assert!(diff <= 1e-9, "{diff}");
    let before = trained.model().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gbm.json");
    trained.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.version(), trained.artifact.compute_version());
    // Every training-time snapshot of the replay scores as before the file.
    let rows = dataset::snapshots_for(
        &events,
        &[dataset::SnapshotSpec {
            cutoff: events[events.len() / 2].ts,
            horizon: 0,
            active_within: crate::Millis::MAX / 4,
        }],
        false,
        Windows::default(),
    );
    assert!(rows.len() > 100);
    let mut exact = 0;
    for r in &rows {
        let (a, b) = (before.score(&r.features), loaded.score(&r.features));
        assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
        exact += usize::from(a.to_bits() == b.to_bits());
    }
    eprintln!("bit-exact after the round trip: {exact} of {}", rows.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Base value plus every input's contribution is the model's log-odds, for any fitted
    /// ensemble and any user, and the reasons are those contributions.
    #[test]
    fn explanations_sum_to_the_logit(
        seed in 1u64..u64::MAX,
        depth in 1u16..5,
        min_leaf in 1usize..20,
        trees in 1usize..15,
        points in prop::collection::vec((0.0f64..12.0, 0.0f64..12.0, 0.0f64..45.0), 1..20),
    ) {
        let (rows, y) = dataset(seed, 300);
        prop_assume!(y.iter().any(|&c| c) && y.iter().any(|&c| !c));
        let params = GbmParams { n_trees: trees, max_depth: depth, min_samples_leaf: min_leaf, ..GbmParams::default() };
        let fit = fit_boosted(&rows, &y, &params).unwrap();
        let model = Model::new(gbm_artifact(fit.boosted), "prop", Windows::default()).unwrap();
        for (a, b, c) in points {
            let x = vector(&[a, b, c]);
            let att = model.attribution(&x).unwrap();
            let total = att.base + att.contributions.iter().sum::<f64>();
            prop_assert!((total - model.logit(&x)).abs() < 1e-9, "{total} vs {}", model.logit(&x));
            prop_assert!((sigmoid(model.logit(&x)) - model.score(&x)).abs() < 1e-15);
            let reasons = model.top_reasons(&x, 3);
            for r in reasons {
                let j = NAMES.iter().position(|n| *n == r.feature).unwrap();
                prop_assert_eq!(r.contribution, att.contributions[j]);
            }
        }
    }
}
