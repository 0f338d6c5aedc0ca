//! Tree ensembles in churnguard's own, stable representation.
//!
//! The forest is fitted by smartcore (`RandomForestRegressor` on 0/1 churn labels, so the mean of
//! the trees' leaf values is a churn probability), but smartcore 0.4 keeps its tree nodes private
//! and this build does not enable its `serde` feature. The trainer therefore reads the fitted
//! trees out of smartcore's `Debug` rendering ([`extract_smartcore_forest`]) — exact, since Rust
//! prints `f64` in shortest round-trip form — and then *checks* that the extracted forest
//! reproduces smartcore's own predictions on every training row before it is saved. A smartcore
//! upgrade that changed that rendering would fail training loudly, never serve a wrong model.
//!
//! On disk a tree is a list of nodes; a split node is `[feature, threshold, if_le, if_gt]`
//! (go to `if_le` when the standardised feature value is `<=` threshold, as smartcore does), a
//! leaf is `[value]`. Children always come after their parent, so walking a tree terminates.

use serde::{Deserialize, Serialize};

/// One node as stored: `[value]` (leaf) or `[feature, threshold, if_le, if_gt]` (split).
pub type StoredNode = Vec<f64>;

/// A random forest regressor: the score is the mean of the trees' outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    /// Trees as stored; `feature` indexes the artifact's `features` list.
    pub trees: Vec<Vec<StoredNode>>,
    #[serde(skip)]
    compiled: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Leaf(f64),
    Split {
        feature: usize,
        threshold: f64,
        le: usize,
        gt: usize,
    },
}

impl Forest {
    /// Builds and validates a forest over `n_features` model inputs.
    pub fn new(trees: Vec<Vec<StoredNode>>, n_features: usize) -> Result<Forest, String> {
        let mut f = Forest {
            trees,
            compiled: Vec::new(),
        };
        f.compile(n_features)?;
        Ok(f)
    }

    /// Validates the stored trees and prepares them for scoring.
    pub fn compile(&mut self, n_features: usize) -> Result<(), String> {
        if self.trees.is_empty() {
            return Err("the forest has no trees".into());
        }
        let mut compiled = Vec::with_capacity(self.trees.len());
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(format!("tree {t} has no nodes"));
            }
            let mut nodes = Vec::with_capacity(tree.len());
            for (i, n) in tree.iter().enumerate() {
                let node = match n.as_slice() {
                    [v] if v.is_finite() => Node::Leaf(*v),
                    [f, thr, le, gt] => {
                        let ok_child =
                            |c: f64| c.fract() == 0.0 && c > i as f64 && c < tree.len() as f64;
                        if !(f.fract() == 0.0 && *f >= 0.0 && (*f as usize) < n_features) {
                            return Err(format!("tree {t} node {i}: feature {f} out of range"));
                        }
                        if !(thr.is_finite() && ok_child(*le) && ok_child(*gt)) {
                            return Err(format!("tree {t} node {i}: bad threshold or children"));
                        }
                        Node::Split {
                            feature: *f as usize,
                            threshold: *thr,
                            le: *le as usize,
                            gt: *gt as usize,
                        }
                    }
                    _ => return Err(format!("tree {t} node {i}: malformed node {n:?}")),
                };
                nodes.push(node);
            }
            compiled.push(nodes);
        }
        self.compiled = compiled;
        Ok(())
    }

    /// Mean of the trees' outputs for standardised inputs `x` (model feature order).
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut sum = 0.0;
        for tree in &self.compiled {
            let mut i = 0;
            loop {
                match tree[i] {
                    Node::Leaf(v) => {
                        sum += v;
                        break;
                    }
                    Node::Split {
                        feature,
                        threshold,
                        le,
                        gt,
                    } => i = if x[feature] <= threshold { le } else { gt },
                }
            }
        }
        sum / self.compiled.len() as f64
    }

    /// Total nodes, for the model card.
    pub fn node_count(&self) -> usize {
        self.trees.iter().map(Vec::len).sum()
    }
}

/// Reads the trees of a fitted smartcore forest from its `Debug` rendering (see module docs).
pub fn extract_smartcore_forest(debug: &str) -> Result<Vec<Vec<StoredNode>>, String> {
    let mut trees = Vec::new();
    for tree_text in debug.split("BaseTreeRegressor {").skip(1) {
        let nodes_text = tree_text
            .split("parameters:")
            .next()
            .ok_or("no parameters after nodes")?;
        let mut nodes = Vec::new();
        for node_text in nodes_text.split("Node {").skip(1) {
            let body = node_text.split('}').next().ok_or("unterminated node")?;
            let mut output = None;
            let mut feature = None;
            let mut value = None;
            let mut le = None;
            let mut gt = None;
            for field in body.split(',') {
                let Some((k, v)) = field.split_once(':') else {
                    continue;
                };
                let v = v.trim();
                let opt = |v: &str| -> Result<Option<f64>, String> {
                    if v == "None" {
                        Ok(None)
                    } else if let Some(inner) =
                        v.strip_prefix("Some(").and_then(|s| s.strip_suffix(')'))
                    {
                        inner
                            .parse::<f64>()
                            .map(Some)
                            .map_err(|e| format!("{v}: {e}"))
                    } else {
                        v.parse::<f64>().map(Some).map_err(|e| format!("{v}: {e}"))
                    }
                };
                match k.trim() {
                    "output" => output = opt(v)?,
                    "split_feature" => feature = opt(v)?,
                    "split_value" => value = opt(v)?,
                    "true_child" => le = opt(v)?,
                    "false_child" => gt = opt(v)?,
                    _ => {}
                }
            }
            let node = match (le, gt) {
                (None, None) => vec![output.ok_or("leaf without output")?],
                (Some(le), Some(gt)) => vec![
                    feature.ok_or("split without feature")?,
                    value.ok_or("split without value")?,
                    le,
                    gt,
                ],
                _ => return Err("node with one child".into()),
            };
            nodes.push(node);
        }
        if nodes.is_empty() {
            return Err("a tree without nodes".into());
        }
        trees.push(nodes);
    }
    if trees.is_empty() {
        return Err("no trees found in smartcore's forest".into());
    }
    Ok(trees)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartcore::ensemble::random_forest_regressor::{
        RandomForestRegressor, RandomForestRegressorParameters,
    };
    use smartcore::linalg::basic::matrix::DenseMatrix;

    #[test]
    fn extracted_trees_reproduce_smartcore_predictions() {
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let a = (i % 17) as f64 / 3.0 - 2.0;
                let b = ((i * 7) % 23) as f64 * 0.1;
                vec![a, b, (a * b).sin()]
            })
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .map(|r| f64::from(u8::from(r[0] + 0.3 * r[1] > 0.0)))
            .collect();
        let x = DenseMatrix::from_2d_vec(&rows).unwrap();
        let params = RandomForestRegressorParameters::default()
            .with_n_trees(7)
            .with_max_depth(4)
            .with_seed(5);
        let fitted = RandomForestRegressor::fit(&x, &y, params).unwrap();
        let expected = fitted.predict(&x).unwrap();
        let forest =
            Forest::new(extract_smartcore_forest(&format!("{fitted:?}")).unwrap(), 3).unwrap();
        assert_eq!(forest.trees.len(), 7);
        for (r, e) in rows.iter().zip(&expected) {
            assert!(
                (forest.predict(r) - e).abs() < 1e-12,
                "{} vs {e}",
                forest.predict(r)
            );
        }
    }

    #[test]
    fn refuses_malformed_trees() {
        assert!(Forest::new(
            vec![vec![vec![0.0, 0.5, 0.0, 2.0], vec![1.0], vec![0.0]]],
            1
        )
        .is_err());
        assert!(Forest::new(
            vec![vec![vec![3.0, 0.5, 1.0, 2.0], vec![1.0], vec![0.0]]],
            1
        )
        .is_err());
        let ok = Forest::new(
            vec![vec![vec![0.0, 0.5, 1.0, 2.0], vec![1.0], vec![0.0]]],
            1,
        )
        .unwrap();
        assert_eq!((ok.predict(&[0.5]), ok.predict(&[0.6])), (1.0, 0.0));
    }
}
