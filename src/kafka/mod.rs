//! Kafka glue: the pipeline that moves messages from the input topic through the engine to the
//! alert and dead-letter topics. The engine knows nothing of Kafka; this module knows nothing of
//! features.
//!
//! ```text
//!  source ──► pipeline (decode, engine, publish) ──► sink ──► alerts, DLQ, outcomes, scores
//!    │ rebalance            │ every commit interval         changelog
//!    └──────────► checkpoint (write changelog, await acks, commit offsets)
//!                 restore (changelog → engine, when a partition is assigned)
//! ```
//!
//! * [`pipeline`]: the data flow of one pipeline run and its shutdown decision.
//! * [`checkpoint`]: the commit protocol, one call for every path.
//! * [`restore`]: a partition's state back from its changelog.
//! * [`state`]: the engines of the assigned partitions and the changelog topic.
//! * [`source`], [`sink`]: the consumer and the producers; [`client`]: their configuration.
//! * [`telemetry`]: what the adapter reports, as named events.
//! * [`backfill`]: state built offline from history files into the changelog, so the service
//!   starts warm; [`partitioner`]: the partition a user's events land on, as producers compute
//!   it.
//! * [`state_view`]: the engines as the lookup API reads them; [`members`]: how the members of
//!   a group find each other for lookups.
//! * [`broker_view`]: the input topic's offsets as the broker sees them; [`idle`]: what a
//!   member without partitions does while input waits; [`continuity`]: what one pipeline hands
//!   to the next inside the process.
//!
//! This file holds the configuration, the errors and the supervisor that replaces a pipeline
//! stopped by a transient failure.

pub mod backfill;
pub mod broker_view;
pub mod checkpoint;
pub mod client;
pub mod continuity;
pub mod idle;
pub mod members;
pub mod partitioner;
pub mod pipeline;
pub mod restore;
pub mod sink;
pub mod source;
pub mod state;
pub mod state_view;
pub mod telemetry;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use tokio::sync::watch;

use crate::engine::EngineConfig;
use crate::mapping::EventDecoder;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::Millis;
use checkpoint::CheckpointError;
pub use client::parse_options as parse_kafka_options;
pub use client::read_option_file as read_kafka_option_file;
use continuity::Continuity;
pub use pipeline::run;
use sink::SinkError;
use state::StateError;

/// Everything the pipeline needs to run.
#[derive(Clone)]
pub struct PipelineConfig {
    pub brokers: String,
    pub group: String,
    pub input_topic: String,
    pub alert_topic: String,
    pub dlq_topic: String,
    /// Where outcome events go, if anywhere.
    pub outcome_topic: Option<String>,
    /// The churn-risk table (compacted, keyed by user id), if kept; created if missing. The
    /// engines keep the table exactly when this is set.
    pub scores_topic: Option<String>,
    /// Compacted topic backing each input partition's state; `None` keeps state in memory only
    /// (lost on restart, not handed over on rebalance).
    pub changelog_topic: Option<String>,
    pub commit_interval: Duration,
    pub session_timeout_ms: u64,
    /// `fetch.wait.max.ms` of the input consumer (see `--fetch-wait-ms`).
    pub fetch_wait_ms: u64,
    pub kafka_options: Vec<(String, String)>,
    pub engine: EngineConfig,
    /// Input records to events: the native schema or an event mapping.
    pub decoder: EventDecoder,
    pub max_future_skew: Millis,
    /// Larger input messages are refused (`too_large`) before they are parsed.
    pub max_event_bytes: usize,
    pub shutdown_timeout: Duration,
    /// `/healthz` fails once the instance has owned no partition this long while input waits
    /// that nobody consumes (see [`idle`]); `None` never.
    pub unassigned_timeout: Option<Duration>,
}

/// Why the pipeline stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create Kafka consumer: {0}")]
    Consumer(KafkaError),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Shutdown was requested while a restore waited for the broker: not a failure.
    #[error("shutdown requested during a restore")]
    ShutdownDuringRestore,
    /// The checkpoint at shutdown could not commit: a restart reprocesses from the last one.
    #[error(
        "the final checkpoint committed nothing: {0}; a restart resumes from the last checkpoint"
    )]
    FinalCheckpoint(&'static str),
}

/// Totals of one pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineReport {
    pub messages: u64,
    pub rejected: u64,
    pub alerts: u64,
}

impl PipelineError {
    /// Whether a fresh pipeline (new clients, state restored from the last checkpoint) can get
    /// past this: a broker that failed a delivery or a restore may be back. Configuration
    /// errors (no such topic, bad options) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Checkpoint(e) => matches!(e, CheckpointError::DeliveryFailed(_)),
            PipelineError::State(e) => matches!(
                e,
                StateError::Metadata { .. }
                    | StateError::Restore { .. }
                    | StateError::RestoreStalled { .. }
            ),
            _ => false,
        }
    }
}

/// Runs pipelines until `shutdown` turns true: a pipeline that stops on a transient error
/// ([`PipelineError::is_transient`], e.g. the broker failed a delivery while restarting) is
/// replaced by a fresh one after a backoff. The new one resumes from the last checkpoint
/// (committed offsets, changelog), so nothing is lost and nothing counted twice; the process
/// stays up, not ready meanwhile, and is never restarted for an outage.
pub async fn run_until_shutdown(
    cfg: PipelineConfig,
    models: watch::Receiver<Arc<Model>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    state_view: Arc<state_view::StateView>,
    shutdown: watch::Receiver<bool>,
) -> Result<PipelineReport, PipelineError> {
    let mut total = PipelineReport::default();
    let mut backoff = Duration::from_secs(1);
    let continuity = Continuity::new(alive);
    loop {
        let started = Instant::now();
        let outcome = run(
            cfg.clone(),
            models.clone(),
            Arc::clone(&metrics),
            Arc::clone(&ready),
            continuity.clone(),
            Arc::clone(&state_view),
            shutdown.clone(),
        )
        .await;
        match outcome {
            Ok(report) => {
                total.messages += report.messages;
                total.rejected += report.rejected;
                total.alerts += report.alerts;
                return Ok(total);
            }
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                metrics.pipeline_restarts.inc();
                continuity.pipeline_replaced();
                tracing::warn!(error = %e, retry_in = ?backoff, "pipeline stopped; starting a fresh one from the last checkpoint");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ok(total),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}
