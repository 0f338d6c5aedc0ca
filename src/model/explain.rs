//! Alert reasons: which features pushed a user's score up, in log-odds, so an alert says why.
//!
//! Logistic regression: a reason is `coef × standardised value`. Forest: the *perturbation
//! contribution*, logit(score) − logit(score with that one input set to its training mean), i.e.
//! how many log-odds of risk this input's value adds compared with an average user — the same
//! unit as the regression's reasons. Boosted trees: path attribution (see [`super::trees`]):
//! each split on the user's path through a tree credits its input with the change of the
//! tree's expected value, so the base value (the mean log-odds over the training rows) plus all
//! contributions is exactly the user's log-odds.

use super::derived::input_name;
use super::predict::{logit_of, Model};
use crate::features::FeatureVector;
use crate::scoring::Contribution;

/// A boosted model's log-odds for one user, split into a base value and one contribution per
/// model input (artifact feature order): `base + Σ contributions = logit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub base: f64,
    pub contributions: Vec<f64>,
}

impl Model {
    /// The path attribution of a boosted model's log-odds for `x`; `None` for other kinds.
    pub fn attribution(&self, x: &FeatureVector) -> Option<Attribution> {
        let gbm = self.artifact.gbm.as_ref()?;
        let mut contributions = vec![0.0; self.indices.len()];
        self.with_inputs(x, |inputs| gbm.contributions(inputs, &mut contributions));
        Some(Attribution {
            base: gbm.expected_logit(),
            contributions,
        })
    }

    /// The `k` features that pushed this score up the most (positive contributions first), in
    /// log-odds. Logistic regression: `coef × standardised value`. Forest: logit(score) −
    /// logit(score with the feature set to its training mean). Boosted trees: path
    /// attribution. See the module docs.
    pub fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution> {
        let attribution = self.attribution(x);
        let contributions: Vec<f64> = match (&self.artifact.forest, attribution) {
            (_, Some(a)) => a.contributions,
            (Some(forest), None) => {
                let mut inputs = self.inputs(x);
                let base = logit_of(forest.predict(&inputs));
                (0..inputs.len())
                    .map(|j| {
                        let own = inputs[j];
                        inputs[j] = 0.0; // the training mean, standardised
                        let without = logit_of(forest.predict(&inputs));
                        inputs[j] = own;
                        base - without
                    })
                    .collect()
            }
            (None, None) => {
                let d = self.derived_values(x);
                self.artifact
                    .features
                    .iter()
                    .zip(&self.indices)
                    .map(|(f, &i)| {
                        f.coef * (f.transform.apply(Self::raw(x, &d, i)) - f.mean) / f.std
                    })
                    .collect()
            }
        };
        let d = self.derived_values(x);
        // A feature with spline terms appears several times: its contribution is their sum.
        let mut all: Vec<Contribution> = Vec::with_capacity(self.indices.len());
        for (&i, contribution) in self.indices.iter().zip(contributions) {
            let name = input_name(self.layout, i);
            match all.iter_mut().find(|c| c.feature == name) {
                Some(c) => c.contribution += contribution,
                None => all.push(Contribution {
                    feature: name,
                    value: Self::raw(x, &d, i),
                    contribution,
                }),
            }
        }
        all.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        all.truncate(k);
        all
    }
}
