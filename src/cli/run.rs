//! `churnguard run`: the service. Loads and watches the model, serves /metrics, /healthz and
//! /readyz (and the lookup API when configured), and runs the Kafka pipeline until SIGTERM/SIGINT.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use churnguard::http::{self, HttpState};
use churnguard::kafka::state_view::StateView;
use churnguard::kafka::{self, PipelineConfig};
use churnguard::metrics::Metrics;
use churnguard::model::reload;

use super::args::RunArgs;

/// The pipeline these flags describe, or why they are inconsistent.
pub fn pipeline_config(args: &RunArgs) -> Result<PipelineConfig> {
    let kafka_options = args.kafka.options().map_err(anyhow::Error::msg)?;
    Ok(PipelineConfig {
        brokers: args.kafka.brokers.clone(),
        group: args.kafka.group.clone(),
        input_topic: args.kafka.input_topic.clone(),
        alert_topic: args.kafka.alert_topic.clone(),
        dlq_topic: args.kafka.dlq_topic.clone(),
        outcome_topic: Some(args.kafka.outcome_topic.clone()).filter(|t| !t.is_empty()),
        scores_topic: Some(args.kafka.scores_topic.clone()).filter(|t| !t.is_empty()),
        changelog_topic: args.kafka.changelog_topic(),
        commit_interval: Duration::from_millis(args.kafka.commit_interval_ms.max(100)),
        session_timeout_ms: args.kafka.session_timeout_ms,
        fetch_wait_ms: args.kafka.fetch_wait_ms,
        kafka_options,
        engine: args.engine.engine_config()?,
        decoder: args.mapping.decoder()?,
        max_future_skew: args.engine.max_future_skew(),
        max_event_bytes: args.max_event_bytes,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        unassigned_timeout: (args.unassigned_timeout_secs > 0)
            .then(|| Duration::from_secs(args.unassigned_timeout_secs)),
    })
}

/// Runs the service until SIGTERM/SIGINT, then checkpoints and exits.
pub async fn run(args: RunArgs) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    // Loads and validates the startup model, and listens for SIGHUP before /healthz answers.
    let (models, watcher) = reload::start(
        &churnguard::model::locate::resolve_model_path(&args.model)?,
        Duration::from_secs(args.model_poll_secs),
        Arc::clone(&metrics),
        args.engine.window.windows,
    )
    .context("cannot load the model or watch it for reloads")?;
    let ready = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let server = http::serve(
        args.metrics_addr,
        HttpState {
            metrics: Arc::clone(&metrics),
            ready: Arc::clone(&ready),
            alive: Arc::clone(&alive),
        },
    )
    .await
    .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    let cfg = pipeline_config(&args)?;
    let state_view = StateView::new();
    let api = super::api::start(&args.api, &cfg, &metrics, &state_view).await?;
    let shutdown = super::shutdown_signal();
    let report =
        kafka::run_until_shutdown(cfg, models, metrics, ready, alive, state_view, shutdown).await;
    if let Some(api) = api {
        api.stop().await;
    }
    let report = report?;
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
