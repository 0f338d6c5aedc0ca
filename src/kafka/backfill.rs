//! Backfill: each input partition's state built offline from history, written to the state
//! changelog as if the service had consumed that history, so the service starts warm.
//!
//! The service restores partition `p` by reading changelog partition `p` and applying every
//! record stamped with an input position at or before the group's committed offset of `p`
//! (see [`super::restore`]); then it consumes from that offset. A backfill therefore
//!
//! 1. fixes, per input partition, the position the service will resume at: the partition's
//!    current end (high watermark), or the group's committed offset where one exists (only
//!    with `force`). Everything in the topic before it is taken to be in the history files;
//!    everything after it is consumed live, so no event is counted twice;
//! 2. runs the history through one engine per input partition, each user on the partition
//!    their live events will land on (the producers' [`Partitioner`] applied to the user id),
//!    moving each engine's clock with its own events exactly as the service does;
//! 3. writes every user's record stamped with their partition's position, through the
//!    service's own changelog writer ([`Partitions::write_changes`]), waits until the broker has
//!    acknowledged every record, and only then commits the positions as the group's offsets:
//!    the checkpoint protocol of [`super::checkpoint`], once.
//!
//! Each engine's clock stops at its partition's last history event. Timers due later are in
//! the records (each user's next check) and fire in the live service, which publishes what they
//! decide; alerts decided inside the history are not published (they are history), but the
//! state remembers them, as a service that had run through the history would. The restore moves
//! the live engine's clock up to the history's end (see [`crate::engine::Engine::restore`]), so
//! the live service refuses as `too_late` exactly what a single pass would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client;
use super::partitioner::Partitioner;
use super::sink::{Sink, SinkError, SinkTopics};
use super::state::{self, Partitions, StateError};
use crate::engine::{Applied, EngineConfig};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::Millis;

/// Where and how to backfill.
#[derive(Clone)]
pub struct BackfillConfig {
    pub brokers: String,
    pub kafka_options: Vec<(String, String)>,
    /// The service's consumer group: its offsets are committed at the backfilled positions.
    pub group: String,
    pub input_topic: String,
    pub changelog_topic: String,
    /// The service's engine settings (windows, lateness, lifecycle, policy): the records are
    /// restored by an engine with these.
    pub engine: EngineConfig,
    /// The model the service scores with: what it decides in the history (alerts, caps,
    /// outcome windows) is part of the state.
    pub model: Arc<Model>,
    /// How the producers of the input topic pick a partition for a user id key.
    pub partitioner: Partitioner,
    /// Go on although the group has committed offsets or the changelog has records.
    pub force: bool,
    /// Bound on each broker request, and on the wait for the records' acknowledgements.
    pub timeout: Duration,
}

/// Why a backfill stopped. Up to the commit nothing the service reads is changed; see each
/// variant for what a failure after writing records leaves behind.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot {what}: {source}")]
    Kafka { what: String, source: KafkaError },
    #[error(
        "state changelog is off: the service keeps state in memory only, so there is nothing to \
         backfill into; name a changelog topic (or leave it at its default) for both backfill \
         and run"
    )]
    NoChangelog,
    #[error(
        "group {group} already has committed offsets on {topic} ({offsets}): it has consumed \
         input, and its state is in the changelog. A backfill would replace that state with one \
         built from the files and resume at those offsets. Use a new group, or pass --force to \
         rebuild the state at the committed offsets"
    )]
    GroupHasOffsets {
        group: String,
        topic: String,
        offsets: String,
    },
    #[error(
        "group {group} has {members} active member(s): stop the service first (a running member \
         keeps the state it holds, and the group coordinator refuses offsets committed from \
         outside the group)"
    )]
    GroupActive { group: String, members: usize },
    #[error(
        "changelog topic {topic} is not empty ({records} records): a restore applies every record \
         up to the committed offsets, so users found only in the old records would be mixed into \
         the backfilled state. Delete the topic (it is recreated) or use a new group, or pass \
         --force to write over it"
    )]
    ChangelogNotEmpty { topic: String, records: i64 },
    #[error(
        "{elsewhere} of the {sampled} keyed messages read from the end of {topic} are on another \
         partition than --partitioner {partitioner} computes for their key: the producers use \
         another partitioner, and the history would land on other partitions than the users' \
         live events. {fits}; or pass --force to go on"
    )]
    PartitionerMismatch {
        topic: String,
        partitioner: &'static str,
        sampled: usize,
        elsewhere: usize,
        fits: String,
    },
    #[error(
        "the broker did not acknowledge every changelog record within {secs} s ({failed} failed); \
         no offset was committed, so a restore ignores what was written. Re-run with --force"
    )]
    NotAcknowledged { secs: u64, failed: u64 },
    #[error(
        "group {group}'s committed offsets on {topic} changed while the backfill ran (now {now}): \
         something consumed with this group meanwhile; no offset was committed, and the \
         changelog records written are ignored by a restore. Stop it and re-run with --force"
    )]
    OffsetsMoved {
        group: String,
        topic: String,
        now: String,
    },
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> BackfillError {
    let what = what.into();
    move |source| BackfillError::Kafka { what, source }
}

/// The input topic as the backfill found it: where the service will resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The input topic's partition count (the changelog has the same).
    pub partitions: u32,
    /// Per input partition: the offset the service resumes at, which every record is stamped
    /// with and which is committed.
    pub positions: Vec<i64>,
    /// The group's committed offsets when the backfill started (-1 = none).
    pub committed: Vec<i64>,
}

/// Checks that a backfill is safe (see [`BackfillError`]), makes sure the changelog topic exists
/// as `run` would create it, and fixes the positions the service will resume at.
pub async fn prepare(cfg: &BackfillConfig) -> Result<Target, BackfillError> {
    state::ensure_changelog(
        &cfg.brokers,
        &cfg.kafka_options,
        &cfg.input_topic,
        &cfg.changelog_topic,
        cfg.timeout,
    )
    .await?;
    let consumer = group_consumer(cfg)?;
    let partitions = partition_count(&consumer, &cfg.input_topic, cfg.timeout)?;
    refuse_active_group(&consumer, &cfg.group, cfg.timeout)?;
    let committed = committed_offsets(&consumer, cfg, partitions)?;
    if committed.iter().any(|&o| o >= 0) && !cfg.force {
        return Err(BackfillError::GroupHasOffsets {
            group: cfg.group.clone(),
            topic: cfg.input_topic.clone(),
            offsets: offsets_text(&committed),
        });
    }
    let records = changelog_records(&consumer, cfg, partitions)?;
    if records > 0 && !cfg.force {
        return Err(BackfillError::ChangelogNotEmpty {
            topic: cfg.changelog_topic.clone(),
            records,
        });
    }
    let mut positions = Vec::with_capacity(partitions as usize);
    let mut ranges = Vec::with_capacity(partitions as usize);
    for (p, &c) in committed.iter().enumerate() {
        let what = format!("read the offsets of {} [{p}]", cfg.input_topic);
        let (low, high) = consumer
            .fetch_watermarks(&cfg.input_topic, p as i32, cfg.timeout)
            .map_err(kafka(what))?;
        positions.push(if c >= 0 { c } else { high });
        ranges.push((low, high));
    }
    check_partitioner(cfg, partitions, &ranges)?;
    Ok(Target {
        partitions,
        positions,
        committed,
    })
}

/// Messages read from the end of each input partition to check `--partitioner`.
const PARTITIONER_SAMPLE: i64 = 200;

/// Checks the partitioner against the newest keyed messages of the input topic, where it has
/// any: a message on another partition than the partitioner computes for its key means the
/// producers use another one, and the history would land on other partitions than the users'
/// live events. Refused (unless `force`), naming the partitioners that do match.
fn check_partitioner(
    cfg: &BackfillConfig,
    partitions: u32,
    ranges: &[(i64, i64)],
) -> Result<(), BackfillError> {
    let keys = newest_keys(cfg, ranges)?;
    let matching = |partitioner: Partitioner| {
        keys.iter()
            .filter(|(p, key)| partitioner.partition(key, partitions) == *p)
            .count()
    };
    let chosen = matching(cfg.partitioner);
    if keys.is_empty() {
        tracing::info!(
            partitioner = cfg.partitioner.name(),
            "the input topic has no keyed message to check the partitioner against"
        );
        return Ok(());
    }
    if chosen == keys.len() {
        tracing::info!(
            sampled = keys.len(),
            partitioner = cfg.partitioner.name(),
            "partitioner checked against the input topic's newest keyed messages"
        );
        return Ok(());
    }
    if cfg.force {
        tracing::warn!(
            sampled = keys.len(),
            elsewhere = keys.len() - chosen,
            partitioner = cfg.partitioner.name(),
            "messages at the end of the input topic are not where the partitioner puts their \
             keys; going on (--force)"
        );
        return Ok(());
    }
    let fits: Vec<&str> = Partitioner::ALL
        .into_iter()
        .filter(|&p| matching(p) == keys.len())
        .map(Partitioner::name)
        .collect();
    Err(BackfillError::PartitionerMismatch {
        topic: cfg.input_topic.clone(),
        partitioner: cfg.partitioner.name(),
        sampled: keys.len(),
        elsewhere: keys.len() - chosen,
        fits: if fits.is_empty() {
            "none of the known partitioners puts all of them where they are (producers that \
             choose partitions themselves, or a partition count that changed?)"
                .to_string()
        } else {
            format!(
                "--partitioner {} puts all of them where they are",
                fits.join(" or ")
            )
        },
    })
}

/// (partition, key) of up to [`PARTITIONER_SAMPLE`] of the newest messages of each input
/// partition with a key.
fn newest_keys(
    cfg: &BackfillConfig,
    ranges: &[(i64, i64)],
) -> Result<Vec<(i32, Vec<u8>)>, BackfillError> {
    let consumer: BaseConsumer = client::config(
        &cfg.brokers,
        &[
            // Assigned, never subscribed or committed: the group id is only required.
            ("group.id", "churnguard-backfill-check"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
        ],
        &cfg.kafka_options,
    )
    .create()
    .map_err(kafka("create a Kafka client"))?;
    let mut tpl = TopicPartitionList::new();
    // Partitions still to read to their end (offset gaps, e.g. transaction markers, are why
    // the end-of-partition event counts too).
    let mut open: Vec<bool> = ranges.iter().map(|&(low, high)| high > low).collect();
    for (p, &(low, high)) in ranges.iter().enumerate() {
        if open[p] {
            let from = low.max(high - PARTITIONER_SAMPLE);
            tpl.add_partition_offset(&cfg.input_topic, p as i32, Offset::Offset(from))
                .map_err(kafka("name the offsets to sample"))?;
        }
    }
    let mut keys = Vec::new();
    if tpl.count() == 0 {
        return Ok(keys);
    }
    consumer
        .assign(&tpl)
        .map_err(kafka(format!("read {}", cfg.input_topic)))?;
    let deadline = std::time::Instant::now() + cfg.timeout.min(Duration::from_secs(30));
    let close = |open: &mut Vec<bool>, p: i32| {
        if let Some(o) = usize::try_from(p).ok().and_then(|p| open.get_mut(p)) {
            *o = false;
        }
    };
    while open.iter().any(|&o| o) && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let end = ranges.get(m.partition() as usize).map_or(0, |r| r.1);
                if m.offset() + 1 >= end {
                    close(&mut open, m.partition());
                }
                if let (Some(key), true) = (m.key(), m.offset() < end) {
                    keys.push((m.partition(), key.to_vec()));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => close(&mut open, p),
            Some(Err(e)) => tracing::warn!(error = %e, "reading the input topic's newest keys"),
            None => {}
        }
    }
    Ok(keys)
}

/// What running the history through the engines gave.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BuildReport {
    /// Events folded into state (duplicates within the dedupe horizon included).
    pub applied: u64,
    /// Events the engine refused, by reason: count and the first few, described.
    pub refused: BTreeMap<&'static str, (u64, Vec<String>)>,
    /// Alerts the engine decided inside the history (not published).
    pub alerts: u64,
    /// Users with state, per input partition.
    pub users: Vec<usize>,
    /// Each partition's last history event time (its engine's clock), if it had one.
    pub ends: Vec<Option<Millis>>,
}

impl BuildReport {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

/// Refused events described per reason in the report; the rest are counted.
const EXAMPLES_PER_REASON: usize = 3;

/// Runs `events` (in [`crate::replay::sort_events`] order) through one engine per input
/// partition, each engine stamped with its partition's position.
pub fn build<'e>(
    cfg: &BackfillConfig,
    target: &Target,
    events: impl IntoIterator<Item = &'e Event>,
) -> (Partitions, BuildReport) {
    let mut partitions = Partitions::new(
        cfg.engine.clone(),
        Some(Arc::clone(&cfg.model)),
        Some(cfg.changelog_topic.clone()),
    );
    for (p, &position) in target.positions.iter().enumerate() {
        let engine = partitions.new_engine();
        partitions.insert(p as i32, engine, position);
    }
    let mut report = BuildReport::default();
    let (mut scored, mut outcomes) = (Vec::new(), Vec::new());
    for event in events {
        let p = cfg
            .partitioner
            .partition(event.user_id.as_bytes(), target.partitions);
        let Some(task) = partitions.task_mut(p) else {
            unreachable!("every partition below the count has an engine")
        };
        // As the service: the partition's clock moves to its latest event, then the event
        // applies (see `crate::clock`).
        task.engine.advance(event.ts, &mut scored);
        let applied = task.engine.apply(event);
        if let Ok(Applied::Updated { scored: Some(s) }) = &applied {
            report.alerts += u64::from(s.alert.is_some());
        }
        report.alerts += scored.iter().filter(|s| s.alert.is_some()).count() as u64;
        scored.clear();
        // Outcome events decided in the history are not published either; the outcome
        // windows still open stay in the state.
        task.engine.drain_outcomes(&mut outcomes);
        outcomes.clear();
        match applied {
            Ok(_) => report.applied += 1,
            Err(rejection) => {
                let (count, examples) =
                    report.refused.entry(rejection.reason.as_str()).or_default();
                *count += 1;
                if examples.len() < EXAMPLES_PER_REASON {
                    examples.push(format!(
                        "user {:?} event {:?} at {}: {}",
                        event.user_id,
                        event.event_id,
                        crate::alert::rfc3339(event.ts),
                        rejection.detail
                    ));
                }
            }
        }
    }
    for p in 0..target.partitions as i32 {
        let engine = partitions.task_mut(p).map(|t| &t.engine);
        report.users.push(engine.map_or(0, |e| e.users()));
        report
            .ends
            .push(engine.map(|e| e.clock()).filter(|&c| c != Millis::MIN));
    }
    (partitions, report)
}

/// What was written and committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// Changelog records (users) and tombstones (users erased or evicted in the history).
    pub records: usize,
}

/// Writes every user's record to the changelog, waits for the broker to acknowledge all of
/// them, then commits the positions as the group's offsets. `shutdown` turning true makes a
/// wait for room in a full producer queue give up.
pub fn write(
    cfg: &BackfillConfig,
    target: &Target,
    partitions: &mut Partitions,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<WriteReport, BackfillError> {
    let metrics = Arc::new(Metrics::new());
    // Only the changelog is written: the alert and dead-letter topics are never used.
    let topics = SinkTopics {
        alerts: String::new(),
        dlq: String::new(),
        control: None,
        outcomes: None,
        scores: None,
    };
    let sink = Sink::new(
        &cfg.brokers,
        topics,
        &cfg.kafka_options,
        Arc::clone(&metrics),
    )?
    .abort_on(shutdown);
    let records = partitions.write_changes(&sink, &metrics)?;
    let flushed = sink.flush(cfg.timeout);
    let failed = sink.failures();
    if flushed.is_err() || failed > 0 {
        return Err(BackfillError::NotAcknowledged {
            secs: cfg.timeout.as_secs(),
            failed,
        });
    }
    let consumer = group_consumer(cfg)?;
    let now = committed_offsets(&consumer, cfg, target.partitions)?;
    if now != target.committed {
        return Err(BackfillError::OffsetsMoved {
            group: cfg.group.clone(),
            topic: cfg.input_topic.clone(),
            now: offsets_text(&now),
        });
    }
    let mut tpl = TopicPartitionList::new();
    for (p, &position) in target.positions.iter().enumerate() {
        tpl.add_partition_offset(&cfg.input_topic, p as i32, Offset::Offset(position))
            .map_err(kafka("name the offsets to commit"))?;
    }
    let what = format!("commit group {}'s offsets (the changelog records are written, but a restore ignores them until the offsets are committed: re-run with --force)", cfg.group);
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(kafka(what))?;
    Ok(WriteReport { records })
}

/// A consumer of the service's group that never joins it: it reads and commits offsets only.
fn group_consumer(cfg: &BackfillConfig) -> Result<BaseConsumer, BackfillError> {
    client::config(
        &cfg.brokers,
        &[
            ("group.id", cfg.group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ],
        &cfg.kafka_options,
    )
    .create()
    .map_err(kafka("create a Kafka client"))
}

fn partition_count(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<u32, BackfillError> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka(format!("read the metadata of {topic}")))?;
    let count = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    match u32::try_from(count) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(StateError::InputMissing(topic.to_string()).into()),
    }
}

/// Refuses a group with live members. A broker that cannot list groups is not a reason to
/// stop: the commit would then be refused by the coordinator instead.
fn refuse_active_group(
    consumer: &BaseConsumer,
    group: &str,
    timeout: Duration,
) -> Result<(), BackfillError> {
    match consumer.fetch_group_list(Some(group), timeout) {
        Ok(list) => {
            let members: usize = list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.members().len())
                .sum();
            if members > 0 {
                return Err(BackfillError::GroupActive {
                    group: group.to_string(),
                    members,
                });
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            group,
            "cannot list the group's members (the broker may not answer ListGroups): make sure \
             no `churnguard run` of this group is running"
        ),
    }
    Ok(())
}

/// The group's committed offset of every input partition (-1 = none).
fn committed_offsets(
    consumer: &BaseConsumer,
    cfg: &BackfillConfig,
    partitions: u32,
) -> Result<Vec<i64>, BackfillError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(&cfg.input_topic, p);
    }
    let what = format!("read group {}'s committed offsets", cfg.group);
    let committed = consumer
        .committed_offsets(tpl, cfg.timeout)
        .map_err(kafka(what))?;
    Ok((0..partitions as i32)
        .map(|p| {
            match committed
                .find_partition(&cfg.input_topic, p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            }
        })
        .collect())
}

/// Records in the changelog topic (high minus low watermark, over its partitions).
fn changelog_records(
    consumer: &BaseConsumer,
    cfg: &BackfillConfig,
    partitions: u32,
) -> Result<i64, BackfillError> {
    let mut records = 0;
    for p in 0..partitions as i32 {
        let what = format!("read the offsets of {} [{p}]", cfg.changelog_topic);
        let (low, high) = consumer
            .fetch_watermarks(&cfg.changelog_topic, p, cfg.timeout)
            .map_err(kafka(what))?;
        records += (high - low).max(0);
    }
    Ok(records)
}

fn offsets_text(offsets: &[i64]) -> String {
    offsets
        .iter()
        .enumerate()
        .map(|(p, o)| {
            if *o >= 0 {
                format!("{p}:{o}")
            } else {
                format!("{p}:none")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::changelog::{decode_record, Change};
    use crate::event::EventKind;
    use crate::replay::{replay, sort_events};
    use crate::DAY_MS;

    fn config(partitioner: Partitioner) -> BackfillConfig {
        let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json"));
        let engine = EngineConfig {
            max_id_bytes: 16,
            ..EngineConfig::default()
        };
        BackfillConfig {
            brokers: String::new(),
            kafka_options: Vec::new(),
            group: "g".into(),
            input_topic: "in".into(),
            changelog_topic: "g-state-changelog".into(),
            model: Arc::new(Model::load_for(shipped, engine.windows).expect("shipped model")),
            engine,
            partitioner,
            force: false,
            timeout: Duration::from_secs(1),
        }
    }

    fn history() -> Vec<Event> {
        let mut events: Vec<Event> = (0..40)
            .flat_map(|u| {
                (0..30).map(move |d| Event {
                    event_id: format!("e{u}-{d}"),
                    user_id: format!("user-{u}"),
                    kind: if d % 5 == 0 {
                        EventKind::Purchase
                    } else {
                        EventKind::Login
                    },
                    ts: 1_000 * DAY_MS + i64::from(d) * DAY_MS * (1 + u % 3) + u,
                    amount: if d % 5 == 0 { 12.0 } else { 0.0 },
                })
            })
            .collect();
        events.push(Event {
            event_id: "long".into(),
            user_id: "a-user-id-longer-than-sixteen-bytes".into(),
            kind: EventKind::Login,
            ts: 1_010 * DAY_MS,
            amount: 0.0,
        });
        sort_events(&mut events);
        events
    }

    /// Each partition's engine holds exactly the users the partitioner puts there, in the
    /// state a replay of that partition's events alone reaches (the service's per-partition
    /// engine); every record carries its partition's position; the engine's refusals are
    /// listed with the event.
    #[test]
    fn each_partition_gets_the_state_of_its_own_events() {
        let cfg = config(Partitioner::Crc32);
        let target = Target {
            partitions: 3,
            positions: vec![5, 0, 9],
            committed: vec![-1; 3],
        };
        let events = history();
        let (mut partitions, report) = build(&cfg, &target, &events);
        assert_eq!(report.applied as usize, events.len() - 1);
        let (count, examples) = &report.refused["invalid_id"];
        assert_eq!(*count, 1);
        assert!(examples[0].contains("a-user-id-longer"), "{examples:?}");
        assert_eq!(report.users.iter().sum::<usize>(), 40);
        for p in 0..3 {
            let own: Vec<Event> = events
                .iter()
                .filter(|e| e.user_id.len() <= 16)
                .filter(|e| Partitioner::Crc32.partition(e.user_id.as_bytes(), 3) == p)
                .cloned()
                .collect();
            let mut alone = Partitions::new(cfg.engine.clone(), Some(Arc::clone(&cfg.model)), None)
                .new_engine();
            replay(&mut alone, &own, None);
            let task = partitions.task_mut(p).expect("every partition");
            assert_eq!(task.engine.users(), alone.users(), "partition {p}");
            assert_eq!(task.engine.clock(), alone.clock());
            assert_eq!(report.ends[p as usize], Some(alone.clock()));
            assert_eq!(task.position, target.positions[p as usize]);
            let mut records = 0;
            task.engine.take_changes(|change| {
                let Change::Upsert { user_id, record } = change else {
                    panic!("no user was removed");
                };
                let restored = decode_record(record).expect("a record");
                assert_eq!(Some(&restored.state), alone.state(user_id), "{user_id}");
                records += 1;
            });
            assert_eq!(records, alone.users());
        }
    }
}
