//! The state a service leaves in its changelog, and the clean single pass to compare it with
//! (durable-state and fault tests).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use churnguard::engine::changelog::{decode_record, UserRecord};
use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::Event;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::service::{now_ms, Topics};

pub const DAY_MS: i64 = 86_400_000;

pub fn changelog_of(t: &Topics) -> String {
    format!("{}-state-changelog", t.group)
}

/// The state a restore would build: per changelog partition, records in order, applied when
/// their input position is at or before the group's committed offset; tombstones delete.
pub fn changelog_state(bootstrap: &str, t: &Topics) -> BTreeMap<String, UserRecord> {
    let topic = changelog_of(t);
    let committed = super::committed_offsets(bootstrap, &t.group, &t.input);
    let highs = super::high_watermarks(bootstrap, &topic);
    assert_eq!(
        highs.len(),
        committed.len(),
        "changelog has the input's partition count"
    );
    let consumer: BaseConsumer =
        super::consumer_config(bootstrap, &super::unique("read-changelog"))
            .create()
            .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..highs.len() as i32 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    // (user, record or tombstone, input position) in changelog order.
    type Entry = (String, Option<Vec<u8>>, i64);
    let mut per_partition: Vec<Vec<Entry>> = vec![Vec::new(); highs.len()];
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_offset = vec![-1i64; highs.len()];
    // Until every partition's last offset is read: offsets may have gaps (compaction, and Tansu
    // leaves some after a restart), so counting records would wait for ones that do not exist.
    while last_offset
        .iter()
        .zip(&highs)
        .any(|(&last, &high)| last + 1 < high)
    {
        assert!(
            Instant::now() < deadline,
            "changelog read {read} records: last offsets {last_offset:?}, high watermarks {highs:?}"
        );
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        last_offset[m.partition() as usize] = m.offset();
        read += 1;
        let (user, record, position) =
            churnguard::kafka::state::parse_changelog(&m).expect("well-formed changelog record");
        per_partition[m.partition() as usize].push((
            user.to_string(),
            record.map(<[u8]>::to_vec),
            position,
        ));
    }
    drop(tpl);
    let mut state = BTreeMap::new();
    for (p, records) in per_partition.into_iter().enumerate() {
        for (user, value, position) in records {
            if position > committed[p] {
                continue;
            }
            match value {
                Some(bytes) => {
                    state.insert(user, decode_record(&bytes).expect("valid record"));
                }
                None => {
                    state.remove(&user);
                }
            }
        }
    }
    state
}

/// A clean single pass of the events through the engine.
pub fn reference(events: &[Event]) -> Engine {
    let mut engine = Engine::new(EngineConfig::default(), None);
    for e in events {
        engine.apply(e).expect("the generated stream is accepted");
    }
    engine
}

/// Every user's features (all event-derived) at one instant equal the clean pass's.
pub fn assert_same_features(
    state: &BTreeMap<String, UserRecord>,
    reference: &Engine,
    users: usize,
) {
    assert_eq!(state.len(), users, "every user has state");
    assert_eq!(reference.users(), users);
    let at = now_ms() + DAY_MS;
    let mut differing = Vec::new();
    for (user, record) in state {
        let expected = reference.features(user, at).expect("user in the reference");
        if record.state.features(at, reference.layout()) != expected {
            differing.push(user.clone());
        }
    }
    assert!(
        differing.is_empty(),
        "{} users' features differ from the clean pass, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}

/// Alert ids by episode (user, last activity), and the number of alert messages.
pub fn alerts_by_episode(
    bootstrap: &str,
    t: &Topics,
) -> (BTreeMap<(String, String), BTreeSet<String>>, usize) {
    let alerts = super::consume_all(bootstrap, &t.alerts, 1, Duration::from_secs(30));
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (_, payload, _) in &alerts {
        let a: serde_json::Value = serde_json::from_str(payload).unwrap();
        ids.entry((
            a["user_id"].as_str().unwrap().to_string(),
            a["last_activity_at"].as_str().unwrap().to_string(),
        ))
        .or_default()
        .insert(a["alert_id"].as_str().unwrap().to_string());
    }
    (ids, alerts.len())
}

/// No state claims an alert that was not published (the state is written after the alert is
/// handed to the producer, and both are flushed before the commit), and an episode alerted
/// twice (before a kill and after the restart) has one alert id.
pub fn assert_alerts_consistent(
    bootstrap: &str,
    t: &Topics,
    state: &BTreeMap<String, UserRecord>,
) -> (usize, usize) {
    let (ids, messages) = alerts_by_episode(bootstrap, t);
    for (episode, set) in &ids {
        assert_eq!(
            set.len(),
            1,
            "episode {episode:?} got different alert ids {set:?}"
        );
    }
    let mut alerted = 0;
    for (user, record) in state {
        if record.state.alerted_episode().is_set() {
            alerted += 1;
            let episode = (
                user.clone(),
                churnguard::alert::rfc3339(record.state.alerted_episode().millis()),
            );
            assert!(
                ids.contains_key(&episode),
                "state says {episode:?} was alerted, but no such alert was published"
            );
        }
    }
    assert!(alerted > 0, "churners in the stream are alerted");
    (messages, ids.len())
}

pub fn committed_to_end(bootstrap: &str, t: &Topics) -> bool {
    super::committed_offsets(bootstrap, &t.group, &t.input)
        == super::high_watermarks(bootstrap, &t.input)
}
