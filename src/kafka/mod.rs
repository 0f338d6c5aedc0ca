//! Kafka glue: the pipeline that moves messages from the input topic through the engine to the
//! alert and dead-letter topics. The engine knows nothing of Kafka; this module knows nothing of
//! features.

pub mod sink;
pub mod source;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::clock::WatermarkClock;
use crate::engine::{Applied, EngineConfig, EngineCounters, Scored};
use crate::event::{self, Rejection};
use crate::features::StageTransitions;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::{alert, Millis};
use sink::{Sink, SinkError, SinkTopics, SourceRef};
use state::{Partitions, StateError};

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
    /// Compacted topic backing each input partition's state; `None` keeps state in memory only
    /// (lost on restart, not handed over on rebalance).
    pub changelog_topic: Option<String>,
    pub commit_interval: Duration,
    pub session_timeout_ms: u64,
    /// `fetch.wait.max.ms` of the input consumer (see `--fetch-wait-ms`).
    pub fetch_wait_ms: u64,
    pub kafka_options: Vec<(String, String)>,
    pub engine: EngineConfig,
    pub max_future_skew: Millis,
    pub shutdown_timeout: Duration,
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
    /// Shutdown was requested while a restore waited for the broker: not a failure.
    #[error("shutdown requested during a restore")]
    ShutdownDuringRestore,
    #[error(
        "{0} message(s) could not be delivered to the alert or dead-letter topic; stopping without \
         committing past them so a restart reprocesses them (check the topics exist and the \
         producer's permissions)"
    )]
    DeliveryFailed(u64),
}

/// Totals of one pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineReport {
    pub messages: u64,
    pub rejected: u64,
    pub alerts: u64,
}

/// Splits `key=value` options; anything without `=` is an error the user must fix.
pub fn parse_kafka_options(options: &[String]) -> Result<Vec<(String, String)>, String> {
    options
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("kafka option {o:?} is not key=value"))
        })
        .collect()
}

/// Locks the partition states; a panic elsewhere while holding the lock leaves them usable
/// (every update is a whole-user operation).
fn lock(partitions: &Mutex<Partitions>) -> MutexGuard<'_, Partitions> {
    match partitions.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn wall_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

struct Pipeline<'a> {
    cfg: &'a PipelineConfig,
    consumer: Arc<source::Source>,
    stats: Arc<std::sync::Mutex<std::collections::HashMap<i32, source::PartitionStats>>>,
    sink: Sink,
    /// One engine per assigned input partition (shared with the revoke callback, which
    /// checkpoints them before the partitions go).
    partitions: Arc<Mutex<Partitions>>,
    clock: WatermarkClock,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// Next offset per partition as seen by this loop (fresher than librdkafka's statistics).
    next_offsets: std::collections::HashMap<i32, i64>,
    assigned: Vec<i32>,
    last_error: Option<Instant>,
    report: PipelineReport,
    /// Engine totals already exported to metrics.
    exported: EngineCounters,
    exported_transitions: StageTransitions,
    scored: Vec<Scored>,
    /// Periodic checkpoints whose messages are not all acknowledged yet, oldest first.
    pending_commits: std::collections::VecDeque<PendingCommit>,
    /// Watched while a restore waits for the broker, so SIGTERM is not held up by an outage.
    shutdown: watch::Receiver<bool>,
    /// Every checkpoint epoch up to this one is fully delivered.
    delivered_through: u64,
}

/// A periodic checkpoint waiting for its messages: once every message enqueued up to its epoch
/// is acknowledged, its offsets are committed. The consumer keeps going meanwhile.
struct PendingCommit {
    epoch: u64,
    /// Next input offset per partition when the checkpoint was taken.
    offsets: Vec<(i32, i64)>,
    /// Rebalances seen by then: after a revocation the revoke callback has committed
    /// synchronously, and an older checkpoint must not commit partitions that may have moved.
    generation: u64,
}

/// Publishes the loaded model's identity in the metrics: version and kind (`model_info`),
/// threshold, and the validation AUC recorded at training time.
fn export_model(metrics: &Metrics, model: &Model) {
    metrics.set_model(model.version(), &model.artifact().kind, model.threshold());
    if let Some(auc) = model
        .artifact()
        .training
        .pointer("/metrics/validation/roc_auc")
        .and_then(|v| v.as_f64())
    {
        metrics.model_training_auc.set(auc);
    }
    if let Some(end) = model
        .artifact()
        .training
        .pointer("/data/last_event")
        .and_then(|v| v.as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        metrics
            .model_data_end
            .set(end.timestamp_millis() as f64 / 1000.0);
    }
}

impl PipelineError {
    /// Whether a fresh pipeline (new clients, state restored from the last checkpoint) can get
    /// past this: a broker that failed a delivery or a restore may be back. Configuration
    /// errors (no such topic, bad options) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::DeliveryFailed(_) => true,
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
    shutdown: watch::Receiver<bool>,
) -> Result<PipelineReport, PipelineError> {
    let mut total = PipelineReport::default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let outcome = run(
            cfg.clone(),
            models.clone(),
            Arc::clone(&metrics),
            Arc::clone(&ready),
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

/// Runs one pipeline until `shutdown` turns true, then flushes, commits and returns.
///
/// `models` carries the model to score with; when a new one is published (hot reload, see
/// [`crate::model::reload`]) the loop swaps it into the engine between two messages, so user
/// state is kept and no event is skipped. A closed channel just means no more reloads.
pub async fn run(
    cfg: PipelineConfig,
    mut models: watch::Receiver<Arc<Model>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<PipelineReport, PipelineError> {
    let sink = Sink::new(
        &cfg.brokers,
        SinkTopics {
            alerts: cfg.alert_topic.clone(),
            dlq: cfg.dlq_topic.clone(),
            control: cfg.engine.policy.control().topic.clone(),
            outcomes: cfg.outcome_topic.clone(),
        },
        &cfg.kafka_options,
        Arc::clone(&metrics),
    )?
    .abort_on(shutdown.clone());
    if let Some(changelog) = &cfg.changelog_topic {
        state::ensure_changelog(
            &cfg.brokers,
            &cfg.kafka_options,
            &cfg.input_topic,
            changelog,
            Duration::from_secs(30),
        )
        .await?;
    }
    let model = Arc::clone(&models.borrow_and_update());
    let partitions = Arc::new(Mutex::new(Partitions::new(
        cfg.engine.clone(),
        Some(Arc::clone(&model)),
        cfg.changelog_topic.clone(),
    )));
    let (consumer, stats) = source::create(
        &cfg,
        sink.clone(),
        Arc::clone(&partitions),
        Arc::clone(&metrics),
    )
    .map_err(PipelineError::Consumer)?;
    consumer
        .subscribe(&[&cfg.input_topic])
        .map_err(|source| PipelineError::Subscribe {
            topic: cfg.input_topic.clone(),
            source,
        })?;
    export_model(&metrics, &model);
    metrics.register_policy(&cfg.engine.policy);
    tracing::info!(
        brokers = %cfg.brokers, group = %cfg.group, input = %cfg.input_topic,
        alerts = %cfg.alert_topic, dlq = %cfg.dlq_topic, model = model.version(),
        changelog = cfg.changelog_topic.as_deref().unwrap_or("(none: state in memory only)"),
        "pipeline started"
    );
    let mut p = Pipeline {
        cfg: &cfg,
        consumer: Arc::new(consumer),
        stats,
        sink,
        partitions,
        clock: WatermarkClock::default(),
        metrics,
        ready,
        next_offsets: Default::default(),
        assigned: Vec::new(),
        last_error: None,
        report: PipelineReport::default(),
        exported: EngineCounters::default(),
        exported_transitions: StageTransitions::default(),
        scored: Vec::new(),
        pending_commits: Default::default(),
        shutdown: shutdown.clone(),
        delivered_through: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut commit = tokio::time::interval(cfg.commit_interval);
    commit.tick().await;
    let consumer = Arc::clone(&p.consumer);
    let mut reloads_open = true;
    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            // Before `recv`: under a steady stream a new model must not wait behind messages.
            changed = models.changed(), if reloads_open => match changed {
                Ok(()) => {
                    let model = Arc::clone(&models.borrow_and_update());
                    p.set_model(model);
                }
                Err(_) => reloads_open = false,
            },
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    match p.handle(&m) {
                        Ok(()) => {}
                        Err(PipelineError::ShutdownDuringRestore) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                Err(e) => {
                    p.last_error = Some(Instant::now());
                    tracing::warn!(error = %e, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = tick.tick() => {
                match p.refresh_progress().and_then(|()| p.commit_delivered()) {
                    Ok(()) => {}
                    Err(PipelineError::ShutdownDuringRestore) => break Ok(()),
                    Err(e) => break Err(e),
                }
                p.export_engine_stats();
                if let Err(e) = p.advance_clock() {
                    break Err(e);
                }
            }
            _ = commit.tick() => {
                if let Err(e) = p.checkpoint_in_background() {
                    break Err(e);
                }
            }
        }
    };
    p.ready.store(false, Ordering::Relaxed);
    p.metrics.ready.set(0);
    p.export_engine_stats();
    // A send failed mid-message (or gave up on a full queue at shutdown: the broker stopped
    // acknowledging): that message is half applied, so no final checkpoint at all, or the
    // changelog would reflect it at a position that still replays it. Exit without committing;
    // a restart resumes from the last checkpoint, which is the same as after a crash.
    let gave_up = |r: &Result<(), PipelineError>| {
        matches!(r, Err(PipelineError::Sink(SinkError::ShuttingDown)))
    };
    let aborted = matches!(outcome, Err(PipelineError::Sink(_)));
    let outcome = if gave_up(&outcome) {
        tracing::warn!("shutdown with the producer queue full; offsets not committed");
        Ok(())
    } else {
        outcome
    };
    let mut final_checkpoint = if aborted {
        Ok(())
    } else {
        p.checkpoint(CommitMode::Sync, cfg.shutdown_timeout)
    };
    if gave_up(&final_checkpoint) {
        tracing::warn!(
            "final checkpoint abandoned: the producer queue is full; offsets not committed"
        );
        final_checkpoint = Ok(());
    }
    // Whatever periodic checkpoints still waited is covered by the final one.
    p.pending_commits.clear();
    p.consumer.unsubscribe();
    tracing::info!(
        messages = p.report.messages,
        rejected = p.report.rejected,
        alerts = p.report.alerts,
        "pipeline stopped"
    );
    outcome.and(final_checkpoint).map(|()| p.report)
}

impl Pipeline<'_> {
    /// Swaps in a reloaded model: user state, timers and episodes are untouched; the next score
    /// (event or timer) uses the new model.
    fn set_model(&mut self, model: Arc<Model>) {
        let mut partitions = lock(&self.partitions);
        let previous = partitions
            .model()
            .map(|m| m.version().to_string())
            .unwrap_or_default();
        export_model(&self.metrics, &model);
        tracing::info!(previous_version = %previous, version = model.version(), "pipeline scores with the reloaded model");
        partitions.set_model(Some(model));
    }

    fn handle(&mut self, m: &BorrowedMessage<'_>) -> Result<(), PipelineError> {
        let started = Instant::now();
        self.report.messages += 1;
        let partition = m.partition();
        if !self.assigned.contains(&partition) {
            self.refresh_assignment()?;
        }
        // A partition's events apply only on top of its restored state.
        self.ensure_restored(partition)?;
        let payload = m.payload().unwrap_or(&[]);
        match event::decode(payload, wall_now(), self.cfg.max_future_skew) {
            Err(rejection) => self.dead_letter(m, payload, &rejection)?,
            Ok(ev) => {
                self.clock.observe(partition, ev.ts);
                self.advance_clock()?;
                let t = Instant::now();
                let applied = match lock(&self.partitions).task_mut(partition) {
                    Some(task) => task.engine.apply(&ev),
                    None => unreachable!("ensure_restored installed the partition's state"),
                };
                self.metrics
                    .scoring_seconds
                    .observe(t.elapsed().as_secs_f64());
                match applied {
                    Err(rejection) => self.dead_letter(m, payload, &rejection)?,
                    Ok(Applied::Duplicate) => {}
                    Ok(Applied::Erased) => {
                        self.metrics
                            .events_consumed
                            .with_label_values(&[ev.kind.as_str()])
                            .inc();
                        self.metrics.users_erased.inc();
                    }
                    Ok(Applied::Updated { scored }) => {
                        self.metrics
                            .events_consumed
                            .with_label_values(&[ev.kind.as_str()])
                            .inc();
                        if let Some(s) = scored {
                            self.publish(&s)?;
                        }
                        self.publish_outcomes()?;
                    }
                }
            }
        }
        self.next_offsets.insert(partition, m.offset() + 1);
        if let Some(task) = lock(&self.partitions).task_mut(partition) {
            task.position = m.offset() + 1;
        }
        // Effects are enqueued: the offset may be stored (it is committed after a flush).
        if let Err(e) = self.consumer.store_offset_from_message(m) {
            tracing::warn!(error = %e, partition = m.partition(), offset = m.offset(), "cannot store offset");
        }
        self.metrics
            .event_processing_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn dead_letter(
        &mut self,
        m: &BorrowedMessage<'_>,
        payload: &[u8],
        rejection: &Rejection,
    ) -> Result<(), PipelineError> {
        self.report.rejected += 1;
        self.metrics
            .events_rejected
            .with_label_values(&[rejection.reason.as_str()])
            .inc();
        tracing::debug!(
            reason = rejection.reason.as_str(), detail = %rejection.detail,
            partition = m.partition(), offset = m.offset(), "event rejected to DLQ"
        );
        let source = SourceRef {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
        };
        self.sink.dead_letter(payload, &source, rejection)?;
        self.metrics.dlq_published.inc();
        Ok(())
    }

    fn publish(&mut self, s: &Scored) -> Result<(), PipelineError> {
        self.metrics
            .scores
            .with_label_values(&[s.trigger.as_str()])
            .inc();
        self.metrics.score.observe(s.score);
        match s.decision {
            alert::AlertDecision::AlreadyAlerted => self
                .metrics
                .alerts_suppressed
                .with_label_values(&["already_alerted"])
                .inc(),
            alert::AlertDecision::OptedOut => self
                .metrics
                .alerts_suppressed
                .with_label_values(&["opted_out"])
                .inc(),
            alert::AlertDecision::Suppressed(reason) => self
                .metrics
                .alerts_suppressed
                .with_label_values(&[reason.as_str()])
                .inc(),
            alert::AlertDecision::Raise | alert::AlertDecision::BelowThreshold => {}
        }
        if let Some(a) = &s.alert {
            self.sink.alert(a)?;
            self.report.alerts += 1;
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&a.ts) {
                let delay = (wall_now() - t.timestamp_millis()).max(0) as f64 / 1000.0;
                self.metrics.event_to_alert_seconds.observe(delay);
            }
            self.metrics
                .alerts_published
                .with_label_values(&[
                    s.trigger.as_str(),
                    a.risk_band.as_str(),
                    a.value_tier.as_str(),
                    &a.recommended_action,
                    a.experiment_arm.as_str(),
                ])
                .inc();
            tracing::info!(
                alert_id = %a.alert_id, user_id = %a.user_id, score = a.score,
                trigger = s.trigger.as_str(), risk_band = a.risk_band.as_str(),
                action = %a.recommended_action, arm = a.experiment_arm.as_str(),
                last_activity_at = %a.last_activity_at, "win-back alert"
            );
        }
        Ok(())
    }

    /// Publishes (if an outcome topic is set) and counts the outcomes the engine decided.
    fn publish_outcomes(&mut self) -> Result<(), PipelineError> {
        let mut outcomes = Vec::new();
        lock(&self.partitions).drain_outcomes(&mut outcomes);
        for o in &outcomes {
            self.sink.outcome(o)?;
            self.metrics
                .winback_outcomes
                .with_label_values(&[o.experiment_arm.as_str(), o.outcome.as_str()])
                .inc();
            tracing::info!(
                alert_id = %o.alert_id, user_id = %o.user_id, arm = o.experiment_arm.as_str(),
                outcome = o.outcome.as_str(), "win-back outcome"
            );
        }
        Ok(())
    }

    /// Moves the engine clock as far as the partitions' progress allows; fires due timers.
    fn advance_clock(&mut self) -> Result<(), PipelineError> {
        let Some(now) = self.clock.now(wall_now()) else {
            return Ok(());
        };
        self.scored.clear();
        let mut scored = std::mem::take(&mut self.scored);
        lock(&self.partitions).advance(now, &mut scored);
        for s in &scored {
            self.publish(s)?;
        }
        self.publish_outcomes()?;
        self.scored = scored;
        Ok(())
    }

    /// Brings the engine's own totals (evictions, duplicates, lifecycle) into the metrics.
    fn export_engine_stats(&mut self) {
        let partitions = lock(&self.partitions);
        let c = partitions.counters();
        let before = std::mem::replace(&mut self.exported, c);
        self.metrics
            .users_evicted
            .inc_by(c.evicted - before.evicted);
        self.metrics
            .events_duplicate
            .inc_by(c.duplicates - before.duplicates);
        self.metrics
            .events_late
            .inc_by(c.late_accepted - before.late_accepted);
        let stages = partitions.stage_stats();
        for (from, to, delta) in stages
            .transitions
            .delta_since(&self.exported_transitions)
            .iter()
        {
            if delta > 0 {
                self.metrics
                    .lifecycle_transitions
                    .with_label_values(&[from.as_str(), to.as_str()])
                    .inc_by(delta);
            }
        }
        self.exported_transitions = stages.transitions;
        for (stage, n) in stages.users.iter() {
            self.metrics
                .users_by_stage
                .with_label_values(&[stage.as_str()])
                .set(n as i64);
        }
        self.metrics.users_tracked.set(partitions.users() as i64);
        self.metrics
            .outcomes_pending
            .set(partitions.outcomes_pending() as i64);
        let clock = partitions.clock();
        if clock != Millis::MIN {
            self.metrics.watermark_seconds.set(clock as f64 / 1000.0);
        }
        self.metrics
            .producer_queue
            .set(i64::from(self.sink.in_flight()));
    }

    /// Reads the current assignment. Must run before the clock may advance on a partition's
    /// events: a clock that does not know every assigned partition would move past the backlog of
    /// one that has not delivered yet. Newly assigned partitions are restored here, so that even
    /// a partition that delivers nothing gets its silent users' timers back.
    fn refresh_assignment(&mut self) -> Result<(), PipelineError> {
        let Ok(tpl) = self.consumer.assignment() else {
            return Ok(());
        };
        let parts: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.cfg.input_topic)
            .map(|e| e.partition())
            .collect();
        drop(tpl);
        if parts != self.assigned {
            self.clock.assign(&parts);
            self.next_offsets.retain(|p, _| parts.contains(p));
            self.metrics.consumer_lag.reset();
            // Gone without a revoke callback (cannot normally happen): nothing to checkpoint.
            let stale: Vec<i32> = lock(&self.partitions)
                .partitions()
                .into_iter()
                .filter(|p| !parts.contains(p))
                .collect();
            lock(&self.partitions).retire(&stale);
            self.assigned = parts;
            for p in self.assigned.clone() {
                self.ensure_restored(p)?;
            }
        }
        Ok(())
    }

    /// The group's committed offset of an input partition (-1 if none).
    fn committed_offset(&self, partition: i32) -> Result<i64, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.input_topic, partition);
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))?;
        let offset = committed
            .find_partition(&self.cfg.input_topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(-1);
        Ok(offset)
    }

    /// Installs the state of `partition` if this instance has none yet: restored from the
    /// changelog up to the committed input offset, or empty without a changelog. Not ready
    /// meanwhile. A restore that fails (broker unreachable) is retried with backoff until it
    /// succeeds or shutdown is requested: processing the partition without its state would be
    /// wrong, and exiting would not bring the broker back.
    fn ensure_restored(&mut self, partition: i32) -> Result<(), PipelineError> {
        if lock(&self.partitions).contains(partition) {
            return Ok(());
        }
        self.ready.store(false, Ordering::Relaxed);
        self.metrics.ready.set(0);
        self.metrics.restoring_partitions.inc();
        let result = self.restore(partition);
        self.metrics.restoring_partitions.dec();
        result
    }

    fn restore(&mut self, partition: i32) -> Result<(), PipelineError> {
        let changelog = lock(&self.partitions).changelog().map(str::to_string);
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let mut engine = lock(&self.partitions).new_engine();
            let outcome = match (&changelog, self.committed_offset(partition)) {
                (_, Err(e)) => Err(StateError::Restore {
                    topic: self.cfg.input_topic.clone(),
                    partition,
                    source: e,
                }),
                (None, Ok(committed)) => Ok((committed, state::RestoreReport::default())),
                (Some(topic), Ok(committed)) => state::restore_partition(
                    &self.cfg.brokers,
                    &self.cfg.kafka_options,
                    topic,
                    partition,
                    committed,
                    &mut engine,
                    &self.metrics,
                    Duration::from_secs(30),
                )
                .map(|r| (committed, r)),
            };
            match outcome {
                Ok((committed, report)) => {
                    tracing::info!(
                        partition,
                        committed,
                        users = engine.users(),
                        applied = report.applied,
                        deleted = report.deleted,
                        ignored = report.ignored,
                        corrupt = report.corrupt,
                        seconds = report.seconds,
                        "partition state restored"
                    );
                    lock(&self.partitions).insert(partition, engine, committed.max(0));
                    return Ok(());
                }
                // A configuration problem: retrying cannot help, and skipping would lose state.
                Err(e @ StateError::Windows { .. }) => return Err(e.into()),
                Err(e) => {
                    self.last_error = Some(Instant::now());
                    tracing::warn!(error = %e, partition, attempt, retry_in = ?backoff, "restore failed; retrying");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if *self.shutdown.borrow() {
                            return Err(PipelineError::ShutdownDuringRestore);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
            }
        }
    }

    /// Refreshes assignment, caught-up flags, lag and readiness from librdkafka.
    fn refresh_progress(&mut self) -> Result<(), PipelineError> {
        self.refresh_assignment()?;
        let stats = match self.stats.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for &p in &self.assigned {
            let Some(s) = stats.get(&p) else { continue };
            if s.hi_offset < 0 {
                continue;
            }
            let position = [
                self.next_offsets.get(&p).copied().unwrap_or(-1),
                s.app_offset,
                s.committed_offset,
            ]
            .into_iter()
            .max()
            .unwrap_or(-1)
            .max(0);
            let caught_up = position >= s.hi_offset;
            if self.clock.set_caught_up(p, caught_up) {
                tracing::debug!(
                    partition = p,
                    caught_up,
                    position,
                    hi_offset = s.hi_offset,
                    app_offset = s.app_offset,
                    committed = s.committed_offset,
                    "partition progress changed"
                );
            }
            self.metrics
                .consumer_lag
                .with_label_values(&[&p.to_string()])
                .set((s.hi_offset - position).max(0));
        }
        let healthy = self
            .last_error
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
        let restored = {
            let partitions = lock(&self.partitions);
            self.assigned.iter().all(|p| partitions.contains(*p))
        };
        let ready = !self.assigned.is_empty() && healthy && restored;
        self.ready.store(ready, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(ready));
        self.metrics
            .assigned_partitions
            .set(self.assigned.len() as i64);
        Ok(())
    }

    /// The periodic checkpoint, without stopping the consumer: write the state changelog, close
    /// the producer epoch, and commit the offsets of this moment once everything enqueued up to
    /// here is acknowledged ([`Pipeline::commit_delivered`], also run every tick). A blocking
    /// flush here would stall consumption for as long as the broker takes to acknowledge.
    fn checkpoint_in_background(&mut self) -> Result<(), PipelineError> {
        let started = Instant::now();
        let failures = self.sink.failures();
        if failures > 0 {
            self.metrics.commits.with_label_values(&["skipped"]).inc();
            return Err(PipelineError::DeliveryFailed(failures));
        }
        let generation = {
            let mut partitions = lock(&self.partitions);
            partitions.write_changes(&self.sink, &self.metrics)?;
            partitions.generation()
        };
        if self.sink.open_epoch() - self.delivered_through < sink::EPOCH_RING - 1 {
            let epoch = self.sink.close_epoch();
            let offsets = self.next_offsets.iter().map(|(&p, &o)| (p, o)).collect();
            self.pending_commits.push_back(PendingCommit {
                epoch,
                offsets,
                generation,
            });
        } else {
            tracing::warn!(
                waiting = self.pending_commits.len(),
                in_flight = self.sink.in_flight(),
                "checkpoints are waiting for the broker to acknowledge; not opening another"
            );
        }
        let result = self.commit_delivered();
        self.metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Commits the newest waiting checkpoint whose messages (and all before) are acknowledged.
    fn commit_delivered(&mut self) -> Result<(), PipelineError> {
        let mut ready = None;
        while let Some(front) = self.pending_commits.front() {
            if !self.sink.delivered(self.delivered_through + 1, front.epoch) {
                break;
            }
            self.delivered_through = front.epoch;
            ready = self.pending_commits.pop_front();
        }
        let Some(commit) = ready else {
            return Ok(());
        };
        let failures = self.sink.failures();
        if failures > 0 {
            self.metrics.commits.with_label_values(&["skipped"]).inc();
            return Err(PipelineError::DeliveryFailed(failures));
        }
        if commit.generation != lock(&self.partitions).generation() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in commit.offsets {
            if self.assigned.contains(&p) {
                let _ = tpl.add_partition_offset(&self.cfg.input_topic, p, Offset::Offset(offset));
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => self.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; will retry at the next checkpoint");
                self.metrics.commits.with_label_values(&["error"]).inc();
            }
        }
        Ok(())
    }

    /// Write the state changelog, flush the producer, then commit stored offsets: never commit
    /// what is not yet delivered, alerts and state alike. Blocking: for shutdown.
    fn checkpoint(&mut self, mode: CommitMode, timeout: Duration) -> Result<(), PipelineError> {
        let started = Instant::now();
        lock(&self.partitions).write_changes(&self.sink, &self.metrics)?;
        let result = self.commit_after_flush(mode, timeout);
        self.metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn commit_after_flush(
        &mut self,
        mode: CommitMode,
        timeout: Duration,
    ) -> Result<(), PipelineError> {
        if let Err(e) = self.sink.flush(timeout) {
            tracing::warn!(error = %e, in_flight = self.sink.in_flight(), "producer flush timed out; offsets not committed");
            self.metrics.commits.with_label_values(&["skipped"]).inc();
            return Ok(());
        }
        let failures = self.sink.failures();
        if failures > 0 {
            self.metrics.commits.with_label_values(&["skipped"]).inc();
            return Err(PipelineError::DeliveryFailed(failures));
        }
        match self.consumer.commit_consumer_state(mode) {
            Ok(()) => self.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; will retry at the next checkpoint");
                self.metrics.commits.with_label_values(&["error"]).inc();
            }
        }
        Ok(())
    }
}
