//! The Markdown model card written beside every artifact by `churnguard train`.

use super::evaluate::{table, Evaluation};
use super::{Model, KIND_FOREST};

fn s(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The card: provenance, protocol, evaluation at every cutoff, inputs, and `notes` (Markdown,
/// e.g. a comparison with published baselines) at the end.
pub fn model_card(model: &Model, source: &str, notes: Option<&str>) -> String {
    let a = model.artifact();
    let t = &a.training;
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|c| c.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
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
         - Features dropped as constant on the training rows: {dropped}.\n\
         - Threshold: {thr} ({obj}).\n",
        kind = a.kind,
        version = a.version,
        fp = s(&t["data"]["fingerprint"]),
        events = t["data"]["events"],
        first = s(&t["data"]["first_event"]),
        last = s(&t["data"]["last_event"]),
        known = s(&t["data"]["labels_known_until"]),
        label = s(&t["label"]),
        h = t["horizon_days"],
        pop = s(&t["population"]),
        cutoffs = list(&t["train_cutoffs"]),
        tend = s(&t["training_labels_end"]),
        vc = s(&t["validation_cutoff"]),
        vh = t["validation_horizon_days"],
        extra = t["evaluation_points"]
            .as_array()
            .map(|p| {
                let rest: Vec<String> = p
                    .iter()
                    .skip(1)
                    .map(|e| format!("{} ({} days)", s(&e["cutoff"]), e["horizon_days"]))
                    .collect();
                if rest.is_empty() {
                    "none".into()
                } else {
                    rest.join(", ")
                }
            })
            .unwrap_or_else(|| "none".into()),
        params = t["params"],
        dropped = {
            let d = list(&t["features_dropped_as_constant"]);
            if d.is_empty() {
                "none".into()
            } else {
                d
            }
        },
        thr = a.threshold,
        obj = s(&t["threshold_objective"]),
    );
    // The derived inputs' fitted parameters, so a reader sees what serving will compute.
    if let Some(d) = model.derived() {
        let p = d.bgnbd.params;
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
            on = s(&t["bgnbd"]["fitted_on"]),
            n = t["bgnbd"]["customers"],
            ll = t["bgnbd"]["log_likelihood"]
                .as_f64()
                .map_or_else(|| "?".into(), |v| format!("{v:.1}")),
        ));
    }
    let evals: Vec<Evaluation> = t["metrics"]["evaluations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|e| serde_json::from_value(e.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    if !evals.is_empty() {
        out.push_str(
            "\n## Evaluation (out of time)\n\nFirst column: the validation cutoff. Definitions: \
             `churnguard evaluate` docs (`src/model/evaluate.rs`); lead time = days from the \
             cutoff to `last activity + horizon`, the moment the churn label becomes known, \
             over alerted churners.\n\n```text\n",
        );
        out.push_str(&table(&evals));
        out.push_str("```\n");
    }
    out.push_str(&format!(
        "\nTraining rows: {}, churn rate {:.3}, in-sample ROC AUC {}.\n",
        t["metrics"]["training"]["rows"],
        t["metrics"]["training"]["churn_rate"]
            .as_f64()
            .unwrap_or(f64::NAN),
        t["metrics"]["training"]["roc_auc"]
            .as_f64()
            .map_or("–".into(), |x| format!("{x:.4}")),
    ));
    if a.kind == KIND_FOREST {
        let splits = &t["metrics"]["training"]["splits_per_feature"];
        out.push_str(&format!(
            "\n## Inputs (transform, standardisation; splits in the forest)\n\n\
             {} trees, {} nodes. Serving reproduces smartcore's predictions exactly (max \
             difference on the training rows: {}). Alert reasons: logit(score) − logit(score with \
             the feature at its training mean), in log-odds.\n\n\
             | feature | transform | mean | std | splits |\n| --- | --- | --- | --- | --- |\n",
            model.forest().map_or(0, |f| f.trees.len()),
            model.forest().map_or(0, |f| f.node_count()),
            t["metrics"]["training"]["max_abs_difference_to_smartcore_predict"],
        ));
        for f in &a.features {
            out.push_str(&format!(
                "| {} | {:?} | {:.4} | {:.4} | {} |\n",
                f.name, f.transform, f.mean, f.std, splits[&f.name]
            ));
        }
    } else {
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
    if let Some(n) = notes {
        out.push('\n');
        out.push_str(n.trim_end());
        out.push('\n');
    }
    out
}
