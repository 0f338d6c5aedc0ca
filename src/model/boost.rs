//! Fitting gradient-boosted trees on logistic loss, with churnguard's own tree code.
//!
//! Why our own: the trees must land in the artifact in churnguard's format (see
//! [`super::trees`]), the fit must be deterministic (same rows, same parameters, same artifact
//! version), and the model has a handful of inputs and at most a few hundred thousand rows —
//! a histogram booster for that is a few hundred lines, where the pure-Rust crates that do it
//! bring their own model layout, threading and a larger build.
//!
//! The algorithm is the standard second-order one (Friedman 2001; Chen & Guestrin 2016): start
//! from the training churn rate's log-odds; each round fits a regression tree to the gradients
//! `p − y` and hessians `p(1 − p)` of the logistic loss, splitting where
//! `G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)` is largest, with leaves `−G/(H+λ)` times the
//! learning rate. Splits are searched on histograms: each input's training values are cut into
//! at most `max_bins` bins at midpoints between adjacent distinct values (at quantiles when
//! there are more), so a training row goes the same way through the stored `<=` threshold as it
//! did in the fit. No sampling: the fit has no randomness at all; ties between equally good
//! splits go to the lower input index and the lower threshold.

use super::trees::{Boosted, Tree};

/// Gradient-boosting hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GbmParams {
    pub n_trees: usize,
    pub max_depth: u16,
    /// Fewest training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Shrinkage of every tree's leaves.
    pub learning_rate: f64,
    /// L2 regularisation λ of the leaf values.
    pub l2: f64,
    /// Most histogram bins per input (2..=256).
    pub max_bins: usize,
}

impl Default for GbmParams {
    fn default() -> Self {
        GbmParams {
            n_trees: 200,
            max_depth: 3,
            min_samples_leaf: 50,
            learning_rate: 0.1,
            l2: 1.0,
            max_bins: 256,
        }
    }
}

impl GbmParams {
    /// Says which parameter is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_trees == 0 {
            return Err("--trees must be at least 1".into());
        }
        if !(1..=20).contains(&self.max_depth) {
            return Err(format!("--max-depth {} must lie in 1..=20", self.max_depth));
        }
        if self.min_samples_leaf == 0 {
            return Err("--min-samples-leaf must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(format!(
                "--learning-rate {} must lie in (0, 1]",
                self.learning_rate
            ));
        }
        // λ > 0 keeps a leaf whose rows are all of one class (hessians near 0) finite.
        if !(self.l2.is_finite() && self.l2 > 0.0) {
            return Err(format!("--l2 {} must be finite and > 0", self.l2));
        }
        if !(2..=256).contains(&self.max_bins) {
            return Err(format!("--max-bins {} must lie in 2..=256", self.max_bins));
        }
        Ok(())
    }
}

/// What the fit produced.
#[derive(Debug)]
pub struct BoostFit {
    pub boosted: Boosted,
    /// The log-odds the fit reached on each training row (serving must reproduce them).
    pub train_logits: Vec<f64>,
    /// Total split gain per input (the loss reduction it bought), for importances.
    pub gain: Vec<f64>,
}

/// Fits an ensemble on `matrix` (one row of standardised inputs per training row) and labels
/// `y` (true = churned).
pub fn fit_boosted(matrix: &[Vec<f64>], y: &[bool], p: &GbmParams) -> Result<BoostFit, String> {
    p.validate()?;
    let n = matrix.len();
    let n_features = matrix.first().map_or(0, Vec::len);
    if n == 0 || n != y.len() || n_features == 0 {
        return Err(format!(
            "nothing to fit: {n} rows, {} labels, {n_features} inputs",
            y.len()
        ));
    }
    if let Some((r, _)) = matrix
        .iter()
        .enumerate()
        .find(|(_, row)| row.len() != n_features || row.iter().any(|v| !v.is_finite()))
    {
        return Err(format!(
            "training row {r} has a non-finite input or the wrong width"
        ));
    }
    let binned = Binned::new(matrix, p.max_bins);
    let positives = y.iter().filter(|&&c| c).count();
    if positives == 0 || positives == n {
        return Err("the training rows hold one class only".into());
    }
    let rate = positives as f64 / n as f64;
    let base_score = (rate / (1.0 - rate)).ln();
    let mut logits = vec![base_score; n];
    let mut g = vec![0.0; n];
    let mut h = vec![0.0; n];
    let mut gain = vec![0.0; n_features];
    let mut trees = Vec::with_capacity(p.n_trees);
    let all_rows: Vec<u32> = (0..n as u32).collect();
    for _ in 0..p.n_trees {
        for r in 0..n {
            let prob = 1.0 / (1.0 + (-logits[r]).exp());
            g[r] = prob - f64::from(u8::from(y[r]));
            h[r] = prob * (1.0 - prob);
        }
        let mut grower = Grower {
            binned: &binned,
            g: &g,
            h: &h,
            p,
            tree: Tree {
                feature: Vec::new(),
                threshold: Vec::new(),
                left: Vec::new(),
                right: Vec::new(),
                value: Vec::new(),
                cover: Vec::new(),
            },
            logits: &mut logits,
            gain: &mut gain,
        };
        let hist = grower.histogram(&all_rows);
        grower.grow(&all_rows, hist, 0);
        trees.push(grower.tree);
    }
    let boosted = Boosted::new(base_score, p.learning_rate, trees, n_features)?;
    Ok(BoostFit {
        boosted,
        train_logits: logits,
        gain,
    })
}

/// Every input cut into bins: the cut points and each row's bin, column by column.
struct Binned {
    /// Per input, ascending: a value `x` lies in bin `#{cut < x}`, so `x <= cuts[b]` iff its
    /// bin is `<= b` — the stored threshold of a split after bin `b` is `cuts[b]`.
    cuts: Vec<Vec<f64>>,
    /// Per input, each row's bin.
    bins: Vec<Vec<u8>>,
    /// Where each input's bins start in a histogram.
    offsets: Vec<usize>,
    total_bins: usize,
}

impl Binned {
    fn new(matrix: &[Vec<f64>], max_bins: usize) -> Binned {
        let n_features = matrix[0].len();
        let mut cuts = Vec::with_capacity(n_features);
        let mut bins = Vec::with_capacity(n_features);
        let mut offsets = Vec::with_capacity(n_features);
        let mut total_bins = 0;
        for f in 0..n_features {
            let column: Vec<f64> = matrix.iter().map(|row| row[f]).collect();
            let c = cut_points(&column, max_bins);
            bins.push(
                column
                    .iter()
                    .map(|&x| c.partition_point(|&cut| cut < x) as u8)
                    .collect(),
            );
            offsets.push(total_bins);
            total_bins += c.len() + 1;
            cuts.push(c);
        }
        Binned {
            cuts,
            bins,
            offsets,
            total_bins,
        }
    }
}

/// At most `max_bins − 1` cut points between adjacent distinct values of `column`: every gap
/// when there are few distinct values, else the gaps where the running row count passes each
/// `1/max_bins` quantile.
fn cut_points(column: &[f64], max_bins: usize) -> Vec<f64> {
    let mut sorted = column.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in &sorted {
        match distinct.last_mut() {
            Some((last, count)) if *last == v => *count += 1,
            _ => distinct.push((v, 1)),
        }
    }
    let midpoint = |a: f64, b: f64| {
        let m = a + (b - a) * 0.5;
        // Adjacent floats: the midpoint rounds to `b`, which must go right.
        if m < b {
            m
        } else {
            a
        }
    };
    let mut cuts = Vec::new();
    let per_bin = sorted.len() as f64 / max_bins as f64;
    let few = distinct.len() <= max_bins;
    let mut seen = 0usize;
    for w in distinct.windows(2) {
        seen += w[0].1;
        if few || seen as f64 >= per_bin * (cuts.len() + 1) as f64 {
            cuts.push(midpoint(w[0].0, w[1].0));
            if cuts.len() == max_bins - 1 {
                break;
            }
        }
    }
    cuts
}

/// Gradient sum, hessian sum and row count of one histogram bin (or of a node).
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    g: f64,
    h: f64,
    n: usize,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }

    fn minus(&self, o: &Sums) -> Sums {
        Sums {
            g: self.g - o.g,
            h: self.h - o.h,
            n: self.n - o.n,
        }
    }
}

/// The best split of a node.
struct Split {
    feature: usize,
    bin: usize,
    gain: f64,
}

/// Grows one tree, node by node, depth first (a parent's index is always below its children's).
struct Grower<'a> {
    binned: &'a Binned,
    g: &'a [f64],
    h: &'a [f64],
    p: &'a GbmParams,
    tree: Tree,
    logits: &'a mut [f64],
    gain: &'a mut [f64],
}

impl Grower<'_> {
    fn histogram(&self, rows: &[u32]) -> Vec<Sums> {
        let mut hist = vec![Sums::default(); self.binned.total_bins];
        for (f, bins) in self.binned.bins.iter().enumerate() {
            let hist = &mut hist[self.binned.offsets[f]..];
            for &r in rows {
                let s = &mut hist[bins[r as usize] as usize];
                s.g += self.g[r as usize];
                s.h += self.h[r as usize];
                s.n += 1;
            }
        }
        hist
    }

    fn score(&self, s: &Sums) -> f64 {
        s.g * s.g / (s.h + self.p.l2)
    }

    /// The best split of a node with histogram `hist` and totals `total`, if any gains.
    fn best_split(&self, hist: &[Sums], total: &Sums) -> Option<Split> {
        let min_leaf = self.p.min_samples_leaf;
        let parent = self.score(total);
        let mut best: Option<Split> = None;
        for (f, cuts) in self.binned.cuts.iter().enumerate() {
            let bins = &hist[self.binned.offsets[f]..self.binned.offsets[f] + cuts.len() + 1];
            let mut left = Sums::default();
            for (b, s) in bins.iter().enumerate().take(cuts.len()) {
                left.add(s);
                let right = total.minus(&left);
                if left.n < min_leaf || right.n < min_leaf {
                    continue;
                }
                let gain = self.score(&left) + self.score(&right) - parent;
                if gain > 1e-12 && best.as_ref().is_none_or(|s| gain > s.gain) {
                    best = Some(Split {
                        feature: f,
                        bin: b,
                        gain,
                    });
                }
            }
        }
        best
    }

    /// Adds the node for `rows` (and its subtree); returns its index.
    fn grow(&mut self, rows: &[u32], hist: Vec<Sums>, depth: u16) -> usize {
        let total =
            hist[..self.binned.cuts[0].len() + 1]
                .iter()
                .fold(Sums::default(), |mut acc, s| {
                    acc.add(s);
                    acc
                });
        let at = self.tree.feature.len();
        self.tree.feature.push(-1);
        self.tree.threshold.push(0.0);
        self.tree.left.push(0);
        self.tree.right.push(0);
        self.tree.value.push(0.0);
        self.tree.cover.push(rows.len() as f64);
        let split = if depth < self.p.max_depth && rows.len() >= 2 * self.p.min_samples_leaf {
            self.best_split(&hist, &total)
        } else {
            None
        };
        let Some(split) = split else {
            let value = -total.g / (total.h + self.p.l2) * self.p.learning_rate;
            self.tree.value[at] = value;
            for &r in rows {
                self.logits[r as usize] += value;
            }
            return at;
        };
        self.gain[split.feature] += split.gain;
        let bins = &self.binned.bins[split.feature];
        let (left, right): (Vec<u32>, Vec<u32>) = rows
            .iter()
            .partition(|&&r| usize::from(bins[r as usize]) <= split.bin);
        // Histogram the smaller child; the larger one's is the parent's minus it.
        let small = if left.len() <= right.len() {
            &left
        } else {
            &right
        };
        let small_hist = self.histogram(small);
        let large_hist: Vec<Sums> = hist
            .iter()
            .zip(&small_hist)
            .map(|(p, s)| p.minus(s))
            .collect();
        drop(hist);
        let (left_hist, right_hist) = if left.len() <= right.len() {
            (small_hist, large_hist)
        } else {
            (large_hist, small_hist)
        };
        let l = self.grow(&left, left_hist, depth + 1);
        let r = self.grow(&right, right_hist, depth + 1);
        let (cl, cr) = (self.tree.cover[l], self.tree.cover[r]);
        self.tree.feature[at] = split.feature as i64;
        self.tree.threshold[at] = self.binned.cuts[split.feature][split.bin];
        self.tree.left[at] = l as u32;
        self.tree.right[at] = r as u32;
        self.tree.value[at] = (self.tree.value[l] * cl + self.tree.value[r] * cr) / (cl + cr);
        at
    }
}
