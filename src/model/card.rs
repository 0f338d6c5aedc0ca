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

/// The inputs: transform and standardisation, with coefficients or the forest's splits.
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
                 | feature | transform | mean | std | splits |\n| --- | --- | --- | --- | --- |\n",
                model.forest().map_or(0, |f| f.trees.len()),
                model.forest().map_or(0, |f| f.node_count()),
                fit.and_then(|f| f.max_abs_difference_to_smartcore_predict)
                    .map_or_else(|| "unknown".into(), |d| format!("{d:?}")),
            ));
            for f in &a.features {
                out.push_str(&format!(
                    "| {} | {:?} | {:.4} | {:.4} | {} |\n",
                    f.name,
                    f.transform,
                    f.mean,
                    f.std,
                    splits
                        .and_then(|s| s.get(&f.name))
                        .map_or_else(|| "null".into(), usize::to_string)
                ));
            }
        }
        Kind::LogisticRegression => {
            out.push_str(
                "\n## Features (transform, standardisation, coefficient)\n\n\
                 | feature | transform | mean | std | coef |\n| --- | --- | --- | --- | --- |\n",
            );
            for f in &a.features {
                out.push_str(&format!(
                    "| {} | {:?} | {:.4} | {:.4} | {:+.4} |\n",
                    f.name, f.transform, f.mean, f.std, f.coef
                ));
            }
            out.push_str(&format!("\nIntercept {:+.4}.\n", a.intercept));
        }
    }
    out
}
