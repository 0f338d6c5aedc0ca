//! One pipeline run, as the data flows: a message is decoded, applied to its partition's
//! engine, and its effects (alerts, outcomes, churn-risk table records, dead letters) are
//! handed to the producer; a tick
//! refreshes the assignment and progress and fires due timers; the commit interval runs a
//! background checkpoint. How the loop ended is decided once (`Stop`), and decides what the
//! final checkpoint may do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use tokio::sync::watch;

use super::broker_view::{BrokerView, InputView};
use super::checkpoint::{lock, Blocked, Checkpoint, CheckpointError, CheckpointOutcome, Mode};
use super::client;
use super::continuity::Continuity;
use super::idle::{IdleLimits, IdleWatch};
use super::restore::Restorer;
use super::sink::{Sink, SinkError, SinkTopics, SourceRef};
use super::source::{self, Source, StatsByPartition};
use super::state::{self, Partitions};
use super::state_view::StateView;
use super::telemetry::{self, Emit, EngineStatsExport};
use super::{PipelineConfig, PipelineError, PipelineReport};
use crate::clock::PartitionClocks;
use crate::engine::{Applied, Scored};
use crate::event::{self, EventKind, RejectReason, Rejection};
use crate::mapping::Decoded;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::Millis;

fn wall_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Why a message without a value is refused (it is dead-lettered with its value still null).
const NULL_PAYLOAD: &str =
    "null payload: the record has no value (a tombstone?); an event is a JSON object";

/// Why the final checkpoint commits nothing when shutdown finds the producer queue full.
const QUEUE_FULL: &str = "the producer queue was full (the broker stopped acknowledging)";

/// How often the input topic's offsets are read from the broker (see [`BrokerView`]).
const BROKER_VIEW_EVERY: Duration = Duration::from_secs(2);

/// Why the loop ended.
enum Stop {
    /// Shutdown was requested (also while a restore waited for the broker).
    Requested,
    /// Stopped between messages: a final checkpoint still commits what is complete.
    Failed(PipelineError),
    /// A send failed while a message (or a timer firing) was being handled: its state is half
    /// applied, so no checkpoint may run on any path, or the changelog would reflect it at a
    /// position that still replays it. A restart resumes from the last checkpoint, as after a
    /// crash.
    Aborted(PipelineError),
    /// Shutdown while the producer queue was full (the broker stopped acknowledging): as
    /// [`Stop::Aborted`], but what was asked for.
    GaveUp,
}

impl Stop {
    fn from_error(e: PipelineError) -> Stop {
        match e {
            PipelineError::ShutdownDuringRestore => Stop::Requested,
            PipelineError::Sink(SinkError::ShuttingDown) => Stop::GaveUp,
            e @ PipelineError::Sink(_) => Stop::Aborted(e),
            e => Stop::Failed(e),
        }
    }
}

/// A received message, once the part that needs no waiting is done.
enum Received {
    Handled,
    Failed(PipelineError),
    /// Its partition is not restored here yet: restore, then handle (a rare, detached copy).
    NeedsPartition(OwnedMessage),
    ConsumerError,
}

struct Pipeline<'a> {
    cfg: &'a PipelineConfig,
    consumer: Arc<Source>,
    stats: StatsByPartition,
    sink: Sink,
    /// One engine per assigned input partition (shared with the checkpoint, which the revoke
    /// callback runs before the partitions go).
    partitions: Arc<Mutex<Partitions>>,
    checkpoint: Arc<Checkpoint>,
    restorer: Restorer,
    clock: PartitionClocks,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    assigned: Vec<i32>,
    last_error: Option<Instant>,
    report: PipelineReport,
    engine_stats: EngineStatsExport,
    scored: Vec<Scored>,
    /// What carries over between the pipelines of this process.
    continuity: Continuity,
    /// The input topic's offsets as the broker sees them.
    view: BrokerView,
    idle: IdleWatch,
    /// Every assigned partition was consumed up to its high watermark at the last refresh.
    caught_up: bool,
    refusals: telemetry::RefusalWatch,
    state_view: Arc<StateView>,
}

/// What a pipeline shares with the process around it.
struct Shared {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    continuity: Continuity,
    state_view: Arc<StateView>,
}

/// Runs one pipeline until `shutdown` turns true, then checkpoints and returns.
///
/// `state_view` is where the lookup API reads this pipeline's engines while it runs.
/// `models` carries the model to score with; when a new one is published (hot reload, see
/// [`crate::model::reload`]) the loop swaps it into the engine between two messages, so user
/// state is kept and no event is skipped. A closed channel just means no more reloads.
pub async fn run(
    cfg: PipelineConfig,
    mut models: watch::Receiver<Arc<Model>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    continuity: Continuity,
    state_view: Arc<StateView>,
    shutdown: watch::Receiver<bool>,
) -> Result<PipelineReport, PipelineError> {
    let model = Arc::clone(&models.borrow_and_update());
    let shared = Shared {
        metrics,
        ready,
        continuity,
        state_view,
    };
    let mut p = Pipeline::start(&cfg, model, shared, shutdown.clone()).await?;
    let stop = p.drive(models, shutdown).await;
    p.finish(stop).await
}

impl<'a> Pipeline<'a> {
    /// Creates the clients and the changelog topic, and subscribes.
    async fn start(
        cfg: &'a PipelineConfig,
        model: Arc<Model>,
        shared: Shared,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Pipeline<'a>, PipelineError> {
        let Shared {
            metrics,
            ready,
            continuity,
            state_view,
        } = shared;
        let topics = SinkTopics {
            alerts: cfg.alert_topic.clone(),
            dlq: cfg.dlq_topic.clone(),
            control: cfg.engine.policy.control().topic.clone(),
            outcomes: cfg.outcome_topic.clone(),
            scores: cfg.scores_topic.clone(),
        };
        let sink = Sink::new(
            &cfg.brokers,
            topics,
            &cfg.kafka_options,
            Arc::clone(&metrics),
        )?
        .abort_on(shutdown.clone());
        let (brokers, options) = (&cfg.brokers, &cfg.kafka_options);
        let timeout = Duration::from_secs(30);
        if let Some(changelog) = &cfg.changelog_topic {
            state::ensure_changelog(brokers, options, &cfg.input_topic, changelog, timeout).await?;
        }
        if let Some(scores) = &cfg.scores_topic {
            state::ensure_scores_topic(brokers, options, &cfg.input_topic, scores, timeout).await?;
        }
        // The engines keep the table exactly when it has somewhere to go.
        let engine = crate::engine::EngineConfig {
            score_table: cfg.scores_topic.is_some(),
            ..cfg.engine.clone()
        };
        let partitions = Arc::new(Mutex::new(Partitions::new(
            engine,
            Some(Arc::clone(&model)),
            cfg.changelog_topic.clone(),
        )));
        state_view.attach(Arc::clone(&partitions));
        let checkpoint = Arc::new(Checkpoint::new(
            &cfg.input_topic,
            sink.clone(),
            Arc::clone(&partitions),
            Arc::clone(&metrics),
        ));
        let (consumer, stats) =
            source::create(cfg, Arc::clone(&checkpoint)).map_err(PipelineError::Consumer)?;
        consumer
            .subscribe(&[&cfg.input_topic])
            .map_err(|source| PipelineError::Subscribe {
                topic: cfg.input_topic.clone(),
                source,
            })?;
        let consumer = Arc::new(consumer);
        let view = BrokerView::start(
            client::config(&cfg.brokers, &[], &cfg.kafka_options),
            &cfg.group,
            &cfg.input_topic,
            BROKER_VIEW_EVERY,
        )
        .map_err(PipelineError::Consumer)?;
        let idle = IdleWatch::new(IdleLimits::for_session_timeout(
            Duration::from_millis(cfg.session_timeout_ms),
            cfg.unassigned_timeout,
        ));
        telemetry::ModelInUse(&model).emit(&metrics);
        telemetry::MappingInUse {
            model: &model,
            service: cfg.decoder.fingerprint(),
        }
        .emit(&metrics);
        metrics.register_policy(&cfg.engine.policy);
        tracing::info!(
            brokers = %cfg.brokers, group = %cfg.group, input = %cfg.input_topic,
            alerts = %cfg.alert_topic, dlq = %cfg.dlq_topic, model = model.version(),
            changelog = cfg.changelog_topic.as_deref().unwrap_or("(none: state in memory only)"),
            "pipeline started"
        );
        let restorer = Restorer {
            brokers: cfg.brokers.clone(),
            kafka_options: cfg.kafka_options.clone(),
            input_topic: cfg.input_topic.clone(),
            changelog: cfg.changelog_topic.clone(),
            consumer: Arc::clone(&consumer),
            metrics: Arc::clone(&metrics),
            shutdown,
        };
        Ok(Pipeline {
            cfg,
            consumer,
            stats,
            sink,
            partitions,
            checkpoint,
            restorer,
            clock: PartitionClocks::default(),
            metrics,
            ready,
            assigned: Vec::new(),
            last_error: None,
            report: PipelineReport::default(),
            engine_stats: EngineStatsExport::default(),
            scored: Vec::new(),
            continuity,
            view,
            idle,
            caught_up: false,
            refusals: telemetry::RefusalWatch::default(),
            state_view,
        })
    }

    /// The loop: messages, model reloads, ticks and checkpoints, until something stops it.
    async fn drive(
        &mut self,
        mut models: watch::Receiver<Arc<Model>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Stop {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut commit = tokio::time::interval(self.cfg.commit_interval);
        commit.tick().await;
        let consumer = Arc::clone(&self.consumer);
        let mut reloads_open = true;
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => return Stop::Requested,
                // Before `recv`: under a steady stream a new model must not wait behind messages.
                changed = models.changed(), if reloads_open => {
                    match changed {
                        Ok(()) => self.set_model(Arc::clone(&models.borrow_and_update())),
                        Err(_) => reloads_open = false,
                    }
                    Ok(())
                }
                msg = consumer.recv() => match self.receive(msg) {
                    Received::Handled => Ok(()),
                    Received::Failed(e) => Err(e),
                    Received::NeedsPartition(m) => self.handle_after_restore(&m).await,
                    Received::ConsumerError => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok(())
                    }
                },
                _ = tick.tick() => self.on_tick().await,
                _ = commit.tick() => self.run_checkpoint(Mode::Background),
            };
            if let Err(e) = step {
                return Stop::from_error(e);
            }
        }
    }

    /// The final checkpoint, as `stop` allows, then leaving the group.
    async fn finish(mut self, stop: Stop) -> Result<PipelineReport, PipelineError> {
        self.state_view.detach();
        self.ready.store(false, Ordering::Relaxed);
        self.metrics.ready.set(0);
        self.export_engine_stats();
        let result = match stop {
            Stop::Requested => self.final_checkpoint().await,
            Stop::Failed(e) => {
                // Whatever the final checkpoint says, the pipeline failed for `e`.
                let _ = self.final_checkpoint().await;
                Err(e)
            }
            Stop::Aborted(e) => {
                self.checkpoint.block(Blocked::HalfAppliedMessage);
                Err(e)
            }
            Stop::GaveUp => {
                // Nothing past the last checkpoint is committed, which an orchestrator must
                // see in the exit status.
                self.checkpoint.block(Blocked::HalfAppliedMessage);
                Err(PipelineError::FinalCheckpoint(QUEUE_FULL))
            }
        };
        self.consumer.unsubscribe();
        tracing::info!(
            messages = self.report.messages,
            rejected = self.report.rejected,
            alerts = self.report.alerts,
            "pipeline stopped"
        );
        result.map(|()| self.report)
    }

    /// Writes the changelog, waits for the producer and commits, on the blocking pool (the
    /// wait may last the whole shutdown timeout).
    async fn final_checkpoint(&self) -> Result<(), PipelineError> {
        let (checkpoint, consumer) = (Arc::clone(&self.checkpoint), Arc::clone(&self.consumer));
        let timeout = self.cfg.shutdown_timeout;
        let job = move || checkpoint.run(&*consumer, Mode::Blocking { timeout });
        let outcome = match tokio::task::spawn_blocking(job).await {
            Ok(outcome) => outcome,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match outcome {
            Err(CheckpointError::Changelog(SinkError::ShuttingDown)) => {
                Err(PipelineError::FinalCheckpoint(QUEUE_FULL))
            }
            Ok(CheckpointOutcome::Skipped { reason }) => {
                Err(PipelineError::FinalCheckpoint(reason.as_str()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Swaps in a reloaded model: user state, timers and episodes are untouched; the next score
    /// (event or timer) uses the new model.
    fn set_model(&mut self, model: Arc<Model>) {
        let mut partitions = lock(&self.partitions);
        let previous = partitions
            .model()
            .map(|m| m.version().to_string())
            .unwrap_or_default();
        telemetry::ModelInUse(&model).emit(&self.metrics);
        telemetry::MappingInUse {
            model: &model,
            service: self.cfg.decoder.fingerprint(),
        }
        .emit(&self.metrics);
        tracing::info!(previous_version = %previous, version = model.version(), "pipeline scores with the reloaded model");
        partitions.set_model(Some(model));
    }

    /// Handles a message at once if its partition's state is here.
    fn receive(&mut self, msg: KafkaResult<BorrowedMessage<'_>>) -> Received {
        match msg {
            Ok(m) => {
                let partition = m.partition();
                if self.assigned.contains(&partition) && lock(&self.partitions).contains(partition)
                {
                    match self.handle(&m) {
                        Ok(()) => Received::Handled,
                        Err(e) => Received::Failed(e),
                    }
                } else {
                    Received::NeedsPartition(m.detach())
                }
            }
            Err(e) => {
                self.last_error = Some(Instant::now());
                tracing::warn!(error = %e, "consumer error; retrying");
                Received::ConsumerError
            }
        }
    }

    /// Restores a message's partition (unless it is no longer assigned here), then handles it.
    async fn handle_after_restore(&mut self, m: &OwnedMessage) -> Result<(), PipelineError> {
        let partition = m.partition();
        self.refresh_assignment().await?;
        if !self.assigned.contains(&partition) {
            tracing::debug!(
                partition,
                offset = m.offset(),
                "message of a partition no longer assigned here; left to its new owner"
            );
            return Ok(());
        }
        // A partition's events apply only on top of its restored state.
        self.ensure_restored(partition).await?;
        self.handle(m)
    }

    /// Decodes a message, applies it to its partition's engine and hands its effects to the
    /// producer; then the partition's position moves past it.
    fn handle<M: Message>(&mut self, m: &M) -> Result<(), PipelineError> {
        let started = Instant::now();
        self.report.messages += 1;
        let partition = m.partition();
        // A fresh pipeline reads again from the last checkpoint: apply, but count once.
        let first_time = self.continuity.first_time(partition, m.offset());
        let decoded = match m.payload() {
            Some(payload) => event::check_size(payload, self.cfg.max_event_bytes).and_then(|()| {
                self.cfg
                    .decoder
                    .decode(payload, wall_now(), self.cfg.max_future_skew)
            }),
            None => Err(Rejection::new(RejectReason::MalformedJson, NULL_PAYLOAD)),
        };
        if first_time {
            self.refusals
                .record(decoded.is_err(), self.cfg.decoder.fingerprint());
        }
        match decoded {
            Err(rejection) => self.dead_letter(m, &rejection, first_time)?,
            Ok(Decoded::Ignored { source_type }) => {
                if first_time {
                    telemetry::EventIgnored {
                        source_type: &source_type,
                    }
                    .emit(&self.metrics);
                }
            }
            Ok(Decoded::Event(ev)) => {
                self.clock.observe(partition, ev.ts);
                self.advance_clock()?;
                let t = Instant::now();
                let applied = match lock(&self.partitions).task_mut(partition) {
                    Some(task) => task.engine.apply(&ev),
                    None => {
                        unreachable!("a message is handled only once its partition is restored")
                    }
                };
                self.metrics
                    .scoring_seconds
                    .observe(t.elapsed().as_secs_f64());
                match applied {
                    Err(rejection) => self.dead_letter(m, &rejection, first_time)?,
                    Ok(Applied::Duplicate) => {}
                    Ok(Applied::Erased) => {
                        self.count_applied(m, ev.kind, true, first_time);
                        self.publish_drained()?;
                    }
                    Ok(Applied::Updated { scored }) => {
                        self.count_applied(m, ev.kind, false, first_time);
                        if let Some(s) = scored {
                            self.publish(&s)?;
                        }
                        self.publish_drained()?;
                    }
                }
            }
        }
        // Effects are enqueued: the checkpoint may commit past this message once they are
        // acknowledged.
        if let Some(task) = lock(&self.partitions).task_mut(partition) {
            task.position = m.offset() + 1;
        }
        self.metrics
            .event_processing_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Counts a valid event folded into state, unless a previous pipeline of this process
    /// already did.
    fn count_applied<M: Message>(&self, m: &M, kind: EventKind, erased: bool, first_time: bool) {
        if first_time {
            telemetry::EventApplied {
                kind,
                erased,
                null_key: m.key().is_none(),
            }
            .emit(&self.metrics);
        }
    }

    fn dead_letter<M: Message>(
        &mut self,
        m: &M,
        rejection: &Rejection,
        first_time: bool,
    ) -> Result<(), PipelineError> {
        self.report.rejected += 1;
        if first_time {
            telemetry::EventRejected {
                rejection,
                partition: m.partition(),
                offset: m.offset(),
            }
            .emit(&self.metrics);
        }
        let source = SourceRef {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
        };
        let how = self.sink.dead_letter(m.payload(), &source, rejection)?;
        telemetry::DeadLettered {
            how: &how,
            partition: m.partition(),
            offset: m.offset(),
        }
        .emit(&self.metrics);
        Ok(())
    }

    fn publish(&mut self, s: &Scored) -> Result<(), PipelineError> {
        telemetry::UserScored(s).emit(&self.metrics);
        if let Some(alert) = &s.alert {
            self.sink.alert(alert)?;
            self.report.alerts += 1;
            telemetry::AlertPublished { scored: s, alert }.emit(&self.metrics);
        }
        Ok(())
    }

    /// Publishes (where a topic is set) and counts what the engines queued besides scorings:
    /// outcomes, and churn-risk table rows and tombstones.
    fn publish_drained(&mut self) -> Result<(), PipelineError> {
        let mut outcomes = Vec::new();
        let mut table = Vec::new();
        {
            let mut partitions = lock(&self.partitions);
            partitions.drain_outcomes(&mut outcomes);
            partitions.drain_table(&mut table);
        }
        for o in &outcomes {
            self.sink.outcome(o)?;
            telemetry::OutcomeDecided(o).emit(&self.metrics);
        }
        for change in &table {
            self.sink.score_table(change)?;
            telemetry::ScoreTablePublished(change).emit(&self.metrics);
        }
        Ok(())
    }

    /// Moves each partition's engine clock as far as that partition's progress allows; fires
    /// due timers.
    ///
    /// A partition with a backlog moves on its own latest event time, so a user's timer never
    /// fires ahead of events of that user's partition that are still unread: which alerts exist
    /// does not depend on how fast each partition is fetched. A caught-up partition moves with
    /// the wall clock (see [`PartitionClocks::partition_now`]).
    fn advance_clock(&mut self) -> Result<(), PipelineError> {
        let wall = wall_now();
        self.scored.clear();
        let mut scored = std::mem::take(&mut self.scored);
        let clock = &self.clock;
        lock(&self.partitions).advance(|p| clock.partition_now(p, wall), &mut scored);
        for s in &scored {
            self.publish(s)?;
        }
        self.publish_drained()?;
        self.scored = scored;
        Ok(())
    }

    fn export_engine_stats(&mut self) {
        let totals = lock(&self.partitions).totals(self.sink.in_flight());
        self.engine_stats.emit(&self.metrics, totals);
    }

    /// Every 200 ms: assignment and progress, background checkpoints now acknowledged, engine
    /// totals, and timers due.
    async fn on_tick(&mut self) -> Result<(), PipelineError> {
        self.refresh_progress().await?;
        self.run_checkpoint(Mode::Settle)?;
        self.export_engine_stats();
        self.advance_clock()
    }

    /// Reads the current assignment. Must run before the clock may advance on a partition's
    /// events: a clock that does not know every assigned partition would move past the backlog of
    /// one that has not delivered yet. Newly assigned partitions are restored here, so that even
    /// a partition that delivers nothing gets its silent users' timers back.
    async fn refresh_assignment(&mut self) -> Result<(), PipelineError> {
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
            self.metrics.consumer_lag.reset();
            // Gone without a revoke callback (cannot normally happen): nothing to checkpoint.
            let stale: Vec<i32> = lock(&self.partitions)
                .partitions()
                .into_iter()
                .filter(|p| !parts.contains(p))
                .collect();
            self.checkpoint.forget(&stale);
            self.assigned = parts;
            self.state_view.set_assignment(&self.assigned, None);
            for p in self.assigned.clone() {
                self.ensure_restored(p).await?;
            }
        }
        Ok(())
    }

    /// Installs the state of `partition` if this instance has none yet: restored from the
    /// changelog up to the committed input offset, or empty without a changelog. Not ready
    /// meanwhile.
    async fn ensure_restored(&mut self, partition: i32) -> Result<(), PipelineError> {
        if lock(&self.partitions).contains(partition) {
            return Ok(());
        }
        self.ready.store(false, Ordering::Relaxed);
        self.metrics.ready.set(0);
        self.metrics.restoring_partitions.inc();
        let partitions = Arc::clone(&self.partitions);
        let last_error = &mut self.last_error;
        let restored = self
            .restorer
            .restore(
                partition,
                || lock(&partitions).new_engine(),
                || *last_error = Some(Instant::now()),
            )
            .await;
        self.metrics.restoring_partitions.dec();
        let restored = restored?;
        lock(&self.partitions).insert(partition, restored.engine, restored.committed.max(0));
        Ok(())
    }

    /// Refreshes assignment, caught-up flags, lag and readiness from librdkafka.
    async fn refresh_progress(&mut self) -> Result<(), PipelineError> {
        self.refresh_assignment().await?;
        let stats = lock(&self.stats).clone();
        let view = self.view.latest();
        if let Some(v) = &view {
            self.state_view
                .set_assignment(&self.assigned, Some(v.partitions.len()));
        }
        let mut all_caught_up = !self.assigned.is_empty();
        for &p in &self.assigned {
            let Some(s) = stats.get(&p).filter(|s| s.hi_offset >= 0) else {
                // Not fetched from yet: lag from the broker's watermarks, so a waiting backlog
                // does not read as 0.
                all_caught_up = false;
                self.lag_before_first_fetch(p, view.as_ref());
                continue;
            };
            let position = [
                lock(&self.partitions).position(p).unwrap_or(-1),
                s.app_offset,
                s.committed_offset,
            ]
            .into_iter()
            .max()
            .unwrap_or(-1)
            .max(0);
            let caught_up = position >= s.hi_offset;
            all_caught_up &= caught_up;
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
            telemetry::PartitionLag {
                partition: p,
                lag: s.hi_offset - position,
            }
            .emit(&self.metrics);
        }
        let healthy = self
            .last_error
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
        let restored = {
            let partitions = lock(&self.partitions);
            self.assigned.iter().all(|p| partitions.contains(*p))
        };
        self.caught_up = all_caught_up;
        let ready =
            !self.assigned.is_empty() && healthy && restored && self.checkpoints_get_through();
        self.ready.store(ready, Ordering::Relaxed);
        telemetry::Readiness {
            ready,
            assigned: self.assigned.len(),
        }
        .emit(&self.metrics);
        self.watch_idle(view.as_ref());
        Ok(())
    }

    /// The lag of partition `p` before its first fetch came back: the broker's high watermark
    /// against the position the pipeline resumed at (or the group's committed offset).
    fn lag_before_first_fetch(&self, p: i32, view: Option<&InputView>) {
        let Some(b) = view.and_then(|v| v.partitions.get(&p)) else {
            return;
        };
        let resumed_at = lock(&self.partitions).position(p).unwrap_or(-1);
        let position = resumed_at.max(b.committed).max(b.low);
        telemetry::PartitionLag {
            partition: p,
            lag: b.high - position,
        }
        .emit(&self.metrics);
    }

    /// Runs a checkpoint; one that gets through with real progress (offsets committed, or
    /// nothing to commit while caught up) shows the process is past whatever stopped a previous
    /// pipeline.
    fn run_checkpoint(&mut self, mode: Mode) -> Result<(), PipelineError> {
        // A settle with no checkpoint waiting says nothing about the broker: only one that
        // settled a checkpoint (or opened and settled one) shows it acknowledges.
        let settles_one = mode != Mode::Settle || self.checkpoint.oldest_waiting().is_some();
        let outcome = self.checkpoint.run(&*self.consumer, mode)?;
        let progress = match outcome {
            CheckpointOutcome::Committed => true,
            CheckpointOutcome::NothingToCommit => settles_one && self.caught_up,
            CheckpointOutcome::Deferred | CheckpointOutcome::Skipped { .. } => false,
        };
        if progress {
            self.continuity.checkpoint_succeeded();
        }
        Ok(())
    }

    /// Whether checkpoints get through: no pipeline was replaced since the last one that did,
    /// and the oldest waiting for the broker has waited under ten commit intervals (at least
    /// 30 s; the broker accepts messages but does not acknowledge them).
    fn checkpoints_get_through(&self) -> bool {
        let bound = (self.cfg.commit_interval * 10).max(Duration::from_secs(30));
        !self.continuity.restart_looping()
            && self
                .checkpoint
                .oldest_waiting()
                .is_none_or(|age| age <= bound)
    }

    /// Rejoins the group when this member owns nothing while input waits that nobody consumes,
    /// and reports itself not alive when that lasts (see [`super::idle`]).
    fn watch_idle(&mut self, view: Option<&InputView>) {
        let verdict = self.idle.update(self.assigned.len(), view, Instant::now());
        self.continuity.set_alive(verdict.alive);
        if verdict.rejoin {
            telemetry::GroupRejoin {
                stalled_partitions: verdict.stalled_partitions,
            }
            .emit(&self.metrics);
            self.consumer.unsubscribe();
            if let Err(e) = self.consumer.subscribe(&[&self.cfg.input_topic]) {
                tracing::warn!(error = %e, "cannot subscribe again; retrying at the next check");
            }
        }
    }
}
