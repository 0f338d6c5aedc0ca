//! The binary's side of the crate: flags and environment variables (clap) in [`args`], turned
//! into the plain configuration types of the library, one module per command.
//!
//! Keeping clap here means the library compiles and is used (by tests, benches, examples)
//! without a command-line parser, and each command reads as "flags → configuration → library
//! call → report". Errors end here as `anyhow` reports with context.

pub mod api;
pub mod args;
pub mod backfill;
pub mod check_mapping;
pub mod demo;
pub mod engine_args;
pub mod evaluate;
pub mod input;
pub mod loadgen;
pub mod replay;
pub mod run;
pub mod score;
pub mod synth;
pub mod train;

use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use args::{LogFormat, RefusalArgs};

/// Loads the history files of an offline tool through `decoder`: refusals are listed by
/// reason with their first places (file and line or row), ignored records by type, and a
/// history with nothing valid or too much refused stops the tool.
pub fn load_checked(
    paths: &[std::path::PathBuf],
    decoder: &churnguard::mapping::EventDecoder,
    now: i64,
    max_future_skew: i64,
    refusals: &RefusalArgs,
) -> anyhow::Result<churnguard::history::LoadedEvents> {
    if decoder.is_avro() {
        anyhow::bail!(
            "--avro-schemas is for Avro messages on a topic (run, check-mapping); history \
             files are read as JSONL, CSV or Parquet through the event mapping alone"
        );
    }
    let options = churnguard::history::ReadOptions {
        decoder,
        now,
        max_future_skew,
        progress: true,
    };
    let loaded = churnguard::history::load(paths, &options)?;
    eprint!("{}", loaded.refusal_summary());
    loaded.check_refusals(refusals.max_refused_fraction)?;
    Ok(loaded)
}

/// The model and the history of a command that drives the engine from files (`replay`,
/// `score`): the model `--model` names, loaded for the engine's windows, then the events as
/// [`load_checked`] reads them, with the engine's future-skew bound against the wall clock.
pub fn model_and_history(
    model: &std::path::Path,
    events: &[std::path::PathBuf],
    engine: &args::EngineArgs,
    mapping: &args::MappingArgs,
    refusals: &RefusalArgs,
) -> anyhow::Result<(
    std::sync::Arc<churnguard::model::Model>,
    churnguard::history::LoadedEvents,
)> {
    use anyhow::Context;
    let model = churnguard::model::Model::load_for(
        &churnguard::model::locate::resolve_model_path(model)?,
        engine.window.windows,
    )
    .context("cannot load the model")?;
    let loaded = load_checked(
        events,
        &mapping.decoder()?,
        chrono::Utc::now().timestamp_millis(),
        engine.max_future_skew(),
        refusals,
    )?;
    Ok((std::sync::Arc::new(model), loaded))
}

/// Logs to stderr (stdout carries command output such as alerts and reports), filtered by
/// `RUST_LOG` with librdkafka's chatter reduced to warnings by default.
pub fn init_logging(format: LogFormat) {
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
pub fn shutdown_signal() -> watch::Receiver<bool> {
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
