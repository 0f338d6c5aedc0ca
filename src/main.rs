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
    parse_instant, Cli, Command, LogFormat, ReplayArgs, RunArgs, SynthArgs, TrainArgs,
};
use churnguard::engine::Engine;
use churnguard::http::{self, HttpState};
use churnguard::kafka::{self, parse_kafka_options, PipelineConfig};
use churnguard::metrics::Metrics;
use churnguard::model::{train, Model};
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
        Command::Synth(args) => synth_cmd(&args),
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
    let model = Arc::new(Model::load(&args.model).context("cannot load the model")?);
    let metrics = Arc::new(Metrics::new());
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
        commit_interval: Duration::from_millis(args.kafka.commit_interval_ms.max(100)),
        session_timeout_ms: args.kafka.session_timeout_ms,
        kafka_options,
        engine: args.engine.engine_config(),
        max_future_skew: args.engine.max_future_skew(),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
    };
    let report = kafka::run(cfg, model, metrics, ready, shutdown_signal()).await?;
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
    let model = Arc::new(Model::load(&args.model).context("cannot load the model")?);
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
    let mut engine = Engine::new(args.engine.engine_config(), Some(model));
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
    let cutoffs = args
        .cutoffs
        .iter()
        .map(|c| parse_instant(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let validation = args
        .validate_at
        .as_deref()
        .map(parse_instant)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let cfg = train::TrainConfig {
        horizon: args.horizon_days * DAY_MS,
        train_cutoffs: cutoffs,
        validation_cutoff: validation,
        alpha: args.alpha,
    };
    let mut trained = train::train(&loaded.events, &cfg)?;
    trained.artifact.save(&args.out)?;
    let card = args.out.with_extension("md");
    std::fs::write(
        &card,
        model_card(&trained.artifact, &args.events.display().to_string()),
    )
    .with_context(|| format!("cannot write model card {}", card.display()))?;
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&trained.summary["metrics"])?
    );
    eprintln!(
        "wrote {} (version {}) and {} in {:.1} s",
        args.out.display(),
        trained.artifact.version,
        card.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn model_card(a: &churnguard::model::ModelArtifact, source: &str) -> String {
    let t = &a.training;
    let v = &t["metrics"]["validation"];
    let mut s = format!(
        "# Model card: {kind} `{version}`\n\n\
         Trained by `churnguard train` from `{source}` (fingerprint `{fp}`, {events} events, {first} → {last}).\n\n\
         - Label: {label}; horizon {h} days.\n\
         - Training cutoffs: {cutoffs}.\n\
         - Validation cutoff (time split, after the last training cutoff + horizon): {vc}.\n\
         - Threshold: {thr} ({obj}).\n\n\
         ## Validation\n\n| metric | value |\n| --- | --- |\n",
        kind = a.kind,
        version = a.version,
        fp = t["data"]["fingerprint"].as_str().unwrap_or("?"),
        events = t["data"]["events"],
        first = t["data"]["first_event"].as_str().unwrap_or("?"),
        last = t["data"]["last_event"].as_str().unwrap_or("?"),
        label = t["label"].as_str().unwrap_or("?"),
        h = t["horizon_days"],
        cutoffs = t["train_cutoffs"].as_array().map(|c| c.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        vc = t["validation_cutoff"].as_str().unwrap_or("?"),
        thr = a.threshold,
        obj = t["threshold_objective"].as_str().unwrap_or("?"),
    );
    for key in [
        "rows",
        "churn_rate",
        "roc_auc",
        "pr_auc",
        "precision",
        "recall",
        "f1",
        "alert_rate",
    ] {
        let val = &v[key];
        let text = val
            .as_f64()
            .map(|x| {
                if x.fract() == 0.0 {
                    format!("{x}")
                } else {
                    format!("{x:.4}")
                }
            })
            .unwrap_or_else(|| val.to_string());
        s.push_str(&format!("| {key} | {text} |\n"));
    }
    s.push_str("\n## Features (transform, standardisation, coefficient)\n\n| feature | transform | mean | std | coef |\n| --- | --- | --- | --- | --- |\n");
    for f in &a.features {
        s.push_str(&format!(
            "| {} | {:?} | {:.4} | {:.4} | {:+.4} |\n",
            f.name, f.transform, f.mean, f.std, f.coef
        ));
    }
    s.push_str(&format!(
        "\nIntercept {:+.4}. Training rows: {}, training ROC AUC {}.\n",
        a.intercept, t["metrics"]["training"]["rows"], t["metrics"]["training"]["roc_auc"]
    ));
    s
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
