//! Classification metrics for churn models, computed from scores and 0/1 labels: ranking,
//! threshold, top-k budgets, calibration and lead time (definitions in [`super::evaluate`]).
//!
//! Written out rather than pulled from a crate: they are short, and the exact definitions
//! (tie handling in ROC AUC, average precision for PR AUC) matter when comparing against
//! published baselines.

use serde::{Deserialize, Serialize};

use crate::{Millis, DAY_MS};

/// ROC AUC: the probability that a random positive scores above a random negative (ties count
/// half), via the Mann–Whitney rank sum. `None` when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos, mut i) = (0.0f64, 0u64, 0usize);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg_rank;
                pos += 1;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() as u64 - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// PR AUC as average precision (the step-wise area, as scikit-learn computes it).
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let total_pos = labels.iter().filter(|&&l| l).count();
    if total_pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] {
                tp += 1
            } else {
                fp += 1
            }
            j += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

/// Confusion-matrix figures at one threshold (score ≥ threshold predicts churn).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AtThreshold {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of users that would be alerted.
    pub alert_rate: f64,
}

/// Precision, recall and F1 at `threshold`.
pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> AtThreshold {
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (s, &l) in scores.iter().zip(labels) {
        match (*s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            _ => {}
        }
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if tp + fneg > 0 {
        tp as f64 / (tp + fneg) as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let alert_rate = if scores.is_empty() {
        0.0
    } else {
        (tp + fp) as f64 / scores.len() as f64
    };
    AtThreshold {
        threshold,
        precision,
        recall,
        f1,
        alert_rate,
    }
}

/// The threshold (among the observed scores, on a 1% quantile grid) that maximises F1.
pub fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> AtThreshold {
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut best = at_threshold(scores, labels, 0.5);
    for q in 1..100 {
        let Some(&t) = sorted.get(sorted.len() * q / 100) else {
            continue;
        };
        let m = at_threshold(scores, labels, t);
        if m.f1 > best.f1 {
            best = m;
        }
    }
    best
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        // One positive above one of two negatives: 0.5.
        assert_eq!(roc_auc(&[0.1, 0.5, 0.9], &[false, true, false]), Some(0.5));
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranked: T(0.9) F(0.8) T(0.7) F(0.1): AP = 0.5*1 + 0.5*(2/3).
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn f1_at_threshold() {
        let m = at_threshold(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false], 0.75);
        assert_eq!((m.precision, m.recall, m.alert_rate), (0.5, 0.5, 0.5));
    }

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
}
