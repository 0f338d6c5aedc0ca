//! Restoring a partition's state: reading its changelog partition into a fresh engine, up to
//! the group's committed input offset.
//!
//! A restore blocks on librdkafka (a `BaseConsumer` polled until the changelog's end, a
//! committed-offset lookup), for seconds on a large partition. It therefore runs on tokio's
//! blocking pool ([`tokio::task::spawn_blocking`]), never on a runtime worker: the metrics and
//! health endpoints and the rest of the runtime stay responsive meanwhile. The backoff between
//! failed attempts is an async wait ([`tokio::time::sleep`], raced against the shutdown signal)
//! so a restore waiting for a broker that is down never holds up SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::client;
use super::source::Source;
use super::state::{parse_changelog, StateError};
use super::telemetry::{self, Emit};
use super::PipelineError;
use crate::engine::changelog::RecordError;
use crate::engine::Engine;
use crate::metrics::Metrics;

/// What a restore read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RestoreReport {
    pub applied: u64,
    pub deleted: u64,
    /// Past the committed input position: their events will be consumed again.
    pub ignored: u64,
    pub corrupt: u64,
    pub seconds: f64,
}

/// Which changelog partition to read, and how far its records apply.
#[derive(Debug, Clone, Copy)]
pub struct ChangelogPartition<'a> {
    pub brokers: &'a str,
    pub kafka_options: &'a [(String, String)],
    pub topic: &'a str,
    pub partition: i32,
    /// The group's committed offset of the input partition (negative = nothing committed, so
    /// nothing applies).
    pub committed: i64,
    /// Give up when no record arrives for this long.
    pub stall_timeout: Duration,
}

/// Reads changelog partition `source.partition` from the beginning to its end into `engine`,
/// applying only records that reflect input before `source.committed`.
pub fn restore_partition(
    source: &ChangelogPartition<'_>,
    engine: &mut Engine,
    metrics: &Metrics,
) -> Result<RestoreReport, StateError> {
    let started = Instant::now();
    let err = |e| StateError::Restore {
        topic: source.topic.to_string(),
        partition: source.partition,
        source: e,
    };
    let consumer: BaseConsumer = client::config(
        source.brokers,
        &[
            // Assigned, never subscribed or committed: the group id is only required by
            // librdkafka.
            ("group.id", "churnguard-restore"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("fetch.queue.backoff.ms", "10"),
            // Tansu answers a fetch with about one record batch and holds it for the full
            // wait: short waits keep a restore from being paced by the broker's timer.
            ("fetch.wait.max.ms", "5"),
            ("isolation.level", "read_uncommitted"),
        ],
        source.kafka_options,
    )
    .create()
    .map_err(err)?;
    let (low, high) = consumer
        .fetch_watermarks(source.topic, source.partition, Duration::from_secs(10))
        .map_err(err)?;
    let mut report = RestoreReport::default();
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(source.topic, source.partition, Offset::Beginning)
            .map_err(err)?;
        consumer.assign(&tpl).map_err(err)?;
        metrics.restore_remaining.add(high - low);
        let read = read_to_end(&consumer, source, (low, high), engine, &mut report, metrics);
        metrics.restore_remaining.sub(read.remaining);
        read.result?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    telemetry::RestoreRead {
        applied: report.applied,
        deleted: report.deleted,
        ignored: report.ignored,
        corrupt: report.corrupt,
        seconds: report.seconds,
    }
    .emit(metrics);
    Ok(report)
}

/// How a read ended, and how much of `restore_remaining` it still has to take back.
struct Read {
    result: Result<(), StateError>,
    remaining: i64,
}

fn read_to_end(
    consumer: &BaseConsumer,
    source: &ChangelogPartition<'_>,
    (low, high): (i64, i64),
    engine: &mut Engine,
    report: &mut RestoreReport,
    metrics: &Metrics,
) -> Read {
    let mut at = low;
    let mut last_progress = Instant::now();
    let mut reported = high - low;
    while at < high {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            if last_progress.elapsed() > source.stall_timeout {
                let stalled = StateError::RestoreStalled {
                    topic: source.topic.to_string(),
                    partition: source.partition,
                    at,
                    high,
                    secs: source.stall_timeout.as_secs(),
                };
                return Read {
                    result: Err(stalled),
                    remaining: reported,
                };
            }
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, partition = source.partition, "changelog read error; retrying");
                continue;
            }
        };
        last_progress = Instant::now();
        at = msg.offset() + 1;
        if let Err(e) = apply(&msg, source, engine, report) {
            return Read {
                result: Err(e),
                remaining: reported,
            };
        }
        let remaining = (high - at).max(0);
        if reported - remaining >= 10_000 || remaining == 0 {
            metrics.restore_remaining.sub(reported - remaining);
            reported = remaining;
        }
    }
    Read {
        result: Ok(()),
        remaining: reported,
    }
}

/// Applies one changelog message to `engine`; only records written under other windows stop
/// the restore (skipping them would silently drop users' state).
fn apply<M: Message>(
    msg: &M,
    source: &ChangelogPartition<'_>,
    engine: &mut Engine,
    report: &mut RestoreReport,
) -> Result<(), StateError> {
    let partition = source.partition;
    match parse_changelog(msg) {
        Ok((_, _, position)) if position > source.committed => report.ignored += 1,
        Ok((user, None, _)) => {
            engine.forget(user);
            report.deleted += 1;
        }
        Ok((user, Some(record), _)) => match engine.restore(user, record) {
            Ok(()) => report.applied += 1,
            Err(e @ RecordError::WindowsMismatch { .. }) => {
                return Err(StateError::Windows {
                    topic: source.topic.to_string(),
                    partition,
                    source: e,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, partition, offset = msg.offset(), "corrupt changelog record skipped");
                report.corrupt += 1;
            }
        },
        Err(reason) => {
            tracing::warn!(
                partition,
                offset = msg.offset(),
                reason,
                "corrupt changelog record skipped"
            );
            report.corrupt += 1;
        }
    }
    Ok(())
}

/// The pipeline's restores: where the changelog is, and how to look up committed offsets.
pub struct Restorer {
    pub brokers: String,
    pub kafka_options: Vec<(String, String)>,
    pub input_topic: String,
    /// `None`: state lives in memory only, a partition starts empty.
    pub changelog: Option<String>,
    pub consumer: Arc<Source>,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
}

/// A partition's restored state.
pub struct Restored {
    pub engine: Engine,
    /// The group's committed offset it was restored to (-1 if none).
    pub committed: i64,
}

impl Restorer {
    /// Restores `partition` into `engine`. A failed attempt (broker unreachable) is retried
    /// with backoff until one succeeds or shutdown is requested: processing the partition
    /// without its state would be wrong, and exiting would not bring the broker back.
    /// `on_failure` hears of every failed attempt (the pipeline is not healthy meanwhile).
    pub async fn restore(
        &self,
        partition: i32,
        new_engine: impl Fn() -> Engine,
        mut on_failure: impl FnMut(),
    ) -> Result<Restored, PipelineError> {
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let error = match self.attempt(partition, new_engine()).await {
                Ok(restored) => return Ok(restored),
                // A configuration problem: retrying cannot help, and skipping would lose state.
                Err(e @ StateError::Windows { .. }) => return Err(e.into()),
                Err(e) => e,
            };
            on_failure();
            tracing::warn!(error = %error, partition, attempt, retry_in = ?backoff, "restore failed; retrying");
            let mut shutdown = self.shutdown.clone();
            if *shutdown.borrow_and_update() {
                return Err(PipelineError::ShutdownDuringRestore);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return Err(PipelineError::ShutdownDuringRestore),
            }
            backoff = (backoff * 2).min(Duration::from_secs(8));
            attempt += 1;
        }
    }

    /// One attempt, on the blocking pool.
    async fn attempt(&self, partition: i32, mut engine: Engine) -> Result<Restored, StateError> {
        let consumer = Arc::clone(&self.consumer);
        let metrics = Arc::clone(&self.metrics);
        let (brokers, options) = (self.brokers.clone(), self.kafka_options.clone());
        let (input, changelog) = (self.input_topic.clone(), self.changelog.clone());
        let job = move || -> Result<Restored, StateError> {
            let committed = committed_offset(&consumer, &input, partition)?;
            let Some(topic) = changelog else {
                return Ok(Restored { engine, committed });
            };
            let source = ChangelogPartition {
                brokers: &brokers,
                kafka_options: &options,
                topic: &topic,
                partition,
                committed,
                stall_timeout: Duration::from_secs(30),
            };
            let report = restore_partition(&source, &mut engine, &metrics)?;
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
            Ok(Restored { engine, committed })
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// The group's committed offset of an input partition (-1 if none).
fn committed_offset(consumer: &Source, topic: &str, partition: i32) -> Result<i64, StateError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|source| StateError::Restore {
            topic: topic.to_string(),
            partition,
            source,
        })?;
    let offset = committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .unwrap_or(-1);
    Ok(offset)
}
