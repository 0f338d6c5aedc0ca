//! Evaluating a model at a cutoff: ranking, threshold, budget, calibration and lead-time metrics.
//!
//! Rows are the labelled snapshots of [`super::train::labelled_snapshots`] at one cutoff (the
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

use serde::{Deserialize, Serialize};

use super::metrics::{at_threshold, average_precision, roc_auc, AtThreshold};
use super::train::Row;
use super::Model;
use crate::{Millis, DAY_MS};

/// Default "top k %" budgets reported.
pub const DEFAULT_TOP_K_PCTS: [f64; 4] = [5.0, 10.0, 20.0, 30.0];

/// Precision, recall and lift of alerting the top `pct` % of users by risk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    pub pct: f64,
    pub users: usize,
    pub precision: f64,
    pub recall: f64,
    pub lift: f64,
}

/// One bin of the calibration table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub users: usize,
    pub mean_score: Option<f64>,
    pub churn_rate: Option<f64>,
}

/// Lead time of alerts on churners (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    /// Alerted churners whose churn was not yet known at the cutoff.
    pub alerted_churners: usize,
    /// Alerted users already silent for a whole horizon at the cutoff (no lead time).
    #[serde(default)]
    pub already_churned: usize,
    pub median_days: Option<f64>,
    pub p25_days: Option<f64>,
    pub p75_days: Option<f64>,
}

/// Every metric of one model at one cutoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub cutoff: String,
    pub horizon_days: f64,
    pub rows: usize,
    pub churners: usize,
    pub churn_rate: f64,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: f64,
    pub at_threshold: AtThreshold,
    pub top_k: Vec<TopK>,
    pub calibration: Vec<CalibrationBin>,
    pub lead_time: LeadTime,
}

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

/// Metrics from scores and labels; `leads` are the lead times (days) of alerted churners.
pub fn evaluate_scores(
    scores: &[f64],
    labels: &[bool],
    leads: &[f64],
    threshold: f64,
    cutoff: Millis,
    horizon: Millis,
    top_k_pcts: &[f64],
) -> Evaluation {
    let n = scores.len();
    let churners = labels.iter().filter(|&&l| l).count();
    let base = if n > 0 {
        churners as f64 / n as f64
    } else {
        0.0
    };
    let brier = if n > 0 {
        scores
            .iter()
            .zip(labels)
            .map(|(s, &l)| (s - f64::from(u8::from(l))).powi(2))
            .sum::<f64>()
            / n as f64
    } else {
        0.0
    };
    Evaluation {
        cutoff: crate::time::rfc3339(cutoff),
        horizon_days: horizon as f64 / DAY_MS as f64,
        rows: n,
        churners,
        churn_rate: base,
        roc_auc: roc_auc(scores, labels),
        pr_auc: average_precision(scores, labels),
        brier,
        at_threshold: at_threshold(scores, labels, threshold),
        top_k: top_k_pcts
            .iter()
            .map(|&pct| top_k(scores, labels, pct))
            .collect(),
        calibration: calibration(scores, labels, 10),
        lead_time: lead_time(leads),
    }
}

/// Indices of rows by descending score, stable on ties.
pub fn ranked(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// Precision, recall and lift of the top `pct` % of users by score.
pub fn top_k(scores: &[f64], labels: &[bool], pct: f64) -> TopK {
    let n = scores.len();
    let total = labels.iter().filter(|&&l| l).count();
    let users = ((n as f64 * pct / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
    let hits = ranked(scores)
        .iter()
        .take(users)
        .filter(|&&i| labels[i])
        .count();
    let precision = if users > 0 {
        hits as f64 / users as f64
    } else {
        0.0
    };
    let base = if n > 0 { total as f64 / n as f64 } else { 0.0 };
    TopK {
        pct,
        users,
        precision,
        recall: if total > 0 {
            hits as f64 / total as f64
        } else {
            0.0
        },
        lift: if base > 0.0 { precision / base } else { 0.0 },
    }
}

/// Equal-width reliability table over `[0, 1]`.
pub fn calibration(scores: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut count = vec![0usize; bins];
    let mut sum = vec![0.0f64; bins];
    let mut pos = vec![0usize; bins];
    for (s, &l) in scores.iter().zip(labels) {
        let b = ((s.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        sum[b] += s;
        pos[b] += usize::from(l);
    }
    (0..bins)
        .map(|b| CalibrationBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            users: count[b],
            mean_score: (count[b] > 0).then(|| sum[b] / count[b] as f64),
            churn_rate: (count[b] > 0).then(|| pos[b] as f64 / count[b] as f64),
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Median and quartiles of lead times.
pub fn lead_time(leads: &[f64]) -> LeadTime {
    let mut sorted = leads.to_vec();
    sorted.sort_by(f64::total_cmp);
    LeadTime {
        alerted_churners: sorted.len(),
        already_churned: 0,
        median_days: quantile(&sorted, 0.5),
        p25_days: quantile(&sorted, 0.25),
        p75_days: quantile(&sorted, 0.75),
    }
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
    fn top_k_lift_and_calibration() {
        let scores = [0.9, 0.8, 0.3, 0.2, 0.1];
        let labels = [true, false, true, false, false];
        let t = top_k(&scores, &labels, 20.0);
        assert_eq!((t.users, t.precision, t.recall), (1, 1.0, 0.5));
        assert!((t.lift - 2.5).abs() < 1e-12);
        let c = calibration(&scores, &labels, 10);
        assert_eq!(c[9].users, 1);
        assert_eq!(c[8].churn_rate, Some(0.0));
        assert_eq!(c[5].mean_score, None);
        let l = lead_time(&[10.0, 30.0, 20.0]);
        assert_eq!((l.median_days, l.alerted_churners), (Some(20.0), 3));
    }

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
