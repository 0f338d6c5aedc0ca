//! Tests of the artifact, scoring and explanations together.

use std::path::Path;

use super::bgnbd::BgNbdParams;
use super::predict::logit_of;
use super::*;
use crate::features::{FeatureLayout, FeatureVector, Windows};

fn new(a: ModelArtifact, origin: &str) -> Result<Model, ModelError> {
    Model::new(a, origin, Windows::default())
}

fn artifact() -> ModelArtifact {
    ModelArtifact {
        format: Format::V1,
        version: String::new(),
        kind: Kind::LogisticRegression,
        features: vec![ModelFeature {
            name: "days_since_last_activity".into(),
            transform: Transform::Identity,
            mean: 10.0,
            std: 5.0,
            coef: 2.0,
        }],
        intercept: -1.0,
        threshold: 0.5,
        training: TrainingRecord::default(),
        forest: None,
        derived: None,
        gbm: None,
    }
}

#[test]
fn probability_follows_the_coefficients() {
    let m = new(artifact(), "test").unwrap();
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
    let err = new(a, "m.json").unwrap_err().to_string();
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
    a.training.windows = Some("7,30,90,180".into());
    let text = new(a.clone(), "m.json").unwrap_err().to_string();
    assert!(
        text.contains("\"purchases_180d\"") && text.contains("trained with windows 7,30,90,180"),
        "{text}"
    );
    // Under its own windows the same artifact loads, and scores through its own layout.
    let m = Model::new(a, "m.json", longer).unwrap();
    assert!(std::ptr::eq(m.layout(), FeatureLayout::of(longer)));
    let mut x = FeatureVector::zeros(m.layout());
    assert!(x.set("purchases_180d", 15.0));
    assert!((m.logit(&x) - 1.0).abs() < 1e-12);
}

#[test]
fn forest_artifacts_round_trip_score_and_explain() {
    let mut a = artifact();
    a.format = Format::V2;
    a.kind = Kind::RandomForestRegressor;
    a.features[0].coef = 0.0;
    // Standardised silence <= 0 (≤ 10 days): 0.1, else 0.9.
    let forest = Forest::new(
        vec![vec![vec![0.0, 0.0, 1.0, 2.0], vec![0.1], vec![0.9]]],
        1,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.json");
    let mut m = new(
        ModelArtifact {
            forest: Some(forest),
            ..a
        },
        "test",
    )
    .unwrap();
    m.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.version(), m.artifact().compute_version());
    let without_trees = ModelArtifact {
        forest: None,
        ..m.artifact().clone()
    };
    assert_ne!(loaded.version(), without_trees.compute_version());
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
    assert_eq!(m.artifact().kind, Kind::LogisticRegression);
    let mut a = artifact();
    a.kind = Kind::RandomForestRegressor;
    assert!(new(a, "x").is_err(), "a forest kind needs trees");
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
    let m = Model::from_json_for(text.as_bytes(), "test", Windows::default()).unwrap();
    let mut x = FeatureVector::zeros(FeatureLayout::default_layout());
    x.set("days_since_last_activity", 30.0);
    // z = -1 + 2 * (30 - 10) / 5 - 0.1 * max(0, 30 - 20) = 6
    assert!((m.logit(&x) - 6.0).abs() < 1e-12);
    let reasons = m.top_reasons(&x, 5);
    assert_eq!(reasons.len(), 1, "both terms explain one feature");
    assert!((reasons[0].contribution - 7.0).abs() < 1e-12);
    assert_eq!(Transform::Log1p.hinge(1.0).apply(0.0), 0.0);
    assert!((Transform::Log1pHinge { knot: 1.0 }.apply(9.0) - (10f64.ln() - 1.0)).abs() < 1e-12);
    let mut bad = artifact();
    bad.features[0].transform = Transform::Hinge { knot: f64::NAN };
    assert!(new(bad, "x").is_err());
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
    a.format = Format::V3;
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
    let mut m = new(
        ModelArtifact {
            derived: Some(spec.clone()),
            ..a.clone()
        },
        "t",
    )
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
    assert!(new(a.clone(), "t").is_err());
    let mut v1 = a.clone();
    v1.format = Format::V1;
    assert!(new(
        ModelArtifact {
            derived: Some(spec.clone()),
            ..v1.clone()
        },
        "t"
    )
    .is_err());
    assert!(new(v1, "t").is_err());
    let mut bad = spec;
    bad.bgnbd.params.a = 1.0;
    assert!(new(
        ModelArtifact {
            derived: Some(bad),
            ..a
        },
        "t"
    )
    .is_err());
}

#[test]
fn version_is_a_content_hash() {
    let a = artifact();
    let mut b = artifact();
    assert_eq!(a.compute_version(), b.compute_version());
    b.intercept = -0.5;
    assert_ne!(a.compute_version(), b.compute_version());
}
