//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for
//! Customer Base Analysis"): what a customer's future orders will be worth, from the number and
//! mean value of their past repeat orders.
//!
//! Why it is here: a churn score says how likely a customer is to go; a retention team also
//! needs to know how much goes with them. BG/NBD ([`super::bgnbd`]) predicts how many orders a
//! customer will place; Gamma-Gamma predicts what each will be worth; their product is the
//! customer's expected value over a horizon, and P(churn) × that is the value at risk.
//!
//! The model: a customer's order values are Gamma(p, ν) around their own mean, and ν varies
//! across customers as Gamma(q, γ). With `x` repeat orders of mean value `z̄`:
//!
//! - likelihood (the paper's equation 3, up to terms free of the parameters):
//!   `ln L = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln z̄ + px ln x − (px+q) ln(γ + x z̄)`
//! - expected value of the customer's next order (equation 5):
//!   `E[Z | x, z̄] = (γ + x z̄) p / (px + q − 1)`, a weighted mean of the population mean
//!   `pγ/(q−1)` and the customer's own `z̄`;
//! - customers without a repeat order (`x = 0`) get the population mean.
//!
//! The model assumes order values independent of order frequency; as in the paper, it is fitted
//! on customers with at least one repeat order.

use serde::{Deserialize, Serialize};

use super::bgnbd::{ln_gamma, minimize_restarted};

/// Why a Gamma-Gamma model could not be fitted or used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GammaGammaError {
    #[error("Gamma-Gamma needs at least one customer with a repeat order and a positive mean order value to fit")]
    NoRepeatCustomers,
    #[error("Gamma-Gamma parameters must be finite and positive, with q > 1: {0:?}")]
    BadParams(GammaGammaParams),
    #[error("Gamma-Gamma fit did not reach a finite likelihood")]
    NoConvergence,
    #[error("customer {index}: {what} must be finite and positive, got {value}")]
    BadCustomer {
        index: usize,
        what: &'static str,
        value: f64,
    },
}

/// The three Gamma-Gamma parameters: order values ~ Gamma(p, ν), ν ~ Gamma(q, γ) across
/// customers (γ in the currency's units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// One customer's repeat orders: how many, and their mean value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spender {
    /// Repeat orders (orders after the first).
    pub x: f64,
    /// Mean value of those repeat orders.
    pub mean_value: f64,
}

impl GammaGammaParams {
    /// Refuses parameters the formulas cannot use (the population mean divides by `q − 1`).
    pub fn validate(self) -> Result<Self, GammaGammaError> {
        let ok = [self.p, self.q, self.gamma]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
            && self.q > 1.0;
        if ok {
            Ok(self)
        } else {
            Err(GammaGammaError::BadParams(self))
        }
    }

    /// Log-likelihood of one customer with `x > 0` repeat orders of mean value `z̄ > 0`.
    pub fn log_likelihood(&self, s: &Spender) -> f64 {
        let (p, q, g) = (self.p, self.q, self.gamma);
        let px = p * s.x;
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
            + q * g.ln()
            + (px - 1.0) * s.mean_value.ln()
            + px * s.x.ln()
            - (px + q) * (g + s.x * s.mean_value).ln()
    }

    /// The population's mean order value, `pγ / (q − 1)`.
    pub fn population_mean(&self) -> f64 {
        self.p * self.gamma / (self.q - 1.0)
    }

    /// Expected value of this customer's next order: the population mean without repeat
    /// orders, otherwise `(γ + x z̄) p / (px + q − 1)`.
    pub fn expected_order_value(&self, s: &Spender) -> f64 {
        if s.x <= 0.0 || !s.mean_value.is_finite() || s.mean_value <= 0.0 {
            return self.population_mean();
        }
        (self.gamma + s.x * s.mean_value) * self.p / (self.p * s.x + self.q - 1.0)
    }
}

/// Total log-likelihood of the customers.
pub fn total_log_likelihood(p: &GammaGammaParams, data: &[Spender]) -> f64 {
    data.iter().map(|s| p.log_likelihood(s)).sum()
}

/// Maximum-likelihood fit on the customers with a repeat order (others carry no information
/// about spend variation and are skipped, as in the paper). Nelder–Mead on the log-parameters,
/// restarted like the BG/NBD fit.
pub fn fit(customers: &[Spender]) -> Result<(GammaGammaParams, f64), GammaGammaError> {
    for (index, s) in customers.iter().enumerate() {
        if !(s.x.is_finite() && s.x >= 0.0) {
            return Err(GammaGammaError::BadCustomer {
                index,
                what: "repeat orders",
                value: s.x,
            });
        }
        if s.x > 0.0 && !(s.mean_value.is_finite() && s.mean_value > 0.0) {
            return Err(GammaGammaError::BadCustomer {
                index,
                what: "mean order value",
                value: s.mean_value,
            });
        }
    }
    let data: Vec<Spender> = customers.iter().copied().filter(|s| s.x > 0.0).collect();
    if data.is_empty() {
        return Err(GammaGammaError::NoRepeatCustomers);
    }
    let n = data.len() as f64;
    let mean = data.iter().map(|s| s.mean_value).sum::<f64>() / n;
    let to_params = |theta: &[f64; 3]| GammaGammaParams {
        p: theta[0].exp(),
        q: theta[1].exp(),
        gamma: theta[2].exp(),
    };
    let objective = |theta: &[f64; 3]| {
        let ll = total_log_likelihood(&to_params(theta), &data) / n;
        if ll.is_finite() {
            -ll
        } else {
            f64::INFINITY
        }
    };
    // Start where the population mean pγ/(q−1) equals the sample mean.
    let (theta, best) =
        minimize_restarted(&objective, [1.0f64.ln(), 2.0f64.ln(), mean.max(1e-6).ln()]);
    if !best.is_finite() {
        return Err(GammaGammaError::NoConvergence);
    }
    Ok((to_params(&theta).validate()?, -best * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws from Gamma(shape, rate) by Marsaglia–Tsang (shape ≥ 1), for simulated customers.
    fn gamma_draw(rng: &mut impl rand::Rng, shape: f64, rate: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            // Box–Muller for a standard normal.
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let v = (1.0 + c * z).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
                return d * v / rate;
            }
        }
    }

    #[test]
    fn refits_simulated_customers() {
        use rand::SeedableRng;
        let truth = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let customers: Vec<Spender> = (0..20_000)
            .map(|i| {
                let x = 1 + i % 6;
                let nu = gamma_draw(&mut rng, truth.q, truth.gamma);
                let total: f64 = (0..x).map(|_| gamma_draw(&mut rng, truth.p, nu)).sum();
                Spender {
                    x: x as f64,
                    mean_value: total / x as f64,
                }
            })
            .collect();
        let (fitted, _) = fit(&customers).expect("fit");
        for (got, want) in [
            (fitted.p, truth.p),
            (fitted.q, truth.q),
            (fitted.gamma, truth.gamma),
        ] {
            assert!(
                (got - want).abs() / want < 0.1,
                "fitted {fitted:?} vs truth {truth:?}"
            );
        }
    }

    #[test]
    fn expected_value_shrinks_towards_the_population_mean() {
        let p = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let pop = p.population_mean();
        assert!((pop - 6.25 * 15.44 / 2.74).abs() < 1e-12);
        let none = Spender {
            x: 0.0,
            mean_value: 0.0,
        };
        assert_eq!(p.expected_order_value(&none), pop);
        let big = Spender {
            x: 1.0,
            mean_value: 200.0,
        };
        let many = Spender {
            x: 20.0,
            mean_value: 200.0,
        };
        let (e1, e20) = (p.expected_order_value(&big), p.expected_order_value(&many));
        assert!(pop < e1 && e1 < e20 && e20 < 200.0, "{pop} {e1} {e20}");
    }

    #[test]
    fn bad_input_is_refused_by_position() {
        let bad = [
            Spender {
                x: 2.0,
                mean_value: 10.0,
            },
            Spender {
                x: 1.0,
                mean_value: f64::NAN,
            },
        ];
        assert!(matches!(
            fit(&bad),
            Err(GammaGammaError::BadCustomer { index: 1, .. })
        ));
        let none = [Spender {
            x: 0.0,
            mean_value: 0.0,
        }];
        assert_eq!(fit(&none), Err(GammaGammaError::NoRepeatCustomers));
        assert!(GammaGammaParams {
            p: 1.0,
            q: 0.5,
            gamma: 1.0
        }
        .validate()
        .is_err());
    }
}
