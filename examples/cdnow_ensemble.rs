//! ROC AUC of averaging CDNOW models, at the notes' three evaluation points: each model alone,
//! the mean of their probabilities and the mean of their ranks. Measures whether an ensemble
//! is worth an artifact kind of its own (`models/cdnow-notes.md` has the figures).
//!
//! Usage: `cargo run --release --example cdnow_ensemble -- models/a.json models/b.json ...`
//! (needs `data/cdnow/events.jsonl`, made by `scripts/fetch-cdnow.sh`).

use churnguard::mapping::EventDecoder;
use churnguard::model::dataset::{snapshots, SnapshotSpec};
use churnguard::model::quality::roc_auc;
use churnguard::model::Model;
use churnguard::time::parse_instant;
use churnguard::{history, Millis, DAY_MS};

/// Each score's rank as a fraction, so models with different calibration weigh the same.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    for (k, &i) in idx.iter().enumerate() {
        r[i] = k as f64 / v.len() as f64;
    }
    r
}

fn main() -> anyhow::Result<()> {
    let decoder = EventDecoder::native();
    let events = history::load(
        &["data/cdnow/events.jsonl".into()],
        &history::ReadOptions::offline(&decoder),
    )?
    .events;
    let models = std::env::args()
        .skip(1)
        .map(|n| Model::load(std::path::Path::new(&n)))
        .collect::<Result<Vec<_>, _>>()?;
    let auc = |s: &[f64], y: &[bool]| roc_auc(s, y).unwrap_or(f64::NAN);
    for (date, weeks) in [("1997-10-01", 39), ("1997-12-31", 26), ("1998-04-01", 13)] {
        let cutoff = parse_instant(date).map_err(anyhow::Error::msg)?;
        let spec = SnapshotSpec {
            cutoff,
            horizon: weeks * 7 * DAY_MS,
            active_within: Millis::MAX / 4,
        };
        let rows = snapshots(&events, &[spec], false);
        let y: Vec<bool> = rows.iter().map(|r| r.churned).collect();
        let scores: Vec<Vec<f64>> = models
            .iter()
            .map(|m| rows.iter().map(|r| m.score(&r.features)).collect())
            .collect();
        let sum_of = |vs: &[Vec<f64>]| -> Vec<f64> {
            (0..y.len())
                .map(|i| vs.iter().map(|v| v[i]).sum())
                .collect()
        };
        let rank_scores: Vec<Vec<f64>> = scores.iter().map(|s| ranks(s)).collect();
        let alone: Vec<String> = scores
            .iter()
            .map(|s| format!("{:.4}", auc(s, &y)))
            .collect();
        println!(
            "{date} ({weeks} w): alone {} | mean probability {:.4} | mean rank {:.4}",
            alone.join(" "),
            auc(&sum_of(&scores), &y),
            auc(&sum_of(&rank_scores), &y)
        );
    }
    Ok(())
}
