//! Scoring benchmark: time per user of `Model::score` (the engine's hot path) and of
//! `Model::top_reasons` (alerts only) for each model artifact, on real feature vectors.
//!
//! `cargo bench --bench score -- [MODEL.json ...]` (default: every `models/*.json`). The vectors
//! are every user's features at day 200 of a synthetic history (the project's generator, 5,000
//! users, seed 42), so trees take the paths real users take. Each figure is the median of 7
//! passes over all vectors; single-threaded.

use std::path::PathBuf;
use std::time::Instant;

use churnguard::features::{FeatureVector, Windows};
use churnguard::model::dataset::{snapshots_for, SnapshotSpec};
use churnguard::model::Model;
use churnguard::synth::{generate, SynthConfig};
use churnguard::DAY_MS;

fn median_ns_per_user(vectors: &[FeatureVector], mut f: impl FnMut(&FeatureVector) -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            let mut sink = 0.0;
            for x in vectors {
                sink += f(x);
            }
            std::hint::black_box(sink);
            started.elapsed().as_nanos() as f64 / vectors.len() as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        let mut all: Vec<PathBuf> = std::fs::read_dir(root.join("models"))
            .expect("models/ is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        all.sort();
        paths = all;
    }
    let cfg = SynthConfig {
        users: 5000,
        days: 365,
        end: 20_000 * DAY_MS,
        churn_share: 0.4,
        seed: 42,
    };
    let (_, events) = generate(&cfg);
    let cutoff = events[0].ts + 200 * DAY_MS;
    let spec = SnapshotSpec {
        cutoff,
        horizon: 0,
        active_within: i64::MAX / 4,
    };
    let vectors: Vec<FeatureVector> = snapshots_for(&events, &[spec], false, Windows::default())
        .into_iter()
        .map(|r| r.features)
        .collect();
    println!(
        "{} feature vectors; median of 7 passes, ns per user\n{:<28} {:<24} {:>8} {:>10}",
        vectors.len(),
        "model",
        "kind",
        "score",
        "reasons"
    );
    for path in paths {
        let model = match Model::load(&path) {
            Ok(m) => m,
            Err(e) => {
                println!("{}: not loaded: {e}", path.display());
                continue;
            }
        };
        let score = median_ns_per_user(&vectors, |x| model.score(x));
        let reasons = median_ns_per_user(&vectors, |x| {
            model
                .top_reasons(x, 3)
                .first()
                .map_or(0.0, |c| c.contribution)
        });
        println!(
            "{:<28} {:<24} {:>8.0} {:>10.0}",
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into()),
            model.artifact().kind.as_str(),
            score,
            reasons
        );
    }
}
