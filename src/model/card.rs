//! The Markdown model card written beside every artifact by `churnguard train`.

use super::evaluate::table;
use super::record::{Days, TrainingRecord};
use super::{Kind, Model};

/// A recorded text, or `unknown` for artifacts that did not record it.
fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("unknown")
}

fn days(v: &Option<Days>) -> String {
    v.as_ref().map_or_else(|| "unknown".into(), Days::to_string)
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The card: provenance, protocol, evaluation at every cutoff, inputs, and `notes` (Markdown,
/// e.g. a comparison with published baselines) at the end.
pub fn model_card(model: &Model, source: &str, notes: Option<&str>) -> String {
    let a = model.artifact();
    let t = &a.training;
    let mut out = provenance(model, source);
    // The derived inputs' fitted parameters, so a reader sees what serving will compute.
    if let Some(d) = model.derived() {
        let p = d.bgnbd.params;
        let fit = t.bgnbd.as_ref();
        out.push_str(&format!(
            "- BG/NBD inputs (`bgnbd_p_alive`, `bgnbd_expected_purchases` over {h} days): \
             r = {r:.4}, α = {al:.4}, a = {a:.4}, b = {b:.4} (time unit {u} days), fitted on \
             {on} ({n} customers, log-likelihood {ll}).\n",
            h = d.bgnbd.horizon_days,
            r = p.r,
            al = p.alpha,
            a = p.a,
            b = p.b,
            u = d.bgnbd.time_unit_days,
            on = fit.map_or("unknown", |f| f.fitted_on.as_str()),
            n = fit.map_or_else(|| "?".into(), |f| f.customers.to_string()),
            ll = fit.map_or_else(|| "?".into(), |f| format!("{:.1}", f.log_likelihood)),
        ));
    }
    let evals = t.evaluations();
    if !evals.is_empty() {
        out.push_str(
            "\n## Evaluation (out of time)\n\nFirst column: the validation cutoff. Definitions: \
             `churnguard evaluate` docs (`src/model/evaluate.rs`); lead time = days from the \
             cutoff to `last activity + horizon`, the moment the churn label becomes known, \
             over alerted churners.\n\n```text\n",
        );
        out.push_str(&table(evals));
        out.push_str("```\n");
    }
    let fit = t.metrics.as_ref().and_then(|m| m.training.as_ref());
    out.push_str(&format!(
        "\nTraining rows: {}, churn rate {:.3}, in-sample ROC AUC {}.\n",
        fit.map_or_else(|| "unknown".into(), |f| f.rows.to_string()),
        fit.map_or(f64::NAN, |f| f.churn_rate),
        fit.and_then(|f| f.roc_auc)
            .map_or("–".into(), |x| format!("{x:.4}")),
    ));
    out.push_str(&inputs_table(model));
    if let Some(n) = notes {
        out.push('\n');
        out.push_str(n.trim_end());
        out.push('\n');
    }
    out
}

/// Header and protocol: where the data came from, labels, cutoffs, parameters, threshold.
fn provenance(model: &Model, source: &str) -> String {
    let a = model.artifact();
    let t: &TrainingRecord = &a.training;
    let data = t.data.as_ref();
    let extra = t
        .evaluation_points
        .as_deref()
        .map(|p| {
            let rest: Vec<String> = p
                .iter()
                .skip(1)
                .map(|e| format!("{} ({} days)", e.cutoff, e.horizon_days))
                .collect();
            listed(&rest)
        })
        .unwrap_or_else(|| "none".into());
    let mut out = format!(
        "# Model card: {kind} `{version}`\n\n\
         Trained by `churnguard train` from `{source}` (fingerprint `{fp}`, {events} events, \
         {first} → {last}; labels known until {known}).\n\n\
         - Label: {label}; training horizon {h} days.\n\
         - Population at each cutoff: {pop}.\n\
         - Training cutoffs: {cutoffs}; their labels end by {tend}.\n\
         - Validation (time split, nothing after it used for training): cutoff {vc}, horizon {vh} days.\n\
         - Further out-of-time evaluations: {extra}.\n\
         - Parameters: `{params}`.\n\
         - Features dropped as constant on the training rows: {dropped}.\n",
        kind = a.kind,
        version = a.version,
        fp = data.map_or("unknown", |d| d.fingerprint.as_str()),
        events = data.map_or_else(|| "?".into(), |d| d.events.to_string()),
        first = data.map_or("unknown", |d| d.first_event.as_str()),
        last = data.map_or("unknown", |d| d.last_event.as_str()),
        known = text(&data.and_then(|d| d.labels_known_until.clone())),
        label = text(&t.label),
        h = days(&t.horizon_days),
        pop = text(&t.population),
        cutoffs = t.train_cutoffs.as_deref().map_or_else(|| "unknown".into(), |c| c.join(", ")),
        tend = text(&t.training_labels_end),
        vc = text(&t.validation_cutoff),
        vh = days(&t.validation_horizon_days),
        params = t
            .params
            .as_ref()
            .map_or_else(|| "{}".into(), |p| serde_json::Value::Object(p.clone()).to_string()),
        dropped = listed(t.features_dropped_as_constant.as_deref().unwrap_or_default()),
    );
    if let Some(dups) = t.features_dropped_as_duplicate.as_deref() {
        let pairs: Vec<String> = dups
            .iter()
            .map(|d| format!("{} (= {})", d.dropped, d.same_as))
            .collect();
        out.push_str(&format!(
            "- Features dropped as exact duplicates of a kept one on every training row (the \
             data does not tell them apart, e.g. only purchases): {}.\n",
            pairs.join(", ")
        ));
    }
    out.push_str(&format!(
        "- Threshold: {} ({}).\n",
        a.threshold,
        text(&t.threshold_objective)
    ));
    out
}

/// The inputs: transform and standardisation, with coefficients or the trees' splits, and each
/// input's importance.
fn inputs_table(model: &Model) -> String {
    let a = model.artifact();
    let fit = a
        .training
        .metrics
        .as_ref()
        .and_then(|m| m.training.as_ref());
    let mut out = String::new();
    match a.kind {
        Kind::RandomForestRegressor => {
            let splits = fit.and_then(|f| f.splits_per_feature.as_ref());
            out.push_str(&format!(
                "\n## Inputs (transform, standardisation; splits in the forest)\n\n\
                 {} trees, {} nodes. Serving reproduces smartcore's predictions exactly (max \
                 difference on the training rows: {}). Alert reasons: logit(score) − logit(score \
                 with the feature at its training mean), in log-odds.\n\n\
                 Importance: the feature's share of all splits.\n\n\
                 | feature | transform | mean | std | splits | importance |\n\
                 | --- | --- | --- | --- | --- | --- |\n",
                model.forest().map_or(0, |f| f.trees.len()),
                model.forest().map_or(0, |f| f.node_count()),
                fit.and_then(|f| f.max_abs_difference_to_smartcore_predict)
                    .map_or_else(|| "unknown".into(), |d| format!("{d:?}")),
            ));
            let total: usize = splits.map_or(0, |s| s.values().sum());
            for f in &a.features {
                let n = splits.and_then(|s| s.get(&f.name));
                out.push_str(&format!(
                    "| {} | {:?} | {:.4} | {:.4} | {} | {} |\n",
                    f.name,
                    f.transform,
                    f.mean,
                    f.std,
                    n.map_or_else(|| "null".into(), usize::to_string),
                    n.filter(|_| total > 0).map_or_else(
                        || "null".into(),
                        |&n| format!("{:.3}", n as f64 / total as f64)
                    ),
                ));
            }
        }
        Kind::GradientBoostedTrees => out.push_str(&boosted_inputs(model)),
        Kind::LogisticRegression => {
            // Importance: |coef| of the standardised input, as a share of the sum; a feature's
            // spline terms are listed one by one.
            let total: f64 = a.features.iter().map(|f| f.coef.abs()).sum();
            out.push_str(
                "\n## Features (transform, standardisation, coefficient, importance)\n\n\
                 Importance: |coef| of the standardised input as a share of the sum over all \
                 inputs.\n\n\
                 | feature | transform | mean | std | coef | importance |\n\
                 | --- | --- | --- | --- | --- | --- |\n",
            );
            for f in &a.features {
                out.push_str(&format!(
                    "| {} | {:?} | {:.4} | {:.4} | {:+.4} | {:.3} |\n",
                    f.name,
                    f.transform,
                    f.mean,
                    f.std,
                    f.coef,
                    if total > 0.0 {
                        f.coef.abs() / total
                    } else {
                        0.0
                    }
                ));
            }
            out.push_str(&format!("\nIntercept {:+.4}.\n", a.intercept));
        }
    }
    out
}

/// A boosted model's inputs with their splits and share of the split gain (the importance).
fn boosted_inputs(model: &Model) -> String {
    let a = model.artifact();
    let fit = a
        .training
        .metrics
        .as_ref()
        .and_then(|m| m.training.as_ref());
    let splits = fit.and_then(|f| f.splits_per_feature.as_ref());
    let gain = fit.and_then(|f| f.gain_share_per_feature.as_ref());
    let mut out = format!(
        "\n## Inputs (transform, standardisation; splits and importance in the ensemble)\n\n\
         {} trees, {} nodes, base score {:+.4} (log-odds), learning rate {}; fitted by \
         churnguard's own gradient boosting and stored in its own tree format. Serving \
         reproduces the fit's log-odds on every training row (max difference: {}). Importance: \
         the input's share of the total split gain. Alert reasons: path attribution in \
         log-odds; base value {:+.4} (the mean log-odds over the training rows) plus all \
         reasons is the score's log-odds.\n\n\
         | feature | transform | mean | std | splits | importance |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        model.gbm().map_or(0, |g| g.trees.len()),
        model.gbm().map_or(0, |g| g.node_count()),
        model.gbm().map_or(f64::NAN, |g| g.base_score),
        model.gbm().map_or(f64::NAN, |g| g.learning_rate),
        fit.and_then(|f| f.max_abs_difference_to_fit)
            .map_or_else(|| "unknown".into(), |d| format!("{d:?}")),
        model.gbm().map_or(f64::NAN, |g| g.expected_logit()),
    );
    for f in &a.features {
        out.push_str(&format!(
            "| {} | {:?} | {:.4} | {:.4} | {} | {} |\n",
            f.name,
            f.transform,
            f.mean,
            f.std,
            splits
                .and_then(|s| s.get(&f.name))
                .map_or_else(|| "null".into(), usize::to_string),
            gain.and_then(|s| s.get(&f.name))
                .map_or_else(|| "null".into(), |g| format!("{g:.3}")),
        ));
    }
    out
}
