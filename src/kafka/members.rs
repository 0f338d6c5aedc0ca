//! How the members of a group find each other for lookups, on any Kafka cluster and in
//! Kubernetes with nothing else to run: each member writes a record (its advertised URL and
//! the input partitions it owns) to a small compacted topic whenever what it owns changes and
//! every [`HEARTBEAT`], and a tombstone when it leaves; every member reads the topic from the
//! beginning and keeps the latest record per member.
//!
//! The directory only says whom to ask. Whether a member really has a partition is what the
//! member itself answers (see `crate::api`), so a stale record (a killed member, a rebalance
//! not yet advertised) costs a refused connection or a 503, never a wrong answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::checkpoint::lock;
use super::client;
use super::state_view::{Ownership, StateView};
use crate::api::Peers;

/// A member re-advertises at least this often, so a record older than [`STALE_AFTER`] is from
/// a member that is gone without a tombstone (killed).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Records older than this are ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// One member's record on the directory topic (keyed by its URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub url: String,
    /// The consumer group: several groups may share one directory topic.
    pub group: String,
    /// Assigned input partitions.
    pub partitions: Vec<i32>,
    /// Those still being restored.
    pub restoring: Vec<i32>,
    /// Wall clock of the record, milliseconds since the epoch.
    pub at_ms: i64,
}

/// Why the directory could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("member directory topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("member directory client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// This member's view of the directory, and its voice in it.
pub struct MemberDirectory {
    url: String,
    group: String,
    topic: String,
    producer: ThreadedProducer<DefaultProducerContext>,
    members: Arc<Mutex<BTreeMap<String, (MemberRecord, Instant)>>>,
    stop: Arc<AtomicBool>,
}

/// Creates the directory topic (one partition, compacted) unless it exists.
async fn ensure_topic(
    brokers: &str,
    options: &[(String, String)],
    topic: &str,
) -> Result<(), MembersError> {
    let cfg = client::config(brokers, &[], options);
    let admin: AdminClient<DefaultClientContext> = cfg.create()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&new], &opts).await?;
    for r in results {
        if let Err((_, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(MembersError::Topic {
                    topic: topic.to_string(),
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl MemberDirectory {
    /// Joins the directory on `topic` (created if missing when `create` is set) as `url`.
    pub async fn start(
        brokers: &str,
        options: &[(String, String)],
        group: &str,
        topic: &str,
        url: &str,
        create: bool,
    ) -> Result<Arc<MemberDirectory>, MembersError> {
        if create {
            ensure_topic(brokers, options, topic).await?;
        }
        let producer: ThreadedProducer<DefaultProducerContext> =
            client::config(brokers, &[("linger.ms", "0")], options).create()?;
        let consumer: BaseConsumer = client::config(
            brokers,
            &[
                // Assigned, never subscribed or committed: the group id is only required.
                ("group.id", "churnguard-members"),
                ("enable.auto.commit", "false"),
                // The directory changes at rebalances: a long fetch wait keeps this reader from
                // costing the brokers (and this process) a fetch every few milliseconds.
                ("fetch.wait.max.ms", "1000"),
            ],
            options,
        )
        .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let directory = Arc::new(MemberDirectory {
            url: url.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            producer,
            members: Arc::default(),
            stop: Arc::default(),
        });
        let (members, stop, group) = (
            Arc::clone(&directory.members),
            Arc::clone(&directory.stop),
            group.to_string(),
        );
        std::thread::Builder::new()
            .name("member-directory".into())
            .spawn(move || read(consumer, &group, &members, &stop))
            .map_err(|e| MembersError::Topic {
                topic: topic.to_string(),
                reason: format!("cannot start its reader: {e}"),
            })?;
        Ok(directory)
    }

    /// Writes this member's record.
    pub fn advertise(&self, owned: &Ownership) {
        let record = MemberRecord {
            url: self.url.clone(),
            group: self.group.clone(),
            partitions: owned.assigned.clone(),
            restoring: owned
                .assigned
                .iter()
                .copied()
                .filter(|p| !owned.restored.contains(p))
                .collect(),
            at_ms: now_ms(),
        };
        let Ok(payload) = serde_json::to_vec(&record) else {
            return;
        };
        let sent = self
            .producer
            .send(BaseRecord::to(&self.topic).key(&self.url).payload(&payload));
        match sent {
            Ok(()) => {
                tracing::debug!(url = %self.url, partitions = ?record.partitions, "advertised to the member directory")
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, topic = %self.topic, "cannot advertise to the member directory")
            }
        }
    }

    /// Leaves the directory: a tombstone, flushed (bounded by `timeout`).
    pub fn leave(&self, timeout: Duration) {
        let sent = self
            .producer
            .send(BaseRecord::<String, [u8]>::to(&self.topic).key(&self.url));
        if let Err((e, _)) = sent {
            tracing::warn!(error = %e, "cannot leave the member directory");
        }
        let _ = self.producer.flush(timeout);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Advertises whenever what this member owns changes, and every [`HEARTBEAT`], until the
    /// task is aborted.
    pub fn keep_advertising(self: &Arc<Self>, view: Arc<StateView>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut last: Option<(Ownership, Instant)> = None;
            loop {
                tick.tick().await;
                let owned = view.ownership();
                let due = last
                    .as_ref()
                    .is_none_or(|(o, at)| *o != owned || at.elapsed() >= HEARTBEAT);
                if due {
                    me.advertise(&owned);
                    last = Some((owned, Instant::now()));
                }
            }
        })
    }
}

impl Drop for MemberDirectory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Peers for MemberDirectory {
    fn peers(&self) -> Vec<String> {
        lock(&self.members)
            .values()
            .filter(|(r, seen)| {
                r.url != self.url && !r.partitions.is_empty() && seen.elapsed() < STALE_AFTER
            })
            .map(|(r, _)| r.url.clone())
            .collect()
    }
}

/// Reads the directory topic into `members` until `stop`.
fn read(
    consumer: BaseConsumer,
    group: &str,
    members: &Mutex<BTreeMap<String, (MemberRecord, Instant)>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "member directory read error; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let Some(Ok(url)) = m.key().map(std::str::from_utf8) else {
            continue;
        };
        let mut members = lock(members);
        match m.payload().map(serde_json::from_slice::<MemberRecord>) {
            None => {
                members.remove(url);
            }
            Some(Ok(r)) if r.group == group && r.url == url => {
                // A record's age counts from its own clock, so an old record read at start is
                // not taken for a fresh one.
                let age = Duration::from_millis(now_ms().saturating_sub(r.at_ms).max(0) as u64);
                let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                members.insert(url.to_string(), (r, seen));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, offset = m.offset(), "unreadable member directory record; skipped");
            }
        }
    }
}
