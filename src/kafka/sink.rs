//! Outbound messages: win-back alerts and dead-lettered input.
//!
//! One idempotent producer carries both. `send` only enqueues (the effects are then "handed to
//! the producer" and the input offset may be stored); delivery is confirmed by a flush at each
//! checkpoint, before offsets are committed. A delivery that fails for good is remembered, and
//! the pipeline stops rather than commit past a lost message.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::alert::{OutcomeEvent, WinbackAlert};
use crate::event::Rejection;
use crate::metrics::Metrics;
use crate::policy::ExperimentArm;

/// Where a produced message was going (delivery opaque, metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Destination {
    Alert = 0,
    DeadLetter = 1,
    Outcome = 2,
    Changelog = 3,
}

impl Destination {
    fn label(self) -> &'static str {
        match self {
            Destination::Alert => "alert",
            Destination::DeadLetter => "dlq",
            Destination::Outcome => "outcome",
            Destination::Changelog => "changelog",
        }
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
    metrics: Arc<Metrics>,
    failures: AtomicU64,
    outstanding: [AtomicI64; EPOCH_RING as usize],
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        // The opaque is `(epoch slot << 2) | destination`.
        if let Err((err, _)) = result {
            let dest = match opaque & 3 {
                o if o == Destination::DeadLetter as usize => Destination::DeadLetter,
                o if o == Destination::Outcome as usize => Destination::Outcome,
                o if o == Destination::Changelog as usize => Destination::Changelog,
                _ => Destination::Alert,
            };
            self.failures.fetch_add(1, Ordering::AcqRel);
            self.metrics
                .producer_delivery_errors
                .with_label_values(&[dest.label()])
                .inc();
            tracing::error!(error = %err, destination = dest.label(), "message delivery failed");
        }
        // Only after the failure is counted: a checkpoint that sees its epoch delivered must
        // also see the failure, or it would commit past a lost message.
        self.outstanding[(opaque >> 2) % EPOCH_RING as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Errors of the outbound side.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create Kafka producer: {0}")]
    Create(KafkaError),
    #[error("cannot enqueue message for {topic}: {source}")]
    Enqueue { topic: String, source: KafkaError },
    #[error("cannot encode alert: {0}")]
    Encode(#[from] serde_json::Error),
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
}

/// The producer for alert, dead-letter and outcome topics.
#[derive(Clone)]
pub struct Sink {
    producer: ThreadedProducer<DeliveryContext>,
    topics: SinkTopics,
    /// The open checkpoint epoch: messages enqueued now belong to it.
    epoch: Arc<AtomicU64>,
}

/// Source coordinates of a message, carried into the DLQ.
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

impl Sink {
    /// Creates the idempotent producer (librdkafka retries until delivered: `message.timeout.ms`
    /// = 0 means no give-up, so a broker outage delays rather than loses).
    pub fn new(
        brokers: &str,
        topics: SinkTopics,
        extra: &[(String, String)],
        metrics: Arc<Metrics>,
    ) -> Result<Sink, SinkError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in extra {
            cfg.set(k, v);
        }
        let producer = cfg
            .create_with_context(DeliveryContext {
                metrics,
                failures: AtomicU64::new(0),
                outstanding: std::array::from_fn(|_| AtomicI64::new(0)),
            })
            .map_err(SinkError::Create)?;
        Ok(Sink {
            producer,
            topics,
            epoch: Arc::new(AtomicU64::new(1)),
        })
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
            &alert.alert_id,
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
            &outcome.alert_id,
            &payload,
        )
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
        let record = BaseRecord::with_opaque_to(topic, destination as usize)
            .key(user_id.as_bytes())
            .payload(payload)
            .headers(headers);
        self.send(record)
    }

    /// Enqueues refused input: original bytes and key, reason and source position in headers.
    pub fn dead_letter(
        &self,
        payload: &[u8],
        source: &SourceRef<'_>,
        rejection: &Rejection,
    ) -> Result<(), SinkError> {
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "churnguard.reason",
                value: Some(rejection.reason.as_str().as_bytes()),
            })
            .insert(Header {
                key: "churnguard.detail",
                value: Some(rejection.detail.as_bytes()),
            })
            .insert(Header {
                key: "churnguard.source_topic",
                value: Some(source.topic.as_bytes()),
            })
            .insert(Header {
                key: "churnguard.source_partition",
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: "churnguard.source_offset",
                value: Some(offset.as_bytes()),
            });
        let mut record =
            BaseRecord::with_opaque_to(&self.topics.dlq, Destination::DeadLetter as usize)
                .payload(payload)
                .headers(headers);
        if let Some(k) = source.key {
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
        let r = BaseRecord::with_opaque_to(topic, Destination::Changelog as usize)
            .partition(partition)
            .key(user_id.as_bytes());
        match record {
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
        }
    }

    /// Enqueues, waiting while librdkafka's queue is full (backpressure instead of unbounded
    /// memory).
    fn send(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), SinkError> {
        // Only the pipeline task enqueues, so the epoch cannot close between these two lines.
        let slot = (self.epoch.load(Ordering::Acquire) % EPOCH_RING) as usize;
        record.delivery_opaque |= slot << 2;
        let outstanding = &self.producer.context().outstanding[slot];
        outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
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
        let outstanding = &self.producer.context().outstanding;
        (from..=to).all(|e| outstanding[(e % EPOCH_RING) as usize].load(Ordering::Acquire) <= 0)
    }

    /// Waits until everything enqueued is delivered (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Deliveries that failed for good since start.
    pub fn failures(&self) -> u64 {
        self.producer.context().failures.load(Ordering::Acquire)
    }

    /// Messages waiting in the producer queue.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}
