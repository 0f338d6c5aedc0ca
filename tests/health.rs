//! What the service tells an operator when it is in trouble: readiness while the pipeline
//! restart-loops, counters that count each input message once, lag before librdkafka has
//! reported on a partition, the exit status and log after a failed final checkpoint, and how
//! null payloads and null keys are reported. Real processes on Tansu; every wait is on a
//! condition.

mod util;

use std::time::{Duration, Instant};

use churnguard::event::encode;
use churnguard::synth;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use util::changelog::committed_to_end;
use util::service::{now_ms, produce_events, Service, Topics};
use util::{create_topic, shared, unique, wait_until, RestartableBroker};

/// Topics for a test whose dead-letter topic does not exist (yet): a refused message then
/// cannot be delivered, and every pipeline stops on it and is replaced by a fresh one.
fn topics_without_dlq(bootstrap: &str, prefix: &str) -> Topics {
    let t = Topics {
        input: unique(&format!("{prefix}-in")),
        alerts: unique(&format!("{prefix}-alerts")),
        dlq: unique(&format!("{prefix}-dlq")),
        group: unique(&format!("{prefix}-group")),
    };
    create_topic(bootstrap, &t.input, 1);
    create_topic(bootstrap, &t.alerts, 1);
    t
}

/// `valid` events, one malformed message, `valid` more events, all on one partition.
fn around_one_bad_message(bootstrap: &str, t: &Topics) -> usize {
    let events = synth::scripted(now_ms() - 60_000, 10, 40, 0, 0);
    let (before, after) = events.split_at(events.len() / 2);
    let mut records: Vec<(String, String)> = before
        .iter()
        .map(|e| (e.user_id.clone(), encode(e)))
        .collect();
    records.push(("bad".into(), "{not json".into()));
    records.extend(after.iter().map(|e| (e.user_id.clone(), encode(e))));
    let refs: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    util::produce(bootstrap, &t.input, &refs);
    events.len()
}

/// Undeliverable dead letters fail after a second instead of librdkafka's default 30 s.
const FAST_UNKNOWN_TOPIC: [&str; 2] = ["--kafka-option", "topic.metadata.propagation.max.ms=1000"];

#[test]
fn not_ready_while_the_pipeline_restart_loops_without_a_checkpoint() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = topics_without_dlq(&bootstrap, "readyloop");
    around_one_bad_message(&bootstrap, &t);
    let mut svc = Service::start_with(&bootstrap, &t, &FAST_UNKNOWN_TOPIC);
    let restarts = |svc: &mut Service| {
        svc.try_metrics()
            .map_or(0.0, |m| m.sum("churnguard_pipeline_restarts_total", &[]))
    };
    let looping = wait_until(Duration::from_secs(90), || restarts(&mut svc) >= 1.0);
    assert!(
        looping,
        "the pipeline never restarted; log:\n{}",
        svc.log_text()
    );
    // From the first restart on, no pipeline gets a checkpoint through: never ready.
    let mut answers = (0, 0);
    let third = wait_until(Duration::from_secs(120), || {
        match svc.get("/readyz") {
            Some((200, _)) => answers.0 += 1,
            Some(_) => answers.1 += 1,
            None => {}
        }
        restarts(&mut svc) >= 3.0
    });
    assert!(third, "fewer than 3 restarts; log:\n{}", svc.log_text());
    assert_eq!(
        answers.0,
        0,
        "/readyz answered 200 {} times (503 {} times) while the pipeline restart-looped without a commit; log:\n{}",
        answers.0,
        answers.1,
        svc.log_text()
    );
    assert!(svc.get("/healthz").is_some_and(|(code, _)| code == 200));
}

#[test]
fn events_replayed_by_a_fresh_pipeline_are_counted_once() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = topics_without_dlq(&bootstrap, "countonce");
    let valid = around_one_bad_message(&bootstrap, &t);
    let mut svc = Service::start_with(&bootstrap, &t, &FAST_UNKNOWN_TOPIC);
    let replayed = wait_until(Duration::from_secs(90), || {
        svc.try_metrics()
            .is_some_and(|m| m.sum("churnguard_pipeline_restarts_total", &[]) >= 2.0)
    });
    assert!(replayed, "no restarts; log:\n{}", svc.log_text());
    // The dead-letter topic appears: the next pipeline gets through and commits to the end.
    create_topic(&bootstrap, &t.dlq, 1);
    let done = wait_until(Duration::from_secs(120), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(done, "never committed to the end; log:\n{}", svc.log_text());
    let m = svc.metrics();
    assert_eq!(
        (
            m.sum("churnguard_events_consumed_total", &[]),
            m.sum("churnguard_events_rejected_total", &[])
        ),
        (valid as f64, 1.0),
        "each input message counted once although {} pipelines read it",
        m.sum("churnguard_pipeline_restarts_total", &[]) + 1.0
    );
}

/// librdkafka's statistics are off here, as for a partition it has not reported on yet: the lag
/// must come from the broker's high watermark and the position the pipeline knows.
#[test]
fn lag_is_reported_for_partitions_librdkafka_has_not_reported_on() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "lag", 2);
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 300,
        days: 150,
        end: now_ms() - 60_000,
        churn_share: 0.3,
        seed: 47,
    });
    let total = events.len() as u64;
    produce_events(&bootstrap, &t.input, &events);
    let mut svc = Service::start_with(
        &bootstrap,
        &t,
        &[
            "--kafka-option",
            "statistics.interval.ms=0",
            "--kafka-option",
            "max.partition.fetch.bytes=16384",
        ],
    );
    let mut seen = 0.0f64;
    let lag_seen = wait_until(Duration::from_secs(90), || {
        let Some(m) = svc.try_metrics() else {
            return false;
        };
        seen = m.sum("churnguard_consumer_lag_messages", &[]);
        seen > 0.0 || m.handled() >= total
    });
    assert!(
        lag_seen,
        "consumer_lag_messages stayed 0 for 90 s while events waited; log:\n{}",
        svc.log_text()
    );
    assert!(
        seen > 0.0,
        "consumer_lag_messages stayed 0 while {total} events waited; log:\n{}",
        svc.log_text()
    );
    let done = wait_until(Duration::from_secs(180), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(done, "never committed to the end");
    let zero = wait_until(Duration::from_secs(30), || {
        svc.try_metrics()
            .is_some_and(|m| m.sum("churnguard_consumer_lag_messages", &[]) == 0.0)
    });
    assert!(zero, "lag back to 0 once caught up");
}

#[test]
fn sigterm_with_the_broker_down_exits_non_zero() {
    let mut broker = RestartableBroker::start();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "downterm", 2);
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 600,
        days: 150,
        end: now_ms() - 60_000,
        churn_share: 0.3,
        seed: 53,
    });
    produce_events(&bootstrap, &t.input, &events);
    let total = events.len() as u64;
    let mut svc = Service::start_with(
        &bootstrap,
        &t,
        &[
            // No periodic checkpoint during the test: whatever is handled when the broker
            // stops is left to the final one (a fast run would otherwise have committed the
            // whole input before the broker was gone).
            "--commit-interval-ms",
            "600000",
            "--shutdown-timeout-secs",
            "3",
        ],
    );
    let mid_run = wait_until(Duration::from_secs(120), || {
        svc.try_metrics().is_some_and(|m| m.handled() >= total / 8)
    });
    assert!(
        mid_run,
        "service did not get going; log:\n{}",
        svc.log_text()
    );
    broker.stop();
    let not_ready = wait_until(Duration::from_secs(30), || {
        svc.get("/readyz").is_some_and(|(code, _)| code == 503)
    });
    assert!(not_ready, "/readyz still 200 with the broker down");
    let handled = svc.metrics().handled();
    let started = Instant::now();
    let status = svc.terminate(Duration::from_secs(90));
    let exit_secs = started.elapsed();
    broker.resume();
    let committed: i64 = util::committed_offsets(&bootstrap, &t.group, &t.input)
        .iter()
        .map(|&o| o.max(0))
        .sum();
    assert!(
        (committed as u64) < handled,
        "the final checkpoint had work to do: {handled} handled, {committed} committed"
    );
    assert!(
        !status.success(),
        "exit {status} after a final checkpoint that could not commit ({handled} handled, {committed} committed); log:\n{}",
        svc.log_text()
    );
    util::log(format!(
        "SIGTERM with the broker down: {status} after {exit_secs:?}"
    ));
}

#[test]
fn undelivered_messages_purged_at_exit_are_summarised_in_one_line() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = topics_without_dlq(&bootstrap, "purge");
    let bad: Vec<(String, String)> = (0..3_000)
        .map(|i| (format!("bad-{i}"), format!("{{not json {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    util::produce(&bootstrap, &t.input, &refs);
    let mut svc = Service::start_with(&bootstrap, &t, &["--shutdown-timeout-secs", "2"]);
    let handled = wait_until(Duration::from_secs(60), || {
        svc.try_metrics().is_some_and(|m| m.handled() >= 3_000)
    });
    assert!(handled, "not handled; log:\n{}", svc.log_text());
    let status = svc.terminate(Duration::from_secs(40));
    let log = svc.log_text();
    let per_message = log
        .lines()
        .filter(|l| l.contains("message delivery failed"))
        .count();
    assert!(
        per_message <= 1,
        "{per_message} log lines for single failed deliveries; the purge must be summarised"
    );
    let summary: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("purged") && l.contains("3000"))
        .collect();
    assert_eq!(
        summary.len(),
        1,
        "one line with the count of purged messages; log:\n{log}"
    );
    assert!(
        !status.success(),
        "exit {status} although 3000 dead letters were never delivered"
    );
}

/// Produces one record, with or without key and payload, and waits for its delivery.
fn produce_raw(bootstrap: &str, topic: &str, key: Option<&str>, payload: Option<&str>) {
    let producer: FutureProducer = util::producer_config(bootstrap).create().unwrap();
    let mut record = FutureRecord::<str, str>::to(topic);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(p) = payload {
        record = record.payload(p);
    }
    let delivered = util::block_on(producer.send(record, Duration::from_secs(30)));
    assert!(delivered.is_ok(), "produce to {topic}");
}

#[test]
fn a_null_payload_is_dead_lettered_as_null_and_said_to_be_null() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "nullpayload", 1);
    produce_raw(&bootstrap, &t.input, Some("k-null"), None);
    produce_raw(&bootstrap, &t.input, Some("k-empty"), Some(""));
    let mut svc = Service::start(&bootstrap, &t);
    let handled = wait_until(Duration::from_secs(60), || {
        svc.try_metrics().is_some_and(|m| m.handled() >= 2)
    });
    assert!(handled, "not handled; log:\n{}", svc.log_text());

    let consumer: BaseConsumer = util::consumer_config(&bootstrap, &unique("read-dlq"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.dlq, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut dead: Vec<(String, Option<Vec<u8>>, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead.len() < 2 && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let detail = m
            .headers()
            .and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "churnguard.detail")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
            .unwrap_or_default();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        dead.push((key, m.payload().map(<[u8]>::to_vec), detail));
    }
    drop(tpl);
    let null = dead
        .iter()
        .find(|d| d.0 == "k-null")
        .expect("null payload dead-lettered");
    assert_eq!(null.1, None, "the dead letter keeps the payload null");
    assert!(
        null.2.contains("null payload"),
        "the detail says the payload was null: {:?}",
        null.2
    );
    let empty = dead
        .iter()
        .find(|d| d.0 == "k-empty")
        .expect("empty payload dead-lettered");
    assert!(
        !empty.2.contains("null"),
        "an empty payload is not called null: {:?}",
        empty.2
    );
}

#[test]
fn events_without_a_key_are_counted() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "nullkey", 1);
    let events = synth::scripted(now_ms() - 60_000, 10, 3, 0, 0);
    let keyless = 5.min(events.len());
    for (i, e) in events.iter().enumerate() {
        let key = (i >= keyless).then_some(e.user_id.as_str());
        produce_raw(&bootstrap, &t.input, key, Some(&encode(e)));
    }
    let mut svc = Service::start(&bootstrap, &t);
    let handled = wait_until(Duration::from_secs(60), || {
        svc.try_metrics()
            .is_some_and(|m| m.handled() >= events.len() as u64)
    });
    assert!(handled, "not handled; log:\n{}", svc.log_text());
    let m = svc.metrics();
    assert_eq!(
        m.sum("churnguard_events_consumed_total", &[]),
        events.len() as f64,
        "keyless events are accepted"
    );
    assert_eq!(
        m.sum("churnguard_events_null_key_total", &[]),
        keyless as f64,
        "keyless events are counted"
    );
}
