//! The input topic as the broker sees it: every partition's watermarks and the group's
//! committed offset, refreshed every few seconds.
//!
//! librdkafka reports a partition's high watermark only once it has fetched from it, and
//! reports nothing on partitions this instance does not own. The pipeline needs both: the lag of
//! a partition whose first fetch has not come back yet (it would otherwise read as 0 while its
//! backlog waits), and whether partitions this instance does not own are being consumed by
//! anyone (see [`super::idle`]).
//!
//! The queries block for up to a few seconds when the broker is slow, so they run on a thread
//! of their own with a client of their own (it never joins the group), and the pipeline's task
//! only reads the latest view.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// One partition of the input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionView {
    /// Oldest offset still on the broker.
    pub low: i64,
    /// Offset the next produced message gets.
    pub high: i64,
    /// The group's committed offset (-1 when the group has committed none).
    pub committed: i64,
}

impl PartitionView {
    /// Messages the group has not consumed yet.
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.max(self.low)).max(0)
    }
}

/// The input topic at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputView {
    pub at: Instant,
    pub partitions: BTreeMap<i32, PartitionView>,
}

/// Keeps an [`InputView`] fresh on a background thread until dropped.
pub struct BrokerView {
    latest: Arc<Mutex<Option<InputView>>>,
    stop: Arc<AtomicBool>,
}

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl BrokerView {
    /// Starts watching `topic` for `group` every `every`. `client` carries the brokers and the
    /// user's Kafka options; `group.id` is set here (needed to read committed offsets, without
    /// joining the group).
    pub fn start(
        mut client: ClientConfig,
        group: &str,
        topic: &str,
        every: Duration,
    ) -> Result<BrokerView, KafkaError> {
        client.set("group.id", group);
        let consumer: BaseConsumer = client.create()?;
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped, topic) = (Arc::clone(&latest), Arc::clone(&stop), topic.to_string());
        std::thread::Builder::new()
            .name("broker-view".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    match query(&consumer, &topic) {
                        Ok(view) => *lock(&shared) = Some(view),
                        Err(e) => tracing::debug!(error = %e, topic, "cannot read the input topic's offsets from the broker"),
                    }
                    let next = Instant::now() + every;
                    while Instant::now() < next && !stopped.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("cannot start the broker-view thread: {e}")))?;
        Ok(BrokerView { latest, stop })
    }

    /// The latest view, if any query has succeeded yet.
    pub fn latest(&self) -> Option<InputView> {
        lock(&self.latest).clone()
    }
}

impl Drop for BrokerView {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn lock(view: &Mutex<Option<InputView>>) -> std::sync::MutexGuard<'_, Option<InputView>> {
    match view.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn query(consumer: &BaseConsumer, topic: &str) -> Result<InputView, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, QUERY_TIMEOUT)?;
    let mut partitions = BTreeMap::new();
    for p in ids {
        let (low, high) = consumer.fetch_watermarks(topic, p, QUERY_TIMEOUT)?;
        let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        };
        partitions.insert(
            p,
            PartitionView {
                low,
                high,
                committed,
            },
        );
    }
    Ok(InputView {
        at: Instant::now(),
        partitions,
    })
}
