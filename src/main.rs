//! The `churnguard` binary: parses configuration, sets up logging and signals, and hands over
//! to the library. Errors end here, as `anyhow` reports with context.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use churnguard::config::{
    parse_cutoff_at, parse_duration, parse_instant, Cli, Command, EvaluateArgs, LoadgenArgs,
    LogFormat, ReplayArgs, RunArgs, SynthArgs, TrainArgs,
};
use churnguard::engine::Engine;
use churnguard::http::{self, HttpState};
use churnguard::kafka::{self, parse_kafka_options, PipelineConfig};
use churnguard::metrics::Metrics;
use churnguard::model::{reload, train, Model};
use churnguard::{event, replay, synth, DAY_MS};

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Demo(args) => runtime.block_on(async {
            let shutdown = shutdown_signal();
            churnguard::demo::run(args, shutdown)
                .await
                .context("demo failed")
        }),
        Command::Replay(args) => replay_cmd(&args),
        Command::Train(args) => train_cmd(&args),
        Command::Evaluate(args) => evaluate_cmd(&args),
        Command::Synth(args) => synth_cmd(&args),
        Command::Loadgen(args) => loadgen_cmd(&args),
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A channel that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = tx.send(true);
    });
    rx
}

async fn run(args: RunArgs) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    // Loads and validates the startup model, and listens for SIGHUP before /healthz answers.
    let (models, watcher) = reload::start(
        &args.model,
        Duration::from_secs(args.model_poll_secs),
        Arc::clone(&metrics),
        args.engine.window.windows,
    )
    .context("cannot load the model or watch it for reloads")?;
    let ready = Arc::new(AtomicBool::new(false));
    let server = http::serve(
        args.metrics_addr,
        HttpState {
            metrics: Arc::clone(&metrics),
            ready: Arc::clone(&ready),
        },
    )
    .await
    .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    let kafka_options =
        parse_kafka_options(&args.kafka.kafka_options).map_err(anyhow::Error::msg)?;
    let cfg = PipelineConfig {
        brokers: args.kafka.brokers.clone(),
        group: args.kafka.group.clone(),
        input_topic: args.kafka.input_topic.clone(),
        alert_topic: args.kafka.alert_topic.clone(),
        dlq_topic: args.kafka.dlq_topic.clone(),
        outcome_topic: Some(args.kafka.outcome_topic.clone()).filter(|t| !t.is_empty()),
        changelog_topic: args.kafka.changelog_topic(),
        commit_interval: Duration::from_millis(args.kafka.commit_interval_ms.max(100)),
        session_timeout_ms: args.kafka.session_timeout_ms,
        fetch_wait_ms: args.kafka.fetch_wait_ms,
        kafka_options,
        engine: args.engine.engine_config()?,
        max_future_skew: args.engine.max_future_skew(),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
    };
    let report = kafka::run_until_shutdown(cfg, models, metrics, ready, shutdown_signal()).await?;
    watcher.abort();
    server.task.abort();
    tracing::info!(
        messages = report.messages,
        rejected = report.rejected,
        alerts = report.alerts,
        "exiting"
    );
    Ok(())
}

fn replay_cmd(args: &ReplayArgs) -> Result<()> {
    let model = Arc::new(
        Model::load_for(&args.model, args.engine.window.windows)
            .context("cannot load the model")?,
    );
    let loaded = replay::load_events(
        &args.events,
        chrono::Utc::now().timestamp_millis(),
        args.engine.max_future_skew(),
    )?;
    let until = args
        .until
        .as_deref()
        .map(parse_instant)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut engine = Engine::new(args.engine.engine_config()?, Some(model));
    let started = std::time::Instant::now();
    let outcome = replay::replay(&mut engine, &loaded.events, until);
    let secs = started.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    for a in &outcome.alerts {
        writeln!(stdout, "{}", serde_json::to_string(a)?)?;
    }
    if let Some(path) = &args.features_out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for (user, _, fv) in engine.snapshot(engine.clock()) {
            let features: serde_json::Map<String, serde_json::Value> = fv
                .named()
                .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
                .collect();
            writeln!(
                f,
                "{}",
                serde_json::json!({ "user_id": user, "features": features })
            )?;
        }
    }
    eprintln!(
        "replayed {} events ({} refused in file: {:?}; {} too late) for {} users in {secs:.2} s ({:.0} events/s); {} alerts",
        outcome.applied,
        loaded.rejected.len(),
        loaded.rejected_by_reason(),
        outcome.rejected.len(),
        engine.users(),
        outcome.applied as f64 / secs.max(1e-9),
        outcome.alerts.len()
    );
    Ok(())
}

fn train_cmd(args: &TrainArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let loaded = replay::load_events(&args.events, i64::MAX / 4, 0)?;
    if !loaded.rejected.is_empty() {
        eprintln!(
            "{} lines of {} refused: {:?}",
            loaded.rejected.len(),
            args.events.display(),
            loaded.rejected_by_reason()
        );
    }
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
    let kind = match args.kind.as_str() {
        "forest" => train::ModelKind::RandomForest(train::ForestParams {
            n_trees: args.trees,
            max_depth: args.max_depth,
            min_samples_leaf: args.min_samples_leaf,
            m: args.max_features,
            seed: args.seed,
        }),
        _ => train::ModelKind::LogisticRegression { alpha: args.alpha },
    };
    let cfg = train::TrainConfig {
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
        bgnbd: (args.bgnbd || args.bgnbd_horizon.is_some() || args.bgnbd_fit_at.is_some())
            .then(|| -> Result<train::BgNbdConfig> {
                Ok(train::BgNbdConfig {
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
                })
            })
            .transpose()?,
        windows: args.window.windows,
        kind,
        spline_knots: args.spline_knots,
        threshold: match args.alert_budget {
            Some(pct) if pct > 0.0 && pct <= 100.0 => {
                train::ThresholdObjective::AlertBudget { pct }
            }
            Some(pct) => bail!("--alert-budget {pct} must lie in (0, 100]"),
            None => train::ThresholdObjective::MaxF1,
        },
        progress: true,
    };
    let notes = args
        .card_notes
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let mut trained = train::train(&loaded.events, &cfg)?;
    trained.save(&args.out)?;
    let model = trained.model()?;
    let card = args.out.with_extension("md");
    std::fs::write(
        &card,
        churnguard::model::card::model_card(
            &model,
            &args.events.display().to_string(),
            notes.as_deref(),
        ),
    )
    .with_context(|| format!("cannot write model card {}", card.display()))?;
    let evals: Vec<churnguard::model::evaluate::Evaluation> =
        serde_json::from_value(trained.summary["metrics"]["evaluations"].clone())?;
    eprint!("{}", churnguard::model::evaluate::table(&evals));
    eprintln!(
        "wrote {} (version {}) and {} in {:.1} s",
        args.out.display(),
        trained.artifact.version,
        card.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn evaluate_cmd(args: &EvaluateArgs) -> Result<()> {
    use churnguard::model::evaluate::{evaluate_rows, table};
    let msg = anyhow::Error::msg;
    let model =
        Model::load_for(&args.model, args.window.windows).context("cannot load the model")?;
    let loaded = replay::load_events(&args.events, i64::MAX / 4, 0)?;
    let training = &model.artifact().training;
    let days_of = |v: &serde_json::Value| v.as_f64().map(|d| (d * DAY_MS as f64).round() as i64);
    let horizon = match &args.horizon {
        Some(h) => parse_duration(h).map_err(msg)?,
        None => days_of(&training["validation_horizon_days"])
            .or_else(|| days_of(&training["horizon_days"]))
            .unwrap_or(90 * DAY_MS),
    };
    let active_within = match &args.active_within {
        Some(a) => Some(parse_duration(a).map_err(msg)?),
        None => days_of(&training["active_within_days"]),
    };
    let points = args
        .cutoff
        .iter()
        .map(|c| parse_cutoff_at(c, horizon))
        .collect::<Result<Vec<_>, _>>()
        .map_err(msg)?;
    let end = loaded.events.last().map_or(0, |e| train::data_end(e.ts));
    for &(c, h) in &points {
        if c + h > end {
            bail!(
                "cutoff {} plus its {}-day horizon ends after the data ({}): labels unknown",
                churnguard::alert::rfc3339(c),
                h / DAY_MS,
                churnguard::alert::rfc3339(end)
            );
        }
    }
    let specs: Vec<train::SnapshotSpec> = points
        .iter()
        .map(|&(cutoff, horizon)| train::SnapshotSpec {
            cutoff,
            horizon,
            active_within: active_within.unwrap_or(horizon),
        })
        .collect();
    let rows = train::snapshots_for(&loaded.events, &specs, true, args.window.windows);
    let mut evals = Vec::new();
    for &(c, h) in &points {
        let rs: Vec<&train::Row> = rows
            .iter()
            .filter(|r| r.cutoff == c && r.horizon == h)
            .collect();
        let (e, scored) = evaluate_rows(&model, &rs, c, h, &args.top_k);
        if let Some(dir) = &args.plots {
            let day = format!(
                "{}{}",
                e.cutoff.get(..10).unwrap_or(&e.cutoff),
                if points.iter().filter(|p| p.0 == c).count() > 1 {
                    format!("-{}d", h / DAY_MS)
                } else {
                    String::new()
                }
            );
            let files =
                churnguard::model::plots::write_all(dir, &day, &scored, e.roc_auc).map_err(msg)?;
            eprintln!("wrote {} plots to {}", files.len(), dir.display());
        }
        evals.push(e);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": args.model.display().to_string(),
                "model_version": model.version(),
                "kind": model.artifact().kind,
                "events": args.events.display().to_string(),
                "evaluations": evals,
            }))?
        );
    } else {
        println!(
            "model {} ({}, {}) on {}\n",
            args.model.display(),
            model.artifact().kind,
            model.version(),
            args.events.display()
        );
        print!("{}", table(&evals));
    }
    Ok(())
}

fn synth_cmd(args: &SynthArgs) -> Result<()> {
    let end = parse_instant(&args.end).map_err(anyhow::Error::msg)?;
    if !(0.0..=1.0).contains(&args.churn_share) {
        bail!("--churn-share must lie in [0, 1]");
    }
    let cfg = synth::SynthConfig {
        users: args.users,
        days: args.days,
        end,
        churn_share: args.churn_share,
        seed: args.seed,
    };
    let (users, events) = synth::generate(&cfg);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?,
    );
    for e in &events {
        writeln!(f, "{}", event::encode(e))?;
    }
    f.flush()?;
    eprintln!(
        "wrote {} events of {} users to {}",
        events.len(),
        users.len(),
        args.out.display()
    );
    Ok(())
}

fn loadgen_cmd(args: &LoadgenArgs) -> Result<()> {
    use churnguard::loadgen::{self, Generator, LoadConfig, ProduceConfig};
    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut gen = Generator::new(LoadConfig {
        users: args.users,
        events: args.events,
        days: args.days,
        end: started_ms,
        silent_share: args.silent_share,
        late_share: args.late_share,
        jitter: args.jitter_ms,
        bad_share: args.bad_share,
        seed: args.seed,
        run_id: format!("lg{}", started_ms % 1_000_000_000),
    })?;
    let mut due_offset_ms = None;
    if args.due_users > 0 {
        let model = Arc::new(Model::load(&args.model).context("cannot load the model")?);
        let first = started_ms + (args.due_after_secs * 1000.0) as i64;
        // Two passes: the offset depends a little on where the template falls in UTC days.
        let mut offset = loadgen::alert_offset(
            Arc::clone(&model),
            churnguard::engine::EngineConfig::default(),
            first - 13 * DAY_MS,
        )?;
        offset = loadgen::alert_offset(
            model,
            churnguard::engine::EngineConfig::default(),
            first - offset,
        )?;
        let window = (args.due_window_secs * 1000.0) as i64;
        gen.plant(loadgen::due_users(args.due_users, first, window, offset));
        due_offset_ms = Some(offset);
        tracing::info!(
            users = args.due_users,
            silence_days = offset as f64 / DAY_MS as f64,
            "planted due users"
        );
    }
    let report = loadgen::produce(
        &mut gen,
        &ProduceConfig {
            brokers: args.brokers.clone(),
            topic: args.topic.clone(),
            rate: args.rate,
            live: Duration::from_secs_f64(args.live_secs.max(0.0)),
            live_rate: args.live_rate,
            kafka_options: parse_kafka_options(&args.kafka_options).map_err(anyhow::Error::msg)?,
        },
    )?;
    eprintln!(
        "produced {} events ({} history, {} live; {} bad, {} late, {} planted) in {:.2} s: {:.0} events/s (history {:.0} events/s)",
        report.events,
        report.history_events,
        report.live_events,
        report.bad,
        report.late,
        report.planted,
        report.seconds,
        report.events_per_s,
        report.history_events_per_s
    );
    let mut summary = serde_json::to_value(&report)?;
    summary["started_ms"] = serde_json::json!(started_ms);
    if let Some(o) = due_offset_ms {
        let first = started_ms + (args.due_after_secs * 1000.0) as i64;
        summary["due_users"] = serde_json::json!(args.due_users);
        summary["due_silence_ms"] = serde_json::json!(o);
        summary["due_first_ms"] = serde_json::json!(first);
        summary["due_last_ms"] = serde_json::json!(first + (args.due_window_secs * 1000.0) as i64);
    }
    println!("{summary}");
    Ok(())
}
