//! BG/NBD ("beta-geometric / negative binomial distribution", Fader, Hardie & Lee 2005): a
//! buy-till-you-die model of repeat purchasing, fitted by maximum likelihood and used as a
//! derived model input.
//!
//! Why it is here: the engine's features are windows of at most 90 days plus lifetime totals; a
//! 39-week churn question needs a view of whether a customer is still "alive", and BG/NBD gives
//! exactly that from frequency, recency and age. Its four parameters are fitted at training time
//! and stored in the artifact (see [`super::DerivedSpec`]), so serving computes the same
//! P(alive) and expected purchases as training did, from the same engine features.
//!
//! Per customer the model needs `x` = repeat purchases (purchases − 1), `t_x` = time of the last
//! purchase since the first, and `T` = time since the first purchase, all derivable from engine
//! features: `purchases_total`, `days_since_last_purchase` and `mean_interpurchase_days`
//! (`t_x = mean_interpurchase_days × (purchases − 1)` exactly, see `UserState`), in units of
//! `time_unit_days` (weeks, as in the paper, so the parameters compare with published fits).
//!
//! Formulas (paper's equations 6, 10 and the P(alive) of its appendix):
//!
//! - likelihood: `L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))`
//!   `+ [x > 0] · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))`
//! - `P(alive) = 1 / (1 + [x > 0] · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))`
//! - `E[X(t)] = (a+b+x−1)/(a−1) · (1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1;
//!   t/(α+T+t))) · P(alive)` expressed through the same denominator.

use serde::{Deserialize, Serialize};

use crate::features::{FeatureLayout, FeatureVector};

/// Why BG/NBD could not be fitted or used.
#[derive(Debug, thiserror::Error)]
pub enum BgNbdError {
    #[error("BG/NBD needs at least one customer to fit")]
    NoCustomers,
    #[error("BG/NBD parameters must be finite and positive, with a ≠ 1: {0:?}")]
    BadParams(BgNbdParams),
    #[error("BG/NBD fit did not reach a finite likelihood (start {0:?})")]
    NoConvergence(BgNbdParams),
    #[error("feature {0:?} needed by BG/NBD is not computed by this build")]
    MissingFeature(&'static str),
}

/// The four BG/NBD parameters: purchase rates ~ Gamma(r, α) (α in time units), dropout
/// probability after each purchase ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbdParams {
    /// Refuses parameters the formulas cannot use (E\[X\] divides by `a − 1`).
    pub fn validate(self) -> Result<Self, BgNbdError> {
        let ok = [self.r, self.alpha, self.a, self.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
            && (self.a - 1.0).abs() > 1e-9;
        if ok {
            Ok(self)
        } else {
            Err(BgNbdError::BadParams(self))
        }
    }
}

/// One customer's summary in model time units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Customer {
    /// Repeat purchases (purchases after the first).
    pub x: f64,
    /// Time of the last purchase since the first.
    pub t_x: f64,
    /// Time since the first purchase (the customer's age at the snapshot).
    pub t: f64,
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error ~1e-15). std has no stable
/// `ln_gamma`, and a dependency for one function is not worth it.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the accuracy for small shape parameters (r, a ≈ 0.2 on CDNOW).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// Gauss hypergeometric `₂F₁(a, b; c; z)` by its power series, for `0 ≤ z < 1` (the only range
/// BG/NBD needs: `z = t/(α+T+t)`). Stops when a term no longer changes the sum.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..200_000 {
        let k = f64::from(k);
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

impl BgNbdParams {
    /// Log-likelihood of one customer (paper's equation 6).
    pub fn log_likelihood(&self, c: &Customer) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let x = c.x;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + c.t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.t_x).ln();
            // log(e^a3 + e^a4) without overflow.
            let m = a3.max(a4);
            a1 + a2 + m + ((a3 - m).exp() + (a4 - m).exp()).ln()
        } else {
            a1 + a2 + a3
        }
    }

    /// `a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)` for repeat buyers, 0 otherwise: the odds of having
    /// dropped out against being alive.
    fn dropout_odds(&self, c: &Customer) -> f64 {
        if c.x > 0.0 {
            self.a / (self.b + c.x - 1.0)
                * ((self.alpha + c.t) / (self.alpha + c.t_x)).powf(self.r + c.x)
        } else {
            0.0
        }
    }

    /// P(the customer is still alive at the snapshot).
    pub fn p_alive(&self, c: &Customer) -> f64 {
        1.0 / (1.0 + self.dropout_odds(c))
    }

    /// Expected purchases in the next `t` time units (paper's equation 10).
    pub fn expected_purchases(&self, c: &Customer, t: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let x = c.x;
        if t <= 0.0 {
            return 0.0;
        }
        let z = t / (alpha + c.t + t);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let body = 1.0 - ((alpha + c.t) / (alpha + c.t + t)).powf(r + x) * f;
        (head * body / (1.0 + self.dropout_odds(c))).max(0.0)
    }
}

/// Total log-likelihood of weighted customers (weights = how many customers share a summary).
pub fn total_log_likelihood(p: &BgNbdParams, data: &[(Customer, f64)]) -> f64 {
    data.iter().map(|(c, w)| w * p.log_likelihood(c)).sum()
}

/// Maximum-likelihood fit by Nelder–Mead on the log-parameters (so they stay positive),
/// restarted from its own optimum until a restart no longer improves the likelihood: the
/// simplex can stall on the long flat ridge the BG/NBD likelihood has in (a, b). Customers
/// with equal summaries are merged first, which on day-resolution data shrinks the work a lot.
pub fn fit(customers: &[Customer]) -> Result<(BgNbdParams, f64), BgNbdError> {
    if customers.is_empty() {
        return Err(BgNbdError::NoCustomers);
    }
    let mut merged: ahash::AHashMap<[u64; 3], f64> = ahash::AHashMap::new();
    for c in customers {
        *merged
            .entry([c.x.to_bits(), c.t_x.to_bits(), c.t.to_bits()])
            .or_default() += 1.0;
    }
    let mut data: Vec<(Customer, f64)> = merged
        .into_iter()
        .map(|([x, t_x, t], w)| {
            (
                Customer {
                    x: f64::from_bits(x),
                    t_x: f64::from_bits(t_x),
                    t: f64::from_bits(t),
                },
                w,
            )
        })
        .collect();
    // A fixed order makes the floating-point sums, hence the fit, reproducible.
    data.sort_by(|p, q| {
        (p.0.x, p.0.t_x, p.0.t)
            .partial_cmp(&(q.0.x, q.0.t_x, q.0.t))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let n: f64 = data.iter().map(|(_, w)| w).sum();
    let mean_t = data.iter().map(|(c, w)| w * c.t).sum::<f64>() / n;
    let objective = |theta: &[f64; 4]| {
        let p = BgNbdParams {
            r: theta[0].exp(),
            alpha: theta[1].exp(),
            a: theta[2].exp(),
            b: theta[3].exp(),
        };
        let ll = total_log_likelihood(&p, &data) / n;
        if ll.is_finite() {
            -ll
        } else {
            f64::INFINITY
        }
    };
    let start = BgNbdParams {
        r: 1.0,
        alpha: mean_t.max(1e-3),
        a: 0.5,
        b: 2.0,
    };
    let (theta, best) = minimize_restarted(
        &objective,
        [start.r.ln(), start.alpha.ln(), start.a.ln(), start.b.ln()],
    );
    if !best.is_finite() {
        return Err(BgNbdError::NoConvergence(start));
    }
    let p = BgNbdParams {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    }
    .validate()?;
    Ok((p, -best * n))
}

/// Nelder–Mead from `x0`, restarted from its own optimum until a restart no longer improves:
/// a simplex can stall on a long flat ridge of a likelihood.
pub(crate) fn minimize_restarted<const D: usize>(
    f: &impl Fn(&[f64; D]) -> f64,
    x0: [f64; D],
) -> ([f64; D], f64) {
    let (mut x, mut best) = (x0, f(&x0));
    for _ in 0..20 {
        let (t, ft) = nelder_mead(f, x, 0.5, 4000);
        let improved = ft < best - 1e-12;
        if ft <= best {
            x = t;
            best = ft;
        }
        if !improved {
            break;
        }
    }
    (x, best)
}

/// Minimises `f` from `x0` with an initial simplex of side `step` (standard coefficients:
/// reflection 1, expansion 2, contraction ½, shrink ½). Small and dependency-free; four
/// parameters need nothing cleverer.
fn nelder_mead<const D: usize>(
    f: &impl Fn(&[f64; D]) -> f64,
    x0: [f64; D],
    step: f64,
    max_iter: usize,
) -> ([f64; D], f64) {
    let mut simplex: Vec<([f64; D], f64)> = Vec::with_capacity(D + 1);
    simplex.push((x0, f(&x0)));
    for i in 0..D {
        let mut x = x0;
        x[i] += step;
        simplex.push((x, f(&x)));
    }
    let along = |from: &[f64; D], to: &[f64; D], t: f64| {
        let mut out = [0.0; D];
        for k in 0..D {
            out[k] = from[k] + t * (to[k] - from[k]);
        }
        out
    };
    for _ in 0..max_iter {
        simplex.sort_by(|p, q| p.1.total_cmp(&q.1));
        let (best, worst) = (simplex[0].1, simplex[D].1);
        if (worst - best).abs() <= 1e-13 * (1.0 + best.abs()) {
            break;
        }
        let mut centroid = [0.0; D];
        for (x, _) in &simplex[..D] {
            for k in 0..D {
                centroid[k] += x[k] / D as f64;
            }
        }
        let xw = simplex[D].0;
        let xr = along(&centroid, &xw, -1.0);
        let fr = f(&xr);
        if fr < best {
            let xe = along(&centroid, &xw, -2.0);
            let fe = f(&xe);
            simplex[D] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[D - 1].1 {
            simplex[D] = (xr, fr);
        } else {
            let (xc, fc) = if fr < worst {
                let xc = along(&centroid, &xr, 0.5);
                (xc, f(&xc))
            } else {
                let xc = along(&centroid, &xw, 0.5);
                (xc, f(&xc))
            };
            if fc < worst.min(fr) {
                simplex[D] = (xc, fc);
            } else {
                let x0 = simplex[0].0;
                for p in simplex.iter_mut().skip(1) {
                    p.0 = along(&x0, &p.0, 0.5);
                    p.1 = f(&p.0);
                }
            }
        }
    }
    simplex.sort_by(|p, q| p.1.total_cmp(&q.1));
    simplex[0]
}

/// Reads a BG/NBD customer summary out of engine features, resolving the feature positions
/// once (the feature list may grow; names are the contract).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerReader {
    purchases: usize,
    since_purchase: usize,
    cycle: usize,
}

impl CustomerReader {
    /// Resolves the features BG/NBD reads in `layout` (fixed features: every window set has
    /// them).
    pub fn new(layout: &FeatureLayout) -> Result<Self, BgNbdError> {
        let idx = |name: &'static str| {
            layout
                .index_of(name)
                .ok_or(BgNbdError::MissingFeature(name))
        };
        Ok(CustomerReader {
            purchases: idx("purchases_total")?,
            since_purchase: idx("days_since_last_purchase")?,
            cycle: idx("mean_interpurchase_days")?,
        })
    }

    /// The summary in units of `unit_days`. Without a purchase BG/NBD has no "first purchase";
    /// such a user is read as a one-time buyer whose age is their silence, the closest case the
    /// model knows (`days_since_last_purchase` counts from first sight then).
    pub fn customer(&self, f: &FeatureVector, unit_days: f64) -> Customer {
        let n = f.values[self.purchases].max(0.0).floor();
        let silence = f.values[self.since_purchase].max(0.0);
        let x = (n - 1.0).max(0.0);
        let t_x = if x > 0.0 {
            f.values[self.cycle].max(0.0) * x
        } else {
            0.0
        };
        Customer {
            x,
            t_x: t_x / unit_days,
            t: (t_x + silence) / unit_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published maximum-likelihood estimates on the CDNOW 39-week calibration (2,357 customers;
    /// Fader, Hardie & Lee 2005, weeks).
    const FHL: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn ln_gamma_matches_known_values() {
        // Γ(n) = (n−1)!, Γ(½) = √π, and small arguments through the reflection.
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - 0.5 * std::f64::consts::PI.ln()).abs() < 1e-13);
        assert!((ln_gamma(171.0) - 706.573_062_245_787_4).abs() < 1e-9);
        // Γ(0.1) = 9.513507698668732 (Abramowitz & Stegun).
        assert!((ln_gamma(0.1) - 9.513_507_698_668_732f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1−z)/z; ₂F₁(a, b; b; z) = (1−z)^−a.
        for z in [0.0f64, 0.1, 0.5, 0.9] {
            let want = if z == 0.0 { 1.0 } else { -(1.0 - z).ln() / z };
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-10, "z={z}");
            assert!((hyp2f1(0.7, 2.5, 2.5, z) - (1.0 - z).powf(-0.7)).abs() < 1e-10);
        }
    }

    /// Reference values for customer 1 of the paper's data set (x = 2, t_x = 30.43, T = 38.86)
    /// and a one-time buyer, at the published parameters.
    #[test]
    fn likelihood_and_expectations_match_an_independent_computation() {
        let c = Customer {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        assert!((FHL.log_likelihood(&c) - REF_LL_2).abs() < 1e-9);
        let one_timer = Customer {
            x: 0.0,
            t_x: 0.0,
            t: 38.86,
        };
        assert!((FHL.log_likelihood(&one_timer) - REF_LL_0).abs() < 1e-9);
        assert!((FHL.p_alive(&c) - REF_P_ALIVE_2).abs() < 1e-9);
        assert_eq!(FHL.p_alive(&one_timer), 1.0);
        assert!((FHL.expected_purchases(&c, 39.0) - REF_E39_2).abs() < 1e-9);
        assert!((FHL.expected_purchases(&one_timer, 39.0) - REF_E39_0).abs() < 1e-9);
    }

    // mpmath at 30 digits (`loggamma`, `hyp2f1`): an implementation independent of this one.
    const REF_LL_2: f64 = -9.458_606_307_066_27;
    const REF_LL_0: f64 = -0.554_713_276_438_158_4;
    const REF_P_ALIVE_2: f64 = 0.726_578_570_080_673;
    const REF_E39_2: f64 = 1.226_028_174_767_144_5;
    const REF_E39_0: f64 = 0.195_098_052_011_262_64;

    #[test]
    fn silence_lowers_p_alive_and_expected_purchases() {
        let mut c = Customer {
            x: 3.0,
            t_x: 10.0,
            t: 12.0,
        };
        let (p0, e0) = (FHL.p_alive(&c), FHL.expected_purchases(&c, 13.0));
        c.t = 30.0;
        assert!(FHL.p_alive(&c) < p0);
        assert!(FHL.expected_purchases(&c, 13.0) < e0);
        // More purchases over the same time: a busier customer expects more.
        let busy = Customer {
            x: 6.0,
            t_x: 10.0,
            t: 12.0,
        };
        assert!(FHL.expected_purchases(&busy, 13.0) > e0);
    }

    #[test]
    fn fit_recovers_the_parameters_that_generated_the_data() {
        // Simulate BG/NBD customers with the published CDNOW parameters and refit them.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let gamma = |rng: &mut rand::rngs::SmallRng, shape: f64| -> f64 {
            // Marsaglia–Tsang, boosted for shape < 1.
            let (d_shape, boost) = if shape < 1.0 {
                (shape + 1.0, rng.gen::<f64>().powf(1.0 / shape))
            } else {
                (shape, 1.0)
            };
            let d = d_shape - 1.0 / 3.0;
            let c = 1.0 / (9.0 * d).sqrt();
            loop {
                let (u1, u2): (f64, f64) = (rng.gen(), rng.gen());
                let n =
                    (-2.0 * u1.max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let v = (1.0 + c * n).powi(3);
                if v > 0.0 && rng.gen::<f64>().ln() < 0.5 * n * n + d - d * v + d * v.ln() {
                    return d * v * boost;
                }
            }
        };
        let mut customers = Vec::new();
        for _ in 0..20_000 {
            let lambda = gamma(&mut rng, FHL.r) / FHL.alpha;
            let ga = gamma(&mut rng, FHL.a);
            let p = ga / (ga + gamma(&mut rng, FHL.b));
            let big_t = 39.0 * rng.gen::<f64>() / 3.0 + 26.0;
            let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
            loop {
                now += -(1.0 - rng.gen::<f64>()).ln() / lambda.max(1e-12);
                if now > big_t {
                    break;
                }
                x += 1.0;
                t_x = now;
                if rng.gen::<f64>() < p {
                    break;
                }
            }
            customers.push(Customer { x, t_x, t: big_t });
        }
        let (fitted, ll) = fit(&customers).unwrap();
        assert!(ll <= 0.0 && ll.is_finite());
        assert!(
            total_log_likelihood(
                &fitted,
                &customers.iter().map(|c| (*c, 1.0)).collect::<Vec<_>>()
            ) >= total_log_likelihood(
                &FHL,
                &customers.iter().map(|c| (*c, 1.0)).collect::<Vec<_>>()
            ) - 1e-6,
            "the optimum is at least as likely as the truth"
        );
        for (got, want) in [
            (fitted.r, FHL.r),
            (fitted.alpha, FHL.alpha),
            (fitted.a, FHL.a),
            (fitted.b, FHL.b),
        ] {
            assert!(
                (got / want - 1.0).abs() < 0.3,
                "fitted {fitted:?} vs generating {FHL:?}"
            );
        }
    }

    #[test]
    fn reads_summaries_from_engine_features() {
        let layout = FeatureLayout::default_layout();
        let reader = CustomerReader::new(layout).unwrap();
        let mut f = FeatureVector::zeros(layout);
        let set = |f: &mut FeatureVector, n: &str, v: f64| {
            assert!(f.set(n, v), "{n}");
        };
        // Three purchases on days 0, 7 and 21, snapshot on day 35.
        set(&mut f, "purchases_total", 3.0);
        set(&mut f, "days_since_last_purchase", 14.0);
        set(&mut f, "mean_interpurchase_days", 10.5);
        let c = reader.customer(&f, 7.0);
        assert_eq!(
            c,
            Customer {
                x: 2.0,
                t_x: 3.0,
                t: 5.0
            }
        );
        // A one-time buyer: no repeat, age = silence.
        set(&mut f, "purchases_total", 1.0);
        set(&mut f, "mean_interpurchase_days", 0.0);
        assert_eq!(
            reader.customer(&f, 7.0),
            Customer {
                x: 0.0,
                t_x: 0.0,
                t: 2.0
            }
        );
    }
}
