//! The inbound side: a consumer-group member with manual offset management.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after a message's effects are
//! handed to the producer, and committed (`enable.auto.commit=false`) only after the producer
//! has flushed, by the pipeline's checkpoint or by the rebalance callback below before
//! partitions are given away (after writing the state changelog, see [`super::state`]).
//! librdkafka statistics are kept for lag and caught-up detection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::sink::Sink;
use super::state::Partitions;
use crate::metrics::Metrics;

/// What librdkafka last reported about one input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    /// High watermark on the broker (-1 unknown).
    pub hi_offset: i64,
    /// Offset of the last message handed to the application + 1 (negative if none).
    pub app_offset: i64,
    /// Last committed offset (negative if none).
    pub committed_offset: i64,
}

/// Consumer callbacks: checkpoint before revocation, keep statistics.
pub struct SourceContext {
    sink: Sink,
    partitions: Arc<Mutex<Partitions>>,
    metrics: Arc<Metrics>,
    input_topic: String,
    flush_timeout: Duration,
    stats: Arc<Mutex<HashMap<i32, PartitionStats>>>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.input_topic) else {
            return;
        };
        let mut map = match self.stats.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.clear();
        for (p, s) in &topic.partitions {
            if *p >= 0 {
                map.insert(
                    *p,
                    PartitionStats {
                        hi_offset: s.hi_offset,
                        app_offset: s.app_offset,
                        committed_offset: s.committed_offset,
                    },
                );
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.input_topic)
            .map(|e| e.partition())
            .collect();
        let mut partitions = super::lock(&self.partitions);
        if consumer.assignment_lost() {
            // Another member may already own them and have moved on: a changelog record or a
            // commit from here would overwrite newer state. Drop the state; the new owner
            // restores from the last checkpoint.
            tracing::warn!(partitions = ?revoked, "partitions lost (session timed out); state dropped without checkpoint");
            partitions.retire(&revoked);
            return;
        }
        // A full checkpoint, as the periodic one: every partition's changes, flush, commit (a
        // commit covers every partition, so every partition's changelog must be written first).
        let written = partitions.write_changes(&self.sink, &self.metrics);
        // A delivery that failed (now or earlier) must never be committed past: its events are
        // consumed again by whoever owns the partition next.
        let delivered = written
            .map_err(|e| e.to_string())
            .and_then(|_| {
                self.sink
                    .flush(self.flush_timeout)
                    .map_err(|e| format!("producer flush: {e}"))
            })
            .and_then(|()| match self.sink.failures() {
                0 => Ok(()),
                n => Err(format!("{n} message(s) failed delivery")),
            });
        match delivered {
            Ok(()) => match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                    self.metrics.commits.with_label_values(&["ok"]).inc();
                    tracing::info!(partitions = ?revoked, "checkpointed before revocation")
                }
                Err(e) => {
                    self.metrics.commits.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "commit before revocation failed")
                }
            },
            Err(e) => {
                self.metrics.commits.with_label_values(&["skipped"]).inc();
                tracing::warn!(error = %e, "checkpoint before revocation failed; not committing")
            }
        }
        partitions.retire(&revoked);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// The consumer type of the pipeline.
pub type Source = StreamConsumer<SourceContext>;

/// Creates the consumer (not yet subscribed) and the shared statistics map.
#[allow(clippy::type_complexity)]
pub fn create(
    pipeline: &super::PipelineConfig,
    sink: Sink,
    partitions: Arc<Mutex<Partitions>>,
    metrics: Arc<Metrics>,
) -> Result<(Source, Arc<Mutex<HashMap<i32, PartitionStats>>>), KafkaError> {
    let stats = Arc::new(Mutex::new(HashMap::new()));
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &pipeline.brokers)
        .set("group.id", &pipeline.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            pipeline.session_timeout_ms.to_string(),
        )
        .set("statistics.interval.ms", "1000")
        .set("fetch.wait.max.ms", pipeline.fetch_wait_ms.to_string())
        // The default 1000 ms backoff throttles a caught-up consumer's fetches; 100 ms keeps
        // latency low without busy polling.
        .set("fetch.queue.backoff.ms", "100")
        // Bounded prefetch: a burst does not grow memory without limit.
        .set("queued.max.messages.kbytes", "65536")
        // Incremental rebalancing: a member joining or leaving moves only the partitions that
        // change owner, so only their state is restored (eager rebalancing would revoke and
        // restore every partition of every member).
        .set("partition.assignment.strategy", "cooperative-sticky");
    for (k, v) in &pipeline.kafka_options {
        cfg.set(k, v);
    }
    let context = SourceContext {
        sink,
        partitions,
        metrics,
        input_topic: pipeline.input_topic.clone(),
        flush_timeout: Duration::from_secs(10),
        stats: Arc::clone(&stats),
    };
    let consumer: Source = cfg.create_with_context(context)?;
    Ok((consumer, stats))
}
