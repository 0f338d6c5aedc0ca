//! `churnguard train`: turns the training flags into a [`TrainConfig`], trains on history files
//! of events, and writes the model artifact with its model card beside it.

use anyhow::{bail, Context, Result};
use churnguard::model::{card, evaluate, train, Kind};
use churnguard::time::{parse_cutoff_at, parse_duration, parse_instant};
use churnguard::DAY_MS;

use super::args::TrainArgs;

/// The training run these flags describe, or which flag is wrong.
pub fn train_config(args: &TrainArgs) -> Result<train::TrainConfig> {
    let msg = anyhow::Error::msg;
    let horizon = match &args.horizon {
        Some(h) => parse_duration(h).map_err(msg)?,
        None => args.horizon_days * DAY_MS,
    };
    let validation_horizon = args
        .validation_horizon
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(msg)?
        .unwrap_or(horizon);
    let cutoffs = args
        .cutoffs
        .iter()
        .map(|c| parse_instant(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(msg)?;
    let evals = args
        .validate_at
        .iter()
        .map(|c| parse_cutoff_at(c, validation_horizon))
        .collect::<Result<Vec<_>, _>>()
        .map_err(msg)?;
    Ok(train::TrainConfig {
        horizon,
        train_cutoffs: cutoffs,
        validation_cutoff: evals.first().map(|e| e.0),
        validation_horizon: Some(evals.first().map_or(validation_horizon, |e| e.1)),
        extra_evaluations: evals.iter().skip(1).copied().collect(),
        active_within: args
            .active_within
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(msg)?,
        features: (!args.features.is_empty()).then(|| args.features.clone()),
        bgnbd: bgnbd_config(args)?,
        windows: args.window.windows,
        kind: model_kind(args)?,
        spline_knots: args.spline_knots,
        threshold: match args.alert_budget {
            Some(pct) if pct > 0.0 && pct <= 100.0 => {
                train::ThresholdObjective::AlertBudget { pct }
            }
            Some(pct) => bail!("--alert-budget {pct} must lie in (0, 100]"),
            None => train::ThresholdObjective::MaxF1,
        },
        progress: true,
        event_mapping: args.mapping.decoder()?.fingerprint().map(str::to_string),
    })
}

/// The model family and its hyper-parameters, or which one is out of range.
fn model_kind(args: &TrainArgs) -> Result<train::ModelKind> {
    Ok(match Kind::from(args.kind) {
        Kind::RandomForestRegressor => {
            let d = train::ForestParams::default();
            train::ModelKind::RandomForest(train::ForestParams {
                n_trees: args.trees.unwrap_or(d.n_trees),
                max_depth: args.max_depth.unwrap_or(d.max_depth),
                min_samples_leaf: args.min_samples_leaf,
                m: args.max_features,
                seed: args.seed,
            })
        }
        Kind::GradientBoostedTrees => {
            let d = train::GbmParams::default();
            let p = train::GbmParams {
                n_trees: args.trees.unwrap_or(d.n_trees),
                max_depth: args.max_depth.unwrap_or(d.max_depth),
                min_samples_leaf: args.min_samples_leaf,
                learning_rate: args.learning_rate,
                l2: args.l2,
                max_bins: args.max_bins,
            };
            p.validate().map_err(anyhow::Error::msg)?;
            train::ModelKind::Gbm(p)
        }
        Kind::LogisticRegression => train::ModelKind::LogisticRegression { alpha: args.alpha },
    })
}

/// BG/NBD inputs: on when asked for, or when one of their flags is given.
fn bgnbd_config(args: &TrainArgs) -> Result<Option<train::BgNbdConfig>> {
    if !(args.bgnbd || args.bgnbd_horizon.is_some() || args.bgnbd_fit_at.is_some()) {
        return Ok(None);
    }
    let msg = anyhow::Error::msg;
    Ok(Some(train::BgNbdConfig {
        horizon: args
            .bgnbd_horizon
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(msg)?,
        fit_at: args
            .bgnbd_fit_at
            .as_deref()
            .map(parse_instant)
            .transpose()
            .map_err(msg)?,
    }))
}

/// Trains, writes the artifact and its card, and prints the evaluation table.
pub fn run(args: &TrainArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let loaded = super::load_checked(
        &args.events,
        &args.mapping.decoder()?,
        i64::MAX / 4,
        0,
        &args.refusals,
    )?;
    let cfg = train_config(args)?;
    let notes = args
        .card_notes
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let mut trained = train::train(&loaded.events, &cfg)?;
    trained.save(&args.out)?;
    let model = trained.model()?;
    let card_path = args.out.with_extension("md");
    std::fs::write(
        &card_path,
        card::model_card(&model, &loaded.files_label(), notes.as_deref()),
    )
    .with_context(|| format!("cannot write model card {}", card_path.display()))?;
    eprint!(
        "{}",
        evaluate::table(trained.artifact.training.evaluations())
    );
    eprintln!(
        "wrote {} (version {}) and {} in {:.1} s",
        args.out.display(),
        trained.artifact.version,
        card_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
