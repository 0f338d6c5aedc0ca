//! Evaluating a model at a cutoff: ranking, threshold, budget, calibration and lead-time metrics.
//!
//! Rows are the labelled snapshots of [`super::dataset::labelled_snapshots`] at one cutoff (the
//! same replay through the same engine as training and serving); each row is scored with the
//! model exactly as the service would score that user at that instant.
//!
//! Definitions (also printed in model cards):
//!
//! - **ROC AUC**: P(score of a random churner > score of a random non-churner), ties half.
//! - **PR AUC**: average precision (step-wise area under the precision–recall curve).
//! - **At the threshold**: precision, recall, F1 and alert rate of `score ≥ threshold`.
//! - **Top k %**: the k % highest-scored users (stable order on ties); precision = churners
//!   among them ÷ their number, recall = share of all churners they contain, **lift** =
//!   precision ÷ base churn rate.
//! - **Calibration**: ten equal-width score bins; per bin the number of users, the mean score
//!   and the observed churn rate (a calibrated model has the two equal); plus the Brier score.
//! - **Lead time**: a user is *labelled churned* at the instant their silence reaches the horizon
//!   (`last activity + horizon`, the first moment the label "no purchase and no login within the
//!   horizon" is known). For every churner alerted at the cutoff (score ≥ threshold), the lead
//!   time is `last activity + horizon − cutoff` in days: how long before that moment the alert
//!   was available. Reported as the median (and quartiles) over alerted churners whose churn was
//!   not yet known at the cutoff (silent for less than the horizon); alerted users already silent
//!   for a whole horizon are counted apart (`already_churned`). It is a lower bound for the
//!   service, which may alert on the daily re-score before the cutoff.

use super::dataset::Row;
pub use super::quality::{evaluate_scores, Evaluation};
use super::Model;
use crate::{Millis, DAY_MS};

/// Default "top k %" budgets reported.
pub const DEFAULT_TOP_K_PCTS: [f64; 4] = [5.0, 10.0, 20.0, 30.0];

/// Scores and labels of one cutoff, kept for plots.
#[derive(Debug, Clone, Default)]
pub struct CutoffScores {
    pub scores: Vec<f64>,
    pub labels: Vec<bool>,
}

/// Scores `rows` (all of one cutoff) with `model` and computes every metric.
pub fn evaluate_rows(
    model: &Model,
    rows: &[&Row],
    cutoff: Millis,
    horizon: Millis,
    top_k_pcts: &[f64],
) -> (Evaluation, CutoffScores) {
    let scores: Vec<f64> = rows.iter().map(|r| model.score(&r.features)).collect();
    let labels: Vec<bool> = rows.iter().map(|r| r.churned).collect();
    let horizon_days = horizon as f64 / DAY_MS as f64;
    let alerted_leads: Vec<f64> = rows
        .iter()
        .zip(&scores)
        .filter(|(r, &s)| r.churned && s >= model.threshold())
        .map(|(r, _)| {
            // A fixed feature: every layout has it.
            horizon_days - r.features.get("days_since_last_activity").unwrap_or(0.0)
        })
        .collect();
    let leads: Vec<f64> = alerted_leads.iter().copied().filter(|&l| l > 0.0).collect();
    let mut eval = evaluate_scores(
        &scores,
        &labels,
        &leads,
        model.threshold(),
        cutoff,
        horizon,
        top_k_pcts,
    );
    eval.lead_time.already_churned = alerted_leads.len() - leads.len();
    (eval, CutoffScores { scores, labels })
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// A readable table of evaluations, one column per cutoff.
pub fn table(evals: &[Evaluation]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&Evaluation) -> String| {
        rows.push((name.to_string(), evals.iter().map(f).collect()));
    };
    row("cutoff", &|e| {
        e.cutoff.get(..10).unwrap_or(&e.cutoff).to_string()
    });
    row("horizon (days)", &|e| format!("{}", e.horizon_days));
    row("users", &|e| e.rows.to_string());
    row("churn rate", &|e| format!("{:.3}", e.churn_rate));
    row("ROC AUC", &|e| opt(e.roc_auc, 4));
    row("PR AUC", &|e| opt(e.pr_auc, 4));
    row("Brier", &|e| format!("{:.4}", e.brier));
    row("threshold", &|e| format!("{:.4}", e.at_threshold.threshold));
    row("precision @thr", &|e| {
        format!("{:.3}", e.at_threshold.precision)
    });
    row("recall @thr", &|e| format!("{:.3}", e.at_threshold.recall));
    row("F1 @thr", &|e| format!("{:.3}", e.at_threshold.f1));
    row("alert rate @thr", &|e| {
        format!("{:.3}", e.at_threshold.alert_rate)
    });
    let pcts: Vec<f64> = evals
        .first()
        .map(|e| e.top_k.iter().map(|t| t.pct).collect())
        .unwrap_or_default();
    for (j, pct) in pcts.iter().enumerate() {
        row(&format!("precision top {pct}%"), &|e| {
            e.top_k
                .get(j)
                .map_or("–".into(), |t| format!("{:.3}", t.precision))
        });
        row(&format!("lift top {pct}%"), &|e| {
            e.top_k
                .get(j)
                .map_or("–".into(), |t| format!("{:.2}", t.lift))
        });
    }
    row("median lead (days)", &|e| opt(e.lead_time.median_days, 1));
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w: Vec<usize> = (0..evals.len())
        .map(|j| {
            rows.iter()
                .map(|r| r.1[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (name, vals) in &rows {
        out.push_str(&format!("{name:<w0$}"));
        for (v, w) in vals.iter().zip(&w) {
            out.push_str(&format!("  {v:>w$}"));
        }
        out.push('\n');
    }
    for e in evals {
        out.push_str(&format!(
            "\ncalibration at {} (score bin: users, mean score, churn rate)\n",
            e.cutoff.get(..10).unwrap_or(&e.cutoff)
        ));
        for b in e.calibration.iter().filter(|b| b.users > 0) {
            out.push_str(&format!(
                "  [{:.1}, {:.1}{}  {:>7}  {}  {}\n",
                b.lo,
                b.hi,
                if b.hi >= 1.0 { "]" } else { ")" },
                b.users,
                opt(b.mean_score, 3),
                opt(b.churn_rate, 3)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_one_column_per_cutoff() {
        let e = evaluate_scores(
            &[0.9, 0.1],
            &[true, false],
            &[5.0],
            0.5,
            0,
            10 * DAY_MS,
            &DEFAULT_TOP_K_PCTS,
        );
        assert_eq!(e.roc_auc, Some(1.0));
        let t = table(&[e.clone(), e]);
        assert!(t.contains("ROC AUC") && t.contains("1970-01-01"), "{t}");
    }
}
