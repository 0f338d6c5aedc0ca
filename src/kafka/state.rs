//! Durable state: one engine per input partition, whose changes go to a compacted changelog
//! topic at every checkpoint and come back when the partition is assigned (to this instance
//! after a restart, or to another one after a rebalance), as Kafka Streams and Quix do.
//!
//! The changelog has the input's partition count; a user's records go to the changelog
//! partition numbered like the input partition the user's events come from, so restoring input
//! partition `p` reads changelog partition `p` only. Each record carries, in a header, the input
//! position it reflects; the checkpoint writes records, flushes the producer, then commits that
//! position. A restore applies only records at or before the committed position: a record
//! written by a checkpoint whose commit never happened describes events that will be consumed
//! again, and applying it would count them twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};

use super::client;
use super::sink::{Sink, SinkError, CHANGELOG_VALUE_FORMAT, INPUT_POSITION_HEADER};
use super::telemetry::{self, Emit};
use crate::engine::changelog::{Change, RecordError};
use crate::engine::{Engine, EngineConfig, EngineCounters, Scored};
use crate::features::{StageStats, StageTransitions};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::scoring::Scorer;
use crate::Millis;

/// Why durable state could not be set up or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read metadata of topic {topic}: {source}")]
    Metadata { topic: String, source: KafkaError },
    #[error("input topic {0} does not exist (create it first: the changelog copies its partition count)")]
    InputMissing(String),
    #[error(
        "changelog topic {topic} has {has} partitions but input topic {input} has {needs}: a \
         user's state must live on the changelog partition numbered like their input partition; \
         recreate the changelog with {needs} partitions"
    )]
    PartitionMismatch {
        topic: String,
        has: usize,
        input: String,
        needs: usize,
    },
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("cannot restore partition {partition} from {topic}: {source}")]
    Restore {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error(
        "restore of partition {partition} from {topic} stalled at offset {at} of {high} (no record \
         for {secs} s)"
    )]
    RestoreStalled {
        topic: String,
        partition: i32,
        at: i64,
        high: i64,
        secs: u64,
    },
    /// The changelog was written under windows that keep less history than this instance's:
    /// skipping the records would silently drop users' state, so the restore stops instead.
    #[error("cannot restore partition {partition} from {topic}: {source}")]
    Windows {
        topic: String,
        partition: i32,
        source: RecordError,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// One input partition's state and how far into the input it reflects.
pub struct Task {
    pub engine: Engine,
    /// Next input offset to apply (the position its changelog records are stamped with).
    pub position: i64,
    /// The last position committed (or found committed when the partition was restored).
    committed: i64,
}

/// The engines of the assigned partitions, plus the totals of those handed away (so exported
/// counters never go backwards).
pub struct Partitions {
    tasks: BTreeMap<i32, Task>,
    engine_config: EngineConfig,
    model: Option<Arc<Model>>,
    /// Changelog topic; `None` = state lives in memory only (lost on restart).
    changelog: Option<String>,
    retired: EngineCounters,
    retired_transitions: StageTransitions,
}

fn add_counters(into: &mut EngineCounters, c: EngineCounters) {
    into.evicted += c.evicted;
    into.erased += c.erased;
    into.duplicates += c.duplicates;
    into.late_accepted += c.late_accepted;
    into.dedupe_forgotten += c.dedupe_forgotten;
}

impl Partitions {
    pub fn new(
        engine_config: EngineConfig,
        model: Option<Arc<Model>>,
        changelog: Option<String>,
    ) -> Partitions {
        Partitions {
            tasks: BTreeMap::new(),
            engine_config,
            model,
            changelog,
            retired: EngineCounters::default(),
            retired_transitions: StageTransitions::default(),
        }
    }

    /// The changelog topic, if state is durable.
    pub fn changelog(&self) -> Option<&str> {
        self.changelog.as_deref()
    }

    /// An empty engine for a newly assigned partition.
    pub fn new_engine(&self) -> Engine {
        let model = self.model.clone().map(|m| m as Arc<dyn Scorer>);
        let mut engine = Engine::new(self.engine_config.clone(), model);
        engine.track_changes(self.changelog.is_some());
        engine
    }

    /// The engine of each partition with state here.
    pub fn engines(&self) -> impl Iterator<Item = (i32, &Engine)> + '_ {
        self.tasks.iter().map(|(p, t)| (*p, &t.engine))
    }

    pub fn task_mut(&mut self, partition: i32) -> Option<&mut Task> {
        self.tasks.get_mut(&partition)
    }

    /// Next input offset of `partition`, if its state is here.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.tasks.get(&partition).map(|t| t.position)
    }

    pub fn contains(&self, partition: i32) -> bool {
        self.tasks.contains_key(&partition)
    }

    /// Partitions with state here.
    pub fn partitions(&self) -> Vec<i32> {
        self.tasks.keys().copied().collect()
    }

    /// Installs a partition's (restored) engine; `position` is the committed offset it was
    /// restored to.
    pub fn insert(&mut self, partition: i32, engine: Engine, position: i64) {
        self.tasks.insert(
            partition,
            Task {
                engine,
                position,
                committed: position,
            },
        );
    }

    /// Next input offset of every partition that moved since its last commit.
    pub fn uncommitted_positions(&self) -> Vec<(i32, i64)> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.position > t.committed)
            .map(|(&p, t)| (p, t.position))
            .collect()
    }

    /// The entries of `offsets` whose partition is still here.
    pub fn owned(&self, offsets: &[(i32, i64)]) -> Vec<(i32, i64)> {
        offsets
            .iter()
            .copied()
            .filter(|(p, _)| self.tasks.contains_key(p))
            .collect()
    }

    /// Records that `offsets` were committed.
    pub fn mark_committed(&mut self, offsets: &[(i32, i64)]) {
        for &(p, offset) in offsets {
            if let Some(task) = self.tasks.get_mut(&p) {
                task.committed = task.committed.max(offset);
            }
        }
    }

    /// Drops the state of partitions given away, keeping their totals.
    pub fn retire(&mut self, partitions: &[i32]) {
        for p in partitions {
            if let Some(task) = self.tasks.remove(p) {
                add_counters(&mut self.retired, task.engine.counters());
                self.retired_transitions
                    .add(&task.engine.stage_stats().transitions);
            }
        }
    }

    pub fn set_model(&mut self, model: Option<Arc<Model>>) {
        for task in self.tasks.values_mut() {
            task.engine
                .set_model(model.clone().map(|m| m as Arc<dyn Scorer>));
        }
        self.model = model;
    }

    pub fn model(&self) -> Option<&Arc<Model>> {
        self.model.as_ref()
    }

    /// Moves each partition's clock to its own time (`now_of(partition)`, `None` = not yet),
    /// collecting the timer scorings (see [`crate::clock`] for why each has its own).
    pub fn advance(&mut self, now_of: impl Fn(i32) -> Option<Millis>, out: &mut Vec<Scored>) {
        for (&partition, task) in &mut self.tasks {
            if let Some(now) = now_of(partition) {
                task.engine.advance(now, out);
            }
        }
    }

    pub fn drain_outcomes(&mut self, out: &mut Vec<crate::alert::OutcomeEvent>) {
        for task in self.tasks.values_mut() {
            task.engine.drain_outcomes(out);
        }
    }

    /// The churn-risk table changes every engine queued, in each engine's order.
    pub fn drain_table(&mut self, out: &mut Vec<crate::engine::TableChange>) {
        for task in self.tasks.values_mut() {
            task.engine.drain_table(out);
        }
    }

    pub fn counters(&self) -> EngineCounters {
        let mut total = self.retired;
        for task in self.tasks.values() {
            add_counters(&mut total, task.engine.counters());
        }
        total
    }

    /// Users per stage over the partitions owned now; transitions over every partition owned
    /// since start (those given away included).
    pub fn stage_stats(&self) -> StageStats {
        let mut total = StageStats {
            transitions: self.retired_transitions,
            ..StageStats::default()
        };
        for task in self.tasks.values() {
            total.add(&task.engine.stage_stats());
        }
        total
    }

    pub fn users(&self) -> usize {
        self.tasks.values().map(|t| t.engine.users()).sum()
    }

    pub fn outcomes_pending(&self) -> usize {
        self.tasks
            .values()
            .map(|t| t.engine.outcomes_pending())
            .sum()
    }

    /// The slowest partition's engine clock, among those that have one (`Millis::MIN` before
    /// anything happened): each partition keeps its own time, and how far event time lags the
    /// wall clock is what the slowest one shows.
    pub fn clock(&self) -> Millis {
        self.tasks
            .values()
            .map(|t| t.engine.clock())
            .filter(|&c| c != Millis::MIN)
            .min()
            .unwrap_or(Millis::MIN)
    }

    /// Every total the metrics export, at this moment.
    pub fn totals(&self, producer_queue: i32) -> telemetry::EngineTotals {
        telemetry::EngineTotals {
            counters: self.counters(),
            stages: self.stage_stats(),
            users: self.users(),
            largest_partition_users: self
                .tasks
                .values()
                .map(|t| t.engine.users())
                .max()
                .unwrap_or(0),
            user_cap: self.engine_config.max_users,
            outcomes_pending: self.outcomes_pending(),
            clock: self.clock(),
            producer_queue,
        }
    }

    /// Enqueues the changelog records of every user changed since the last call, stamped with
    /// their partition's position: the first step of a checkpoint (then flush, then commit).
    /// A record the producer refuses stays pending with every change not yet enqueued (see
    /// [`Engine::write_changes`]); the caller must not commit past it.
    pub fn write_changes(&mut self, sink: &Sink, metrics: &Metrics) -> Result<usize, SinkError> {
        let Some(topic) = self.changelog.as_deref() else {
            return Ok(0);
        };
        let (mut upserts, mut deletes) = (0u64, 0u64);
        let mut result = Ok(());
        for (&partition, task) in self.tasks.iter_mut() {
            let position = task.position;
            result = task
                .engine
                .write_changes(|change| match change {
                    Change::Upsert { user_id, record } => {
                        sink.changelog(topic, partition, user_id, Some(record), position)?;
                        upserts += 1;
                        Ok(())
                    }
                    Change::Delete { user_id } => {
                        sink.changelog(topic, partition, user_id, None, position)?;
                        deletes += 1;
                        Ok(())
                    }
                })
                .map(|_| ());
            if result.is_err() {
                break;
            }
        }
        telemetry::ChangelogWritten { upserts, deletes }.emit(metrics);
        result.map(|()| (upserts + deletes) as usize)
    }
}

/// Checks the changelog topic exists with the input's partition count, creating it (compacted)
/// if missing.
pub async fn ensure_changelog(
    brokers: &str,
    kafka_options: &[(String, String)],
    input: &str,
    changelog: &str,
    timeout: Duration,
) -> Result<(), StateError> {
    let topic = Compacted {
        name: changelog,
        what: "state changelog",
        same_partitions: true,
    };
    ensure_compacted(brokers, kafka_options, input, &topic, timeout).await
}

/// Checks the churn-risk table topic exists, creating it (compacted, with the input's
/// partition count) if missing. An existing one may have any partition count: its records go
/// where their key hashes, and compaction keeps the latest per key whatever the count.
pub async fn ensure_scores_topic(
    brokers: &str,
    kafka_options: &[(String, String)],
    input: &str,
    scores: &str,
    timeout: Duration,
) -> Result<(), StateError> {
    let topic = Compacted {
        name: scores,
        what: "churn-risk table",
        same_partitions: false,
    };
    ensure_compacted(brokers, kafka_options, input, &topic, timeout).await
}

/// A compacted topic the service creates when it is missing.
struct Compacted<'a> {
    name: &'a str,
    /// What it holds, for the log.
    what: &'static str,
    /// It must have exactly the input's partition count.
    same_partitions: bool,
}

async fn ensure_compacted(
    brokers: &str,
    kafka_options: &[(String, String)],
    input: &str,
    wanted: &Compacted<'_>,
    timeout: Duration,
) -> Result<(), StateError> {
    let changelog = wanted.name;
    let cfg = client::config(brokers, &[], kafka_options);
    let probe: BaseConsumer = cfg.create().map_err(|source| StateError::Metadata {
        topic: input.to_string(),
        source,
    })?;
    let count = |topic: &str| -> Result<usize, StateError> {
        let md = probe
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| StateError::Metadata {
                topic: topic.to_string(),
                source,
            })?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    };
    let needs = count(input)?;
    if needs == 0 {
        return Err(StateError::InputMissing(input.to_string()));
    }
    let has = count(changelog)?;
    if has == needs || (has != 0 && !wanted.same_partitions) {
        return Ok(());
    }
    if has != 0 {
        return Err(StateError::PartitionMismatch {
            topic: changelog.to_string(),
            has,
            input: input.to_string(),
            needs,
        });
    }
    let admin: AdminClient<DefaultClientContext> =
        cfg.create().map_err(|e| StateError::Create {
            topic: changelog.to_string(),
            reason: e.to_string(),
        })?;
    let topic = NewTopic::new(changelog, needs as i32, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(timeout)),
        )
        .await
        .map_err(|e| StateError::Create {
            topic: changelog.to_string(),
            reason: e.to_string(),
        })?;
    for r in results {
        if let Err((name, code)) = r {
            // Another instance may have created it meanwhile.
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(StateError::Create {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    tracing::info!(
        topic = changelog,
        partitions = needs,
        holds = wanted.what,
        "created compacted topic"
    );
    Ok(())
}

/// A changelog message as (user id, engine record or `None` for a tombstone, input position).
pub fn parse_changelog<M: Message>(msg: &M) -> Result<(&str, Option<&[u8]>, i64), &'static str> {
    let user = msg
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or("no UTF-8 user id key")?;
    match msg.payload() {
        Some(value) => {
            let (head, record) = value
                .split_first_chunk::<9>()
                .ok_or("value shorter than its header")?;
            if head[0] != CHANGELOG_VALUE_FORMAT {
                return Err("unknown changelog value format");
            }
            let mut position = [0u8; 8];
            position.copy_from_slice(&head[1..]);
            Ok((user, Some(record), i64::from_le_bytes(position)))
        }
        None => {
            let position = msg
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == INPUT_POSITION_HEADER)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
                })
                .ok_or("tombstone without input position header")?;
            Ok((user, None, position))
        }
    }
}
