//! The inbound side: a consumer-group member with manual offset management.
//!
//! Offsets are never committed automatically (`enable.auto.commit=false`): the checkpoint
//! ([`super::checkpoint`]) commits them once the effects of the input they cover are
//! acknowledged, periodically from the pipeline and from the rebalance callback below before
//! partitions are given away.
//! librdkafka statistics are kept for lag and caught-up detection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::checkpoint::{Checkpoint, CheckpointOutcome, Mode};
use super::client;

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

/// librdkafka's last statistics per input partition.
pub type StatsByPartition = Arc<Mutex<HashMap<i32, PartitionStats>>>;

/// Consumer callbacks: checkpoint before revocation, keep statistics.
pub struct SourceContext {
    checkpoint: Arc<Checkpoint>,
    input_topic: String,
    flush_timeout: Duration,
    stats: StatsByPartition,
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
        if consumer.assignment_lost() {
            // Another member may already own them and have moved on: a changelog record or a
            // commit from here would overwrite newer state. Drop the state; the new owner
            // restores from the last checkpoint.
            tracing::warn!(partitions = ?revoked, "partitions lost (session timed out); state dropped without checkpoint");
            self.checkpoint.forget(&revoked);
            return;
        }
        // A full checkpoint, as the periodic one: every partition's changes, flush, commit (a
        // commit covers every partition, so every partition's changelog must be written first).
        let mode = Mode::Blocking {
            timeout: self.flush_timeout,
        };
        match self.checkpoint.run(consumer, mode) {
            Ok(CheckpointOutcome::Committed | CheckpointOutcome::NothingToCommit) => {
                tracing::info!(partitions = ?revoked, "checkpointed before revocation")
            }
            Ok(CheckpointOutcome::Skipped { reason }) => {
                tracing::warn!(partitions = ?revoked, reason = reason.as_str(), "checkpoint before revocation committed nothing")
            }
            Ok(CheckpointOutcome::Deferred) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint before revocation failed; not committing")
            }
        }
        self.checkpoint.forget(&revoked);
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
pub fn create(
    pipeline: &super::PipelineConfig,
    checkpoint: Arc<Checkpoint>,
) -> Result<(Source, StatsByPartition), KafkaError> {
    let stats = Arc::new(Mutex::new(HashMap::new()));
    let session_timeout = pipeline.session_timeout_ms.to_string();
    let fetch_wait = pipeline.fetch_wait_ms.to_string();
    let defaults = [
        ("group.id", pipeline.group.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", &session_timeout),
        ("statistics.interval.ms", "1000"),
        ("fetch.wait.max.ms", &fetch_wait),
        // The default 1000 ms backoff throttles a caught-up consumer's fetches; 100 ms keeps
        // latency low without busy polling.
        ("fetch.queue.backoff.ms", "100"),
        // Bounded prefetch: a burst does not grow memory without limit.
        ("queued.max.messages.kbytes", "65536"),
        // Incremental rebalancing: a member joining or leaving moves only the partitions that
        // change owner, so only their state is restored (eager rebalancing would revoke and
        // restore every partition of every member).
        ("partition.assignment.strategy", "cooperative-sticky"),
    ];
    let context = SourceContext {
        checkpoint,
        input_topic: pipeline.input_topic.clone(),
        flush_timeout: Duration::from_secs(10),
        stats: Arc::clone(&stats),
    };
    let consumer: Source = client::config(&pipeline.brokers, &defaults, &pipeline.kafka_options)
        .create_with_context(context)?;
    Ok((consumer, stats))
}
