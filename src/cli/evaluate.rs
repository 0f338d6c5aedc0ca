//! `churnguard evaluate`: scores a model at cutoffs of history files of events and prints the
//! metrics as a table or JSON, optionally with plots.

use anyhow::{bail, Context, Result};
use churnguard::model::dataset::{self, DataSpan};
use churnguard::model::evaluate::{evaluate_rows, table, Evaluation};
use churnguard::model::locate::resolve_model_path;
use churnguard::model::{plots, Model};
use churnguard::time::rfc3339;
use churnguard::time::{parse_cutoff_at, parse_duration};
use churnguard::{Millis, DAY_MS};

use super::args::EvaluateArgs;

/// Evaluates `--model` at every `--cutoff` and reports.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let msg = anyhow::Error::msg;
    let model = Model::load_for(&resolve_model_path(&args.model)?, args.window.windows)
        .context("cannot load the model")?;
    let loaded = super::load_checked(
        &args.events,
        &args.mapping.decoder()?,
        i64::MAX / 4,
        0,
        &args.refusals,
    )?;
    let training = &model.artifact().training;
    let horizon = match &args.horizon {
        Some(h) => parse_duration(h).map_err(msg)?,
        None => training
            .validation_horizon_days
            .as_ref()
            .or(training.horizon_days.as_ref())
            .map_or(90 * DAY_MS, |d| d.millis()),
    };
    let active_within = match &args.active_within {
        Some(a) => Some(parse_duration(a).map_err(msg)?),
        None => training
            .active_within_days
            .clone()
            .flatten()
            .map(|d| d.millis()),
    };
    let points = args
        .cutoff
        .iter()
        .map(|c| parse_cutoff_at(c, horizon))
        .collect::<Result<Vec<_>, _>>()
        .map_err(msg)?;
    let span = DataSpan::of(&loaded.events).context("no valid event to evaluate on")?;
    for &(c, h) in &points {
        if !span.covers(c, h) {
            bail!(
                "cutoff {} plus its {}-day horizon ends after the data ({}): labels unknown",
                rfc3339(c),
                h / DAY_MS,
                rfc3339(span.end)
            );
        }
    }
    let specs: Vec<dataset::SnapshotSpec> = points
        .iter()
        .map(|&(cutoff, horizon)| dataset::SnapshotSpec {
            cutoff,
            horizon,
            active_within: active_within.unwrap_or(horizon),
        })
        .collect();
    let rows = dataset::snapshots_for(&loaded.events, &specs, true, args.window.windows);
    let mut evals = Vec::new();
    for &(c, h) in &points {
        let rs: Vec<&dataset::Row> = rows
            .iter()
            .filter(|r| r.cutoff == c && r.horizon == h)
            .collect();
        let (e, scored) = evaluate_rows(&model, &rs, c, h, &args.top_k);
        if let Some(dir) = &args.plots {
            let day = plot_name(&e, &points, c, h);
            let files = plots::write_all(dir, &day, &scored, e.roc_auc).map_err(msg)?;
            eprintln!("wrote {} plots to {}", files.len(), dir.display());
        }
        evals.push(e);
    }
    report(args, &model, &loaded.files_label(), &evals)
}

/// The plots' file-name stem: the cutoff's day, plus the horizon when a day has several.
fn plot_name(
    e: &Evaluation,
    points: &[(Millis, Millis)],
    cutoff: Millis,
    horizon: Millis,
) -> String {
    let day = e.cutoff.get(..10).unwrap_or(&e.cutoff);
    if points.iter().filter(|p| p.0 == cutoff).count() > 1 {
        format!("{day}-{}d", horizon / DAY_MS)
    } else {
        day.to_string()
    }
}

/// Prints the evaluations as JSON (`--json`) or as a table.
fn report(args: &EvaluateArgs, model: &Model, files: &str, evals: &[Evaluation]) -> Result<()> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": args.model.display().to_string(),
                "model_version": model.version(),
                "kind": model.artifact().kind,
                "events": args.events.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "evaluations": evals,
            }))?
        );
    } else {
        println!(
            "model {} ({}, {}) on {}\n",
            args.model.display(),
            model.artifact().kind,
            model.version(),
            files
        );
        print!("{}", table(evals));
    }
    Ok(())
}
