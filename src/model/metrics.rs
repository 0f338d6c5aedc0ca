//! Classification metrics for churn models, computed from scores and 0/1 labels.
//!
//! Written out rather than pulled from a crate: they are short, and the exact definitions
//! (tie handling in ROC AUC, average precision for PR AUC) matter when comparing against
//! published baselines.

use serde::{Deserialize, Serialize};

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
}
