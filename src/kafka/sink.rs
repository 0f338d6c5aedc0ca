//! Outbound messages: win-back alerts, outcomes, churn-risk table records, state changelog
//! records and dead-lettered input.
//!
//! Two idempotent producers share the work: a *prompt* one for what subscribers wait on (alerts,
//! outcomes; 5 ms linger) and a *bulk* one for what nobody waits on (state changelog, dead
//! letters, the churn-risk table; 100 ms linger). One producer for all cost 1.7x the CPU per event in the end-to-end
//! bench: librdkafka's broker thread wakes at every linger expiry of every partition with data,
//! and the changelog keeps many partitions busy. `send` only enqueues (the effects are then
//! "handed to the producer" and the input offset may be stored); a checkpoint commits once every
//! message of its epoch, on either producer, is acknowledged. A delivery that fails for good is
//! remembered, and the pipeline stops rather than commit past a lost message.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use sha2::{Digest, Sha256};

use super::client;
use super::telemetry::{self, DeadLetter, Emit};
use crate::alert::{OutcomeEvent, WinbackAlert};
use crate::engine::TableChange;
use crate::event::Rejection;
use crate::metrics::{Destination, Metrics};
use crate::policy::ExperimentArm;

/// Low bits of a delivery opaque that hold the destination; the epoch slot sits above them.
const DESTINATION_BITS: u32 = 3;

/// The delivery opaque of a message: `(epoch slot << DESTINATION_BITS) | destination`.
fn destination_bits(destination: Destination) -> usize {
    match destination {
        Destination::Alert => 0,
        Destination::DeadLetter => 1,
        Destination::Outcome => 2,
        Destination::Changelog => 3,
        Destination::Score => 4,
    }
}

fn destination_of(opaque: usize) -> Destination {
    match opaque & ((1 << DESTINATION_BITS) - 1) {
        1 => Destination::DeadLetter,
        2 => Destination::Outcome,
        3 => Destination::Changelog,
        4 => Destination::Score,
        _ => Destination::Alert,
    }
}

/// Checkpoint epochs tracked at once (a ring of counters): more than this many checkpoints
/// waiting for their deliveries means the broker is not acknowledging, and the pipeline stops
/// opening new ones until it does.
pub const EPOCH_RING: u64 = 64;

/// Counts failed deliveries (read at every checkpoint) and messages still unacknowledged per
/// checkpoint epoch, so a checkpoint can commit once its own messages are delivered instead of
/// blocking the consumer on a flush.
pub struct DeliveryContext {
    shared: Arc<DeliveryCounters>,
}

/// The counters both producers report into.
struct DeliveryCounters {
    metrics: Arc<Metrics>,
    failures: AtomicU64,
    /// Failures that are purges: messages still queued when a producer was dropped.
    purged: AtomicU64,
    outstanding: [AtomicI64; EPOCH_RING as usize],
}

/// Whether a delivery failed because the message was purged from the producer's queue (a
/// producer dropped before the broker acknowledged it), not because the broker refused it.
fn is_purge(err: &KafkaError) -> bool {
    matches!(
        err,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
        )
    )
}

impl Drop for DeliveryCounters {
    /// Runs once both producers are gone, after their purge callbacks: the one report of what
    /// they still held.
    fn drop(&mut self) {
        telemetry::PurgedAtClose(*self.purged.get_mut()).emit(&self.metrics);
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if let Err((err, _)) = result {
            self.shared.failures.fetch_add(1, Ordering::AcqRel);
            let purged = is_purge(err);
            if purged {
                self.shared.purged.fetch_add(1, Ordering::AcqRel);
            }
            telemetry::DeliveryFailed {
                destination: destination_of(opaque),
                error: err,
                purged,
            }
            .emit(&self.shared.metrics);
        }
        // Only after the failure is counted: a checkpoint that sees its epoch delivered must
        // also see the failure, or it would commit past a lost message.
        self.shared.outstanding[(opaque >> DESTINATION_BITS) % EPOCH_RING as usize]
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Errors of the outbound side.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create Kafka producer: {0}")]
    Create(KafkaError),
    #[error("cannot enqueue message for {topic}: {source}")]
    Enqueue { topic: String, source: KafkaError },
    #[error(
        "the state changelog record of user {user_id:?} on {topic} is larger than the producer's \
         message.max.bytes ({bytes} bytes with its key): raise message.max.bytes (--kafka-option) \
         and the topic's max.message.bytes, or bound the length of user ids"
    )]
    ChangelogRecordTooLarge {
        topic: String,
        /// The first characters of the id (the whole one may be huge).
        user_id: String,
        bytes: usize,
    },
    #[error("cannot encode alert: {0}")]
    Encode(#[from] serde_json::Error),
    /// The producer queue stayed full (the broker is not acknowledging) and shutdown was
    /// requested: waiting on would keep the process from ever exiting.
    #[error("shutdown requested while the producer queue was full; nothing past the last checkpoint is committed")]
    ShuttingDown,
}

/// Payload bytes kept of a refused message too large to dead-letter whole.
pub const DLQ_TRUNCATED_BYTES: usize = 1024;

/// Key bytes kept of such a message.
const DLQ_TRUNCATED_KEY_BYTES: usize = 256;

/// The DLQ reason of a refused message dead-lettered truncated.
pub const DLQ_TOO_LARGE: &str = "too_large";

/// What goes to the dead-letter topic besides the source position headers.
struct DlqCopy<'a> {
    /// `None` for a record without a value: the copy stays null.
    payload: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    headers: Vec<(&'static str, String)>,
}

/// Whether the producer refused a message as larger than its `message.max.bytes`.
fn is_too_large(e: &SinkError) -> bool {
    matches!(
        e,
        SinkError::Enqueue {
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            ..
        }
    )
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Header of a changelog tombstone: the input position it reflects, i.e. the next input offset
/// of its partition when it was written (the offset the same checkpoint commits).
pub const INPUT_POSITION_HEADER: &str = "churnguard.input_position";

/// First byte of a changelog record's value (see [`Sink::changelog`]).
pub const CHANGELOG_VALUE_FORMAT: u8 = 1;

/// Where the sink writes.
#[derive(Debug, Clone)]
pub struct SinkTopics {
    /// Win-back alerts (treatment, and control unless `control` is set).
    pub alerts: String,
    /// Refused input.
    pub dlq: String,
    /// Control-arm alerts, when they go to a topic of their own.
    pub control: Option<String>,
    /// Outcome events, when published at all.
    pub outcomes: Option<String>,
    /// The churn-risk table (compacted, keyed by user id), when kept at all.
    pub scores: Option<String>,
}

/// The producers for alert, outcome, dead-letter and changelog topics.
#[derive(Clone)]
pub struct Sink {
    /// Alerts and outcomes: subscribers wait for them.
    prompt: ThreadedProducer<DeliveryContext>,
    /// Changelog records and dead letters: throughput over latency.
    bulk: ThreadedProducer<DeliveryContext>,
    counters: Arc<DeliveryCounters>,
    topics: SinkTopics,
    /// The open checkpoint epoch: messages enqueued now belong to it.
    epoch: Arc<AtomicU64>,
    /// Checked while waiting for room in a full queue.
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Source coordinates of a message, carried into the DLQ.
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

impl Sink {
    /// Creates the idempotent producers (librdkafka retries until delivered:
    /// `message.timeout.ms` = 0 means no give-up, so a broker outage delays rather than loses).
    /// `extra` settings apply to both and win over the defaults here.
    pub fn new(
        brokers: &str,
        topics: SinkTopics,
        extra: &[(String, String)],
        metrics: Arc<Metrics>,
    ) -> Result<Sink, SinkError> {
        let counters = Arc::new(DeliveryCounters {
            metrics,
            failures: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            outstanding: std::array::from_fn(|_| AtomicI64::new(0)),
        });
        let producer = |linger_ms: &str| {
            let defaults = [
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "0"),
                ("linger.ms", linger_ms),
                ("queue.buffering.max.messages", "200000"),
            ];
            client::config(brokers, &defaults, extra)
                .create_with_context(DeliveryContext {
                    shared: Arc::clone(&counters),
                })
                .map_err(SinkError::Create)
        };
        Ok(Sink {
            prompt: producer("5")?,
            bulk: producer("100")?,
            counters,
            topics,
            epoch: Arc::new(AtomicU64::new(1)),
            shutdown: None,
        })
    }

    /// Makes enqueueing give up ([`SinkError::ShuttingDown`]) instead of waiting for room once
    /// `shutdown` turns true: with the broker down and the queue full, a wait would never end.
    pub fn abort_on(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Sink {
        self.shutdown = Some(shutdown);
        self
    }

    /// Enqueues an alert keyed by user id, with schema version and alert id in headers; a
    /// control-arm alert goes to the control topic when one is configured.
    pub fn alert(&self, alert: &WinbackAlert) -> Result<(), SinkError> {
        let topic = match (&self.topics.control, alert.experiment_arm) {
            (Some(control), ExperimentArm::Control) => control,
            _ => &self.topics.alerts,
        };
        let payload = serde_json::to_vec(alert)?;
        self.keyed(
            topic,
            Destination::Alert,
            &alert.user_id,
            alert.schema_version,
            &alert.alert_id.to_string(),
            &payload,
        )
    }

    /// Enqueues an outcome event keyed by user id (a no-op without an outcome topic).
    pub fn outcome(&self, outcome: &OutcomeEvent) -> Result<(), SinkError> {
        let Some(topic) = &self.topics.outcomes else {
            return Ok(());
        };
        let payload = serde_json::to_vec(outcome)?;
        self.keyed(
            topic,
            Destination::Outcome,
            &outcome.user_id,
            outcome.schema_version,
            &outcome.alert_id.to_string(),
            &payload,
        )
    }

    /// Enqueues a churn-risk table record keyed by user id (a no-op without a scores topic): a
    /// row as JSON with its schema version in a header, a tombstone as a record without a value,
    /// which deletes the user's row from a compacted topic and from an upserting sink.
    pub fn score_table(&self, change: &TableChange) -> Result<(), SinkError> {
        let Some(topic) = &self.topics.scores else {
            return Ok(());
        };
        let record = BaseRecord::with_opaque_to(topic, destination_bits(Destination::Score))
            .key(change.user_id().as_bytes());
        match change {
            TableChange::Row(row) => {
                let payload = serde_json::to_vec(row)?;
                let version = row.schema_version.to_string();
                let headers = OwnedHeaders::new().insert(Header {
                    key: "churnguard.schema_version",
                    value: Some(version.as_bytes()),
                });
                self.send(record.payload(&payload[..]).headers(headers))
            }
            TableChange::Tombstone { .. } => self.send(record),
        }
    }

    /// A JSON record keyed by user id, with schema version and alert id in headers (what
    /// subscribers dedupe and route on without parsing the payload).
    fn keyed(
        &self,
        topic: &str,
        destination: Destination,
        user_id: &str,
        schema_version: u32,
        alert_id: &str,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        let version = schema_version.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "churnguard.schema_version",
                value: Some(version.as_bytes()),
            })
            .insert(Header {
                key: "churnguard.alert_id",
                value: Some(alert_id.as_bytes()),
            });
        let record = BaseRecord::with_opaque_to(topic, destination_bits(destination))
            .key(user_id.as_bytes())
            .payload(payload)
            .headers(headers);
        self.send(record)
    }

    /// Enqueues refused input: original bytes (a null payload stays null) and key, reason and
    /// source position in headers.
    ///
    /// A copy the producer refuses as larger than its `message.max.bytes` is dead-lettered
    /// truncated instead ([`DeadLetter::Truncated`]): the first [`DLQ_TRUNCATED_BYTES`] bytes,
    /// reason `too_large`, and the original's size and SHA-256 in headers (the original stays in
    /// the input topic at its source offset). A refused message must never stop the consumer.
    pub fn dead_letter(
        &self,
        payload: Option<&[u8]>,
        source: &SourceRef<'_>,
        rejection: &Rejection,
    ) -> Result<DeadLetter, SinkError> {
        let whole = DlqCopy {
            payload,
            key: source.key,
            headers: vec![
                ("churnguard.reason", rejection.reason.as_str().into()),
                ("churnguard.detail", rejection.detail.clone()),
            ],
        };
        match self.send_dead_letter(whole, source) {
            Err(e) if is_too_large(&e) => {}
            other => return other.map(|()| DeadLetter::Whole),
        }
        // Only a key can make a null record too large: its copy is truncated as an empty one.
        let payload = payload.unwrap_or_default();
        let digest: String = Sha256::digest(payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let truncated = DlqCopy {
            payload: Some(&payload[..payload.len().min(DLQ_TRUNCATED_BYTES)]),
            key: source
                .key
                .map(|k| &k[..k.len().min(DLQ_TRUNCATED_KEY_BYTES)]),
            headers: vec![
                ("churnguard.reason", DLQ_TOO_LARGE.into()),
                (
                    "churnguard.refused_reason",
                    rejection.reason.as_str().into(),
                ),
                ("churnguard.detail", prefix(&rejection.detail, 512).into()),
                ("churnguard.original_size", payload.len().to_string()),
                ("churnguard.original_sha256", digest.clone()),
            ],
        };
        self.send_dead_letter(truncated, source)?;
        Ok(DeadLetter::Truncated {
            original_size: payload.len(),
            sha256: digest,
        })
    }

    fn send_dead_letter(&self, copy: DlqCopy<'_>, source: &SourceRef<'_>) -> Result<(), SinkError> {
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let mut headers = OwnedHeaders::new();
        for (key, value) in &copy.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        for (key, value) in [
            ("churnguard.source_topic", source.topic),
            ("churnguard.source_partition", &partition),
            ("churnguard.source_offset", &offset),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record =
            BaseRecord::with_opaque_to(&self.topics.dlq, destination_bits(Destination::DeadLetter))
                .headers(headers);
        if let Some(p) = copy.payload {
            record = record.payload(p);
        }
        if let Some(k) = copy.key {
            record = record.key(k);
        }
        self.send(record)
    }

    /// Enqueues a state changelog record for `user_id` on the changelog partition matching its
    /// input partition, carrying the input position it reflects (a restore ignores records past
    /// the committed input offset). A record's value is [`CHANGELOG_VALUE_FORMAT`], the position
    /// (8 bytes, little-endian), then the engine's record; a tombstone (`None`, the user was
    /// erased or evicted) has no value, so its position goes in the [`INPUT_POSITION_HEADER`]
    /// header. Not a header on every record: Tansu's SQLite engine serves records with headers
    /// some 25 times slower, which would make restores crawl.
    pub fn changelog(
        &self,
        topic: &str,
        partition: i32,
        user_id: &str,
        record: Option<&[u8]>,
        input_position: i64,
    ) -> Result<(), SinkError> {
        let r = BaseRecord::with_opaque_to(topic, destination_bits(Destination::Changelog))
            .partition(partition)
            .key(user_id.as_bytes());
        let value_len = record.map_or(0, |b| 9 + b.len());
        let sent = match record {
            Some(bytes) => {
                let mut value = Vec::with_capacity(9 + bytes.len());
                value.push(CHANGELOG_VALUE_FORMAT);
                value.extend_from_slice(&input_position.to_le_bytes());
                value.extend_from_slice(bytes);
                self.send(r.payload(&value[..]))
            }
            None => {
                let offset = input_position.to_string();
                let headers = OwnedHeaders::new().insert(Header {
                    key: INPUT_POSITION_HEADER,
                    value: Some(offset.as_bytes()),
                });
                self.send(r.headers(headers))
            }
        };
        match sent {
            Err(e) if is_too_large(&e) => Err(SinkError::ChangelogRecordTooLarge {
                topic: topic.to_string(),
                user_id: user_id.chars().take(64).collect(),
                bytes: user_id.len() + value_len,
            }),
            other => other,
        }
    }

    /// Enqueues, waiting while librdkafka's queue is full (backpressure instead of unbounded
    /// memory).
    fn send(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), SinkError> {
        let producer = match destination_of(record.delivery_opaque) {
            Destination::Alert | Destination::Outcome => &self.prompt,
            Destination::DeadLetter | Destination::Changelog | Destination::Score => &self.bulk,
        };
        // Only the pipeline task enqueues, so the epoch cannot close between these two lines.
        let slot = (self.epoch.load(Ordering::Acquire) % EPOCH_RING) as usize;
        record.delivery_opaque |= slot << DESTINATION_BITS;
        let outstanding = &self.counters.outstanding[slot];
        outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
                        outstanding.fetch_sub(1, Ordering::AcqRel);
                        return Err(SinkError::ShuttingDown);
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, r)) => {
                    outstanding.fetch_sub(1, Ordering::AcqRel);
                    return Err(SinkError::Enqueue {
                        topic: r.topic.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Closes the open checkpoint epoch and returns its number: what is enqueued from now on
    /// belongs to the next one.
    pub fn close_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel)
    }

    /// The open epoch's number.
    pub fn open_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether every message of the closed epochs `from..=to` has been acknowledged (or failed:
    /// see [`Sink::failures`]). Meaningful for fewer than [`EPOCH_RING`] epochs.
    pub fn delivered(&self, from: u64, to: u64) -> bool {
        let outstanding = &self.counters.outstanding;
        (from..=to).all(|e| outstanding[(e % EPOCH_RING) as usize].load(Ordering::Acquire) <= 0)
    }

    /// Waits until everything enqueued is delivered (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + timeout;
        self.prompt.flush(timeout)?;
        self.bulk
            .flush(deadline.saturating_duration_since(std::time::Instant::now()))
    }

    /// Deliveries that failed for good since start.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Acquire)
    }

    /// Messages waiting in the producer queues.
    pub fn in_flight(&self) -> i32 {
        self.prompt.in_flight_count() + self.bulk.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_opaque_keeps_destination_and_epoch_slot_apart() {
        for destination in Destination::ALL {
            for slot in [0, 1, EPOCH_RING as usize - 1] {
                let opaque = destination_bits(destination) | slot << DESTINATION_BITS;
                assert_eq!(destination_of(opaque), destination);
                assert_eq!(opaque >> DESTINATION_BITS, slot);
            }
        }
    }

    /// A queue that cannot drain (no broker) and holds one message: the second send finds it
    /// full. With shutdown requested it must give up at once instead of waiting forever.
    #[test]
    fn a_full_queue_gives_up_once_shutdown_is_requested() {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let sink = Sink::new(
            "127.0.0.1:1",
            SinkTopics {
                alerts: "alerts".into(),
                dlq: "dlq".into(),
                control: None,
                outcomes: None,
                scores: None,
            },
            &[("queue.buffering.max.messages".into(), "1".into())],
            Arc::new(Metrics::new()),
        )
        .expect("producer without a broker")
        .abort_on(shutdown);
        sink.changelog("changelog", 0, "u1", Some(b"state"), 1)
            .expect("first message fits");
        stop.send(true).expect("receiver alive");
        let started = std::time::Instant::now();
        let second = sink.changelog("changelog", 0, "u2", Some(b"state"), 2);
        assert!(matches!(second, Err(SinkError::ShuttingDown)), "{second:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let slot = (sink.open_epoch() % EPOCH_RING) as usize;
        assert_eq!(
            sink.counters.outstanding[slot].load(Ordering::Acquire),
            1,
            "the first message is outstanding; the refused one is not counted"
        );
    }
}
