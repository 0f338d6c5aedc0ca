//! The churn-risk table topic end to end on the broker: the service consumes a scripted stream
//! from a multi-partition input topic with `--scores-topic`; the topic, reduced to the latest
//! record per key (a tombstone deletes), equals the final table of a clean in-process replay of
//! the same stream through the same engine, model and policy, field by field. Erased and evicted
//! users end in a tombstone, and every row matches `deploy/schemas/churn-score.v1.json`. The
//! reduction makes the check independent of whether the broker has compacted the topic yet.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use churnguard::engine::{Engine, EngineConfig, TableChange};
use churnguard::event::{Event, EventKind};
use churnguard::model::Model;
use churnguard::{Millis, DAY_MS};
use util::schema::validate_score;
use util::service::{now_ms, produce_events, Service, Topics, MODEL};
use util::{consume_records, partition_count, shared, unique, wait_until};

/// Users are evicted after this much silence, in the service and the replay alike.
const RETENTION_DAYS: i64 = 60;

/// A user's row as JSON, or `None` once deleted.
type Table = BTreeMap<String, Option<serde_json::Value>>;

fn event(user: &str, n: usize, kind: EventKind, ts: Millis) -> Event {
    Event {
        event_id: format!("{user}-{n}"),
        user_id: user.into(),
        kind,
        ts,
        amount: if kind == EventKind::Purchase {
            30.0 + (n % 4) as f64 * 25.0
        } else {
            0.0
        },
    }
}

/// 120 days ending shortly before `now`: steady users active to the end, users who fell
/// silent 5 to 75 days ago (those past the retention are evicted), a complainer, and a user who
/// asks to be erased. Sorted by time, as producers write each partition.
fn script(now: Millis) -> Vec<Event> {
    let start = now - 120 * DAY_MS;
    let mut users: Vec<(String, i64)> = (0..5).map(|i| (format!("steady-{i}"), 0)).collect();
    for silent in [5, 12, 18, 25, 33, 40, 50, 75] {
        users.push((format!("lapsed-{silent}d"), silent));
    }
    users.push(("complainer".into(), 3));
    users.push(("erased".into(), 20));
    let mut events = Vec::new();
    for (u, (user, silent_days)) in users.iter().enumerate() {
        let end = now - silent_days * DAY_MS - 2 * 3_600_000;
        let first = start + (u as i64 % 7) * DAY_MS + u as i64 * 600_000;
        let mut t = first;
        let mut n = 0;
        while t <= end {
            let day = (t - first) / DAY_MS;
            events.push(event(user, n, EventKind::Login, t));
            events.push(event(user, n + 1, EventKind::PageView, t + 60_000));
            if day % 6 == 2 {
                events.push(event(user, n + 2, EventKind::Purchase, t + 120_000));
            }
            n += 3;
            t += DAY_MS + (u as i64 % 3) * 3_600_000;
        }
    }
    events.push(event(
        "complainer",
        90_001,
        EventKind::Complaint,
        now - 2 * DAY_MS,
    ));
    events.push(event("erased", 90_001, EventKind::Erase, now - 10 * DAY_MS));
    events.sort_by_key(|e| e.ts);
    events
}

/// Applies table changes to `table`, noting each user whose entry changed in `changed`.
fn apply_changes(table: &mut Table, changes: Vec<TableChange>, changed: &mut BTreeSet<String>) {
    for change in changes {
        let user = change.user_id().to_string();
        let value = match change {
            TableChange::Row(row) => Some(serde_json::to_value(row).expect("row to JSON")),
            TableChange::Tombstone { .. } => None,
        };
        changed.insert(user.clone());
        table.insert(user, value);
    }
}

/// Every table entry a user can have while the clock is anywhere in `[from, to]`, from a clean
/// replay of `events` through one engine: the entry at `from`, then each one the clock reaches
/// second by second until `to`. (A service's partitions keep their own clocks, somewhere in that
/// window when the topic is read; a user's entry depends only on their own partition's clock.)
fn replay_entries(
    events: &[Event],
    from: Millis,
    to: Millis,
) -> BTreeMap<String, Vec<Option<serde_json::Value>>> {
    let model = Arc::new(Model::load(std::path::Path::new(MODEL)).expect("model"));
    let config = EngineConfig {
        retention: RETENTION_DAYS * DAY_MS,
        score_table: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, Some(model));
    let (mut scored, mut changes, mut changed) = (Vec::new(), Vec::new(), BTreeSet::new());
    let mut table = Table::new();
    for e in events {
        engine.advance(e.ts, &mut scored);
        engine.apply(e).expect("every scripted event is valid");
    }
    engine.advance(from, &mut scored);
    engine.drain_table(&mut changes);
    apply_changes(&mut table, std::mem::take(&mut changes), &mut changed);
    let mut entries: BTreeMap<String, Vec<Option<serde_json::Value>>> = table
        .iter()
        .map(|(u, v)| (u.clone(), vec![v.clone()]))
        .collect();
    let mut t = from;
    while t < to {
        t = (t + 1000).min(to);
        engine.advance(t, &mut scored);
        engine.drain_table(&mut changes);
        changed.clear();
        apply_changes(&mut table, std::mem::take(&mut changes), &mut changed);
        for user in &changed {
            entries
                .entry(user.clone())
                .or_default()
                .push(table[user].clone());
        }
    }
    entries
}

#[test]
fn the_scores_topic_holds_a_clean_replays_final_table() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "scores", 3);
    let scores = unique("scores-table");
    let now = now_ms();
    let events = script(now);
    produce_events(&bootstrap, &t.input, &events);

    let retention = RETENTION_DAYS.to_string();
    let mut svc = Service::start_with(
        &bootstrap,
        &t,
        &["--scores-topic", &scores, "--retention-days", &retention],
    );
    let handled = wait_until(Duration::from_secs(120), || {
        svc.try_metrics()
            .is_some_and(|m| m.handled() >= events.len() as u64)
    });
    assert!(handled, "not all events handled; log:\n{}", svc.log_text());
    // Every partition's clock is the wall clock from here on (or later): the replay's window.
    let from = now_ms() / 1000 * 1000;
    let caught_up = wait_until(Duration::from_secs(60), || {
        svc.try_metrics().is_some_and(|m| {
            m.sum("churnguard_event_time_watermark_seconds", &[]) >= (from / 1000) as f64
        })
    });
    assert!(
        caught_up,
        "clocks never reached {from}; log:\n{}",
        svc.log_text()
    );
    let m = svc.metrics();
    assert_eq!(
        m.sum("churnguard_events_consumed_total", &[]),
        events.len() as f64,
        "every scripted event is applied"
    );
    let published = m.sum("churnguard_score_table_records_total", &[]) as usize;
    let tombstones = m.sum(
        "churnguard_score_table_records_total",
        &["kind=\"tombstone\""],
    );
    assert!(tombstones >= 2.0, "erased and evicted users: {tombstones}");
    // SIGTERM flushes everything enqueued (timer rows after the scrape included) before exit.
    let status = svc.terminate(Duration::from_secs(35));
    assert!(status.success(), "exit {status}; log:\n{}", svc.log_text());
    let to = now_ms();

    assert_eq!(
        partition_count(&bootstrap, &scores),
        Some(3),
        "created with the input's partition count"
    );
    let records = consume_records(&bootstrap, &scores, published, Duration::from_secs(60));
    assert!(
        records.len() >= published,
        "{} < {published}",
        records.len()
    );
    // Latest record per key (one key always lands on one partition, read in offset order).
    let mut topic = Table::new();
    let mut last_kind = BTreeMap::new();
    for r in &records {
        let value = if r.null_payload {
            None
        } else {
            let v: serde_json::Value = serde_json::from_str(&r.payload).expect("row is JSON");
            validate_score(&v).unwrap_or_else(|e| panic!("row fails its schema: {e}\n{v}"));
            assert_eq!(
                v["user_id"].as_str(),
                Some(r.key.as_str()),
                "keyed by user id"
            );
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| k == "churnguard.schema_version" && v == "1"),
                "{:?}",
                r.headers
            );
            Some(v)
        };
        last_kind.insert(r.key.clone(), value.is_some());
        topic.insert(r.key.clone(), value);
    }
    assert_eq!(
        last_kind.get("erased"),
        Some(&false),
        "erased ends in a tombstone"
    );
    assert_eq!(
        last_kind.get("lapsed-75d"),
        Some(&false),
        "evicted ends in a tombstone"
    );

    let replay = replay_entries(&events, from, to);
    assert_eq!(
        topic.keys().collect::<Vec<_>>(),
        replay.keys().collect::<Vec<_>>(),
        "the same users"
    );
    let mut live = 0;
    for (user, entry) in &topic {
        let candidates = &replay[user];
        assert!(
            candidates.contains(entry),
            "{user}: topic has {entry:?}, the replay {candidates:?}"
        );
        live += usize::from(entry.is_some());
    }
    assert!(live >= 10, "{live} live rows");
    let stages: BTreeSet<_> = topic
        .values()
        .flatten()
        .map(|v| v["lifecycle_stage"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(stages.len() >= 3, "a varied table: {stages:?}");
    util::log(format!(
        "scores topic: {} records, {} keys, {live} live rows, stages {stages:?}",
        records.len(),
        topic.len()
    ));
}

/// The documented connector cannot be run here (no Kafka Connect), but it can be kept in step
/// with the row it reads: the fields its transform types are the schema's, and the settings the
/// recipe depends on are there.
#[test]
fn the_jdbc_sink_example_types_every_field_of_the_row() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/connect/scores-jdbc-sink.json"
    );
    let connector: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("connector file"))
            .expect("JSON");
    let config = &connector["config"];
    for (key, value) in [
        ("insert.mode", "upsert"),
        ("pk.mode", "record_key"),
        ("pk.fields", "user_id"),
        ("delete.enabled", "true"),
        (
            "key.converter",
            "org.apache.kafka.connect.storage.StringConverter",
        ),
        ("transforms.typed.predicate", "isTombstone"),
        ("transforms.typed.negate", "true"),
        (
            "predicates.isTombstone.type",
            "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
        ),
    ] {
        assert_eq!(config[key].as_str(), Some(value), "{key}");
    }
    let inline: serde_json::Value = serde_json::from_str(
        config["transforms.typed.json.schema.inline"]
            .as_str()
            .expect("inline schema"),
    )
    .expect("inline schema is JSON");
    let contract: serde_json::Value =
        serde_json::from_str(util::schema::SCORE_SCHEMA).expect("schema JSON");
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&inline), keys(&contract));
    assert_eq!(inline["required"], contract["required"]);
}
