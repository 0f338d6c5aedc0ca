//! Configurable windows end to end, without Kafka: a model trained under non-default windows
//! records them, loads only under them, and scores the features training saw — in replay and
//! in a live engine alike.

use std::sync::Arc;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::Event;
use churnguard::features::Windows;
use churnguard::model::dataset;
use churnguard::model::train::{self, TrainConfig};
use churnguard::model::{Model, ModelError};
use churnguard::synth::{generate, SynthConfig};
use churnguard::{replay, DAY_MS};

#[test]
fn a_model_trained_with_other_windows_runs_only_under_them_and_scores_like_training() {
    let windows: Windows = "7,30,90,180".parse().unwrap();
    let end = 20_000 * DAY_MS;
    let (_, events) = generate(&SynthConfig {
        users: 600,
        days: 300,
        end,
        churn_share: 0.4,
        seed: 5,
    });
    let cutoffs = [end - 150 * DAY_MS, end - 120 * DAY_MS];
    let trained = train::train(
        &events,
        &TrainConfig {
            horizon: 30 * DAY_MS,
            train_cutoffs: cutoffs.to_vec(),
            validation_cutoff: Some(end - 60 * DAY_MS),
            windows,
            ..TrainConfig::default()
        },
    )
    .expect("training succeeds");
    assert_eq!(
        trained.artifact.training.windows.as_deref(),
        Some("7,30,90,180")
    );
    assert!(trained
        .artifact
        .features
        .iter()
        .any(|f| f.name.ends_with("_180d")));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m180.json");
    let mut trained = trained;
    trained.save(&path).unwrap();
    // The artifact on disk says which windows it needs.
    assert_eq!(
        Model::load_for(&path, windows)
            .unwrap()
            .artifact()
            .windows()
            .unwrap(),
        windows
    );
    match Model::load(&path) {
        Err(e @ ModelError::WindowsMismatch { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("windows 7,30,90 do not compute")
                    && text.contains("trained with windows 7,30,90,180"),
                "{text}"
            );
        }
        other => panic!("a 180-day model must be refused under 7,30,90: {other:?}"),
    }
    let model = Arc::new(Model::load_for(&path, windows).unwrap());
    let config = || EngineConfig {
        windows,
        ..EngineConfig::default()
    };

    // Training rows, replay and a live engine (hourly clock) agree on every feature.
    let cutoff = end - 40 * DAY_MS + 5 * 3_600_000;
    let rows = dataset::snapshots_for(
        &events,
        &[dataset::SnapshotSpec {
            cutoff,
            horizon: 30 * DAY_MS,
            active_within: 30 * DAY_MS,
        }],
        false,
        windows,
    );
    assert!(rows.len() > 50, "{} rows", rows.len());
    let before: Vec<Event> = events.iter().filter(|e| e.ts <= cutoff).cloned().collect();
    let mut replayed = Engine::new(config(), Some(model.clone()));
    replay::replay(&mut replayed, &before, Some(cutoff));
    let mut live = Engine::new(config(), Some(model.clone()));
    let mut clock = before.first().unwrap().ts;
    let mut out = Vec::new();
    for e in &before {
        while clock + 3_600_000 < e.ts {
            clock += 3_600_000;
            live.advance(clock, &mut out);
        }
        live.apply(e).unwrap();
    }
    live.advance(cutoff, &mut out);
    for r in &rows {
        assert!(r.features.get("purchases_180d").is_some());
        let a = replayed.features(&r.user_id, cutoff).unwrap();
        let b = live.features(&r.user_id, cutoff).unwrap();
        assert_eq!(r.features, a, "training vs replay for {}", r.user_id);
        assert_eq!(r.features, b, "training vs live for {}", r.user_id);
        assert_eq!(model.score(&r.features), model.score(&b));
    }
    // The 180-day window reaches past the 90 days a default engine keeps.
    let deep = rows
        .iter()
        .filter(|r| r.features.get("events_180d") > r.features.get("events_90d"))
        .count();
    assert!(deep > 0, "some users have activity 90-180 days back");
}
