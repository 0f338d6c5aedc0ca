//! Gradient-boosted trees in churnguard's own, stable format: what a `gradient_boosted_trees`
//! artifact stores, how it scores, and how a score is explained.
//!
//! The trees are fitted by churnguard itself ([`super::boost`]), so the artifact never depends on
//! a library's private layout: a tree is six flat arrays of equal length, one entry per node —
//! `feature` (the model input it splits on, `-1` for a leaf), `threshold` (go `left` when the
//! standardised input is `<=` it, else `right`), `left` and `right` (child node indices, `0` for
//! a leaf; children always come after their parent, so a walk terminates), `value` and `cover`.
//! A leaf's `value` is what the tree adds to the log-odds (learning rate applied); a split's is
//! the cover-weighted mean of its children's, and `cover` is the number of training rows that
//! reached the node.
//!
//! Score: log-odds = `base_score` + Σ trees' leaf values, probability = sigmoid(log-odds).
//!
//! Explanation (Saabas path attribution): walking a tree from the root, each split moves the
//! running value from the node's `value` to the taken child's; that step is credited to the
//! split's input. Per tree the steps add up to leaf value − root value, so the base value
//! (`base_score` + Σ root values, the mean log-odds over the training rows) plus every input's
//! contribution is exactly the log-odds of the score.

use serde::{Deserialize, Serialize};

/// One tree as stored: parallel node arrays (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub feature: Vec<i64>,
    pub threshold: Vec<f64>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub value: Vec<f64>,
    pub cover: Vec<f64>,
}

impl Tree {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.feature.len()
    }

    /// Whether the tree has no nodes (never true of a validated tree).
    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    /// Checks the arrays against each other and `n_features`; says which node is wrong.
    fn validate(&self, t: usize, n_features: usize) -> Result<(), String> {
        let n = self.len();
        if n == 0 {
            return Err(format!("tree {t} has no nodes"));
        }
        let lens = [
            self.threshold.len(),
            self.left.len(),
            self.right.len(),
            self.value.len(),
            self.cover.len(),
        ];
        if lens.iter().any(|&l| l != n) {
            return Err(format!(
                "tree {t}: node arrays differ in length (feature {n}, threshold, left, right, \
                 value, cover: {lens:?})"
            ));
        }
        for i in 0..n {
            let (f, l, r) = (
                self.feature[i],
                self.left[i] as usize,
                self.right[i] as usize,
            );
            if !(self.value[i].is_finite() && self.cover[i].is_finite() && self.cover[i] >= 0.0) {
                return Err(format!("tree {t} node {i}: non-finite value or bad cover"));
            }
            if f == -1 {
                if l != 0 || r != 0 {
                    return Err(format!(
                        "tree {t} node {i}: a leaf (feature -1) with children"
                    ));
                }
                continue;
            }
            if !(f >= 0 && (f as usize) < n_features) {
                return Err(format!(
                    "tree {t} node {i}: feature {f} out of range (the model has {n_features} \
                     inputs; -1 marks a leaf)"
                ));
            }
            if !self.threshold[i].is_finite() {
                return Err(format!("tree {t} node {i}: non-finite threshold"));
            }
            if !(l > i && l < n && r > i && r < n && l != r) {
                return Err(format!(
                    "tree {t} node {i}: children {l}, {r} must be distinct nodes after it"
                ));
            }
        }
        Ok(())
    }
}

/// A fitted boosted ensemble as stored under the artifact's `gbm` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boosted {
    /// The log-odds every score starts from (the training churn rate's).
    pub base_score: f64,
    /// Shrinkage the fit applied to each tree (already included in the leaf values).
    pub learning_rate: f64,
    pub trees: Vec<Tree>,
    #[serde(skip)]
    compiled: Compiled,
}

/// The trees as one flat node array for scoring: no per-tree indirection, no allocation.
///
/// A leaf points to itself on both sides (and reads input 0), so every tree can be walked a
/// fixed `depth` steps without a branch on "is this a leaf"; [`Boosted::logit`] walks
/// [`LANES`] trees side by side, whose loads do not wait for one another.
#[derive(Debug, Clone, Default, PartialEq)]
struct Compiled {
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// Splits on the longest root-to-leaf path of any tree.
    depth: usize,
}

/// A node ready to score.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    feature: u32,
    left: u32,
    right: u32,
    leaf: bool,
    threshold: f64,
    value: f64,
}

/// Trees walked side by side.
const LANES: usize = 4;

impl Boosted {
    /// Builds and validates an ensemble over `n_features` model inputs.
    pub fn new(
        base_score: f64,
        learning_rate: f64,
        trees: Vec<Tree>,
        n_features: usize,
    ) -> Result<Boosted, String> {
        let mut b = Boosted {
            base_score,
            learning_rate,
            trees,
            compiled: Compiled::default(),
        };
        b.compile(n_features)?;
        Ok(b)
    }

    /// Validates the stored trees and prepares them for scoring.
    pub fn compile(&mut self, n_features: usize) -> Result<(), String> {
        if !self.base_score.is_finite() || !self.learning_rate.is_finite() {
            return Err("non-finite base_score or learning_rate".into());
        }
        if self.trees.is_empty() || n_features == 0 {
            return Err("the ensemble has no trees or no inputs".into());
        }
        let mut c = Compiled::default();
        for (t, tree) in self.trees.iter().enumerate() {
            tree.validate(t, n_features)?;
            let offset = u32::try_from(c.nodes.len())
                .map_err(|_| "too many nodes in the ensemble".to_string())?;
            c.roots.push(offset);
            let mut depth = vec![0usize; tree.len()];
            for i in 0..tree.len() {
                let leaf = tree.feature[i] == -1;
                let own = offset + i as u32;
                c.nodes.push(Node {
                    feature: if leaf { 0 } else { tree.feature[i] as u32 },
                    left: if leaf { own } else { offset + tree.left[i] },
                    right: if leaf { own } else { offset + tree.right[i] },
                    leaf,
                    threshold: tree.threshold[i],
                    value: tree.value[i],
                });
                if !leaf {
                    // Children come after their parent, so the parent's depth is known.
                    for child in [tree.left[i], tree.right[i]] {
                        depth[child as usize] = depth[i] + 1;
                    }
                }
            }
            c.depth = c.depth.max(depth.into_iter().max().unwrap_or(0));
        }
        self.compiled = c;
        Ok(())
    }

    /// Log-odds for standardised inputs `x` (model input order). No allocation. The leaf
    /// values are added in tree order, as the fit added them, so the result is the fit's to
    /// the bit.
    pub fn logit(&self, x: &[f64]) -> f64 {
        let c = &self.compiled;
        let step = |i: u32| {
            let n = &c.nodes[i as usize];
            if x[n.feature as usize] <= n.threshold {
                n.left
            } else {
                n.right
            }
        };
        let mut z = self.base_score;
        let mut lanes = c.roots.chunks_exact(LANES);
        for roots in &mut lanes {
            let mut at = [0u32; LANES];
            at.copy_from_slice(roots);
            for _ in 0..c.depth {
                for a in &mut at {
                    *a = step(*a);
                }
            }
            for a in at {
                z += c.nodes[a as usize].value;
            }
        }
        for &root in lanes.remainder() {
            let mut a = root;
            for _ in 0..c.depth {
                a = step(a);
            }
            z += c.nodes[a as usize].value;
        }
        z
    }

    /// The base value of explanations: `base_score` + every tree's root value.
    pub fn expected_logit(&self) -> f64 {
        self.base_score
            + self
                .trees
                .iter()
                .map(|t| t.value.first().copied().unwrap_or(0.0))
                .sum::<f64>()
    }

    /// Each input's contribution to the log-odds of `x` (path attribution, see the module
    /// docs), added into `out` (one entry per model input). The base value
    /// ([`Self::expected_logit`]) plus the sum of `out` is [`Self::logit`].
    pub fn contributions(&self, x: &[f64], out: &mut [f64]) {
        let nodes = &self.compiled.nodes;
        for &root in &self.compiled.roots {
            let mut n = nodes[root as usize];
            while !n.leaf {
                let next = if x[n.feature as usize] <= n.threshold {
                    n.left
                } else {
                    n.right
                };
                let child = nodes[next as usize];
                out[n.feature as usize] += child.value - n.value;
                n = child;
            }
        }
    }

    /// Total nodes, for the model card.
    pub fn node_count(&self) -> usize {
        self.trees.iter().map(Tree::len).sum()
    }

    /// Splits per input, for the model card.
    pub fn splits_per_feature(&self, n_features: usize) -> Vec<usize> {
        let mut splits = vec![0; n_features];
        for t in &self.trees {
            for &f in &t.feature {
                if let Some(s) = usize::try_from(f).ok().and_then(|f| splits.get_mut(f)) {
                    *s += 1;
                }
            }
        }
        splits
    }
}
