//! Alert reasons: which features pushed a user's score up, in log-odds, so an alert says why.
//!
//! Logistic regression: a reason is `coef × standardised value`. Forest: the *perturbation
//! contribution*, logit(score) − logit(score with that one input set to its training mean), i.e.
//! how many log-odds of risk this input's value adds compared with an average user — the same
//! unit as the regression's reasons.

use super::derived::input_name;
use super::predict::{logit_of, Model};
use crate::features::FeatureVector;
use crate::scoring::Contribution;

impl Model {
    /// The `k` features that pushed this score up the most (positive contributions first), in
    /// log-odds. Logistic regression: `coef × standardised value`. Forest: logit(score) −
    /// logit(score with the feature set to its training mean), see the module docs.
    pub fn top_reasons(&self, x: &FeatureVector, k: usize) -> Vec<Contribution> {
        let contributions: Vec<f64> = match &self.artifact.forest {
            Some(forest) => {
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
            None => {
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
