//! Silent users against the real broker: churners stop sending events, so the service must
//! notice them on timers — both while other users keep the topic busy and when the whole topic
//! has gone quiet.

mod util;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use churnguard::event::{encode, Event, EventKind};
use churnguard::DAY_MS;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use util::service::{now_ms, Service, Topics};
use util::{producer_config, shared, wait_until};

/// Daily logins (and a weekly purchase) of `user` between `from` and `to` (ms).
fn daily(user: &str, from: i64, to: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut t = from;
    let mut day = 0;
    while t <= to {
        out.push(Event {
            event_id: format!("{user}-{day}"),
            user_id: user.into(),
            kind: EventKind::Login,
            ts: t,
            amount: 0.0,
        });
        if day % 7 == 0 {
            out.push(Event {
                event_id: format!("{user}-{day}-p"),
                user_id: user.into(),
                kind: EventKind::Purchase,
                ts: t + 60_000,
                amount: 30.0,
            });
        }
        t += DAY_MS;
        day += 1;
    }
    out
}

/// Produces events to one explicit partition, in order, waiting for delivery.
fn produce_to(producer: &BaseProducer, topic: &str, partition: i32, events: &[Event]) {
    for e in events {
        let payload = encode(e);
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .key(e.user_id.as_str())
            .payload(payload.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn alerted_users(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
) -> Vec<(String, serde_json::Value)> {
    util::consume_all(bootstrap, topic, at_least, Duration::from_secs(20))
        .into_iter()
        .map(|(k, p, _)| (k, serde_json::from_str(&p).expect("alert JSON")))
        .collect()
}

#[test]
fn a_silent_user_is_alerted_while_others_keep_the_topic_busy() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "busy", 2);
    let producer: BaseProducer = producer_config(&bootstrap).create().expect("producer");
    let now = now_ms();
    // The quiet user's partition goes idle 45 days ago; partition 1 stays busy up to now.
    produce_to(
        &producer,
        &t.input,
        0,
        &daily("quiet", now - 100 * DAY_MS, now - 45 * DAY_MS),
    );
    // A partition carries its users' events interleaved in time, as a real topic does: one
    // user's whole history after another's would put later users days behind the partition's
    // own clock, and the service rightly refuses those as `too_late`.
    let busy: Vec<String> = (0..4).map(|i| format!("busy-{i}")).collect();
    let mut history: Vec<Event> = busy
        .iter()
        .flat_map(|u| daily(u, now - 100 * DAY_MS, now - 60_000))
        .collect();
    history.sort_by_key(|e| e.ts);
    produce_to(&producer, &t.input, 1, &history);

    // Keep partition 1 busy with live events for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let (stop, topic, busy, bootstrap) = (
            Arc::clone(&stop),
            t.input.clone(),
            busy.clone(),
            bootstrap.clone(),
        );
        std::thread::spawn(move || {
            let producer: BaseProducer = producer_config(&bootstrap).create().expect("producer");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let user = &busy[(n % busy.len() as u64) as usize];
                let e = Event {
                    event_id: format!("live-{n}"),
                    user_id: user.clone(),
                    kind: EventKind::PageView,
                    ts: now_ms(),
                    amount: 0.0,
                };
                produce_to(&producer, &topic, 1, &[e]);
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };

    let mut svc = Service::start(&bootstrap, &t);
    let alerted = wait_until(Duration::from_secs(90), || {
        svc.metrics().sum("churnguard_alerts_published_total", &[]) >= 1.0
    });
    let consumed_before = svc
        .metrics()
        .sum("churnguard_events_consumed_total", &["type=\"page_view\""]);
    stop.store(true, Ordering::Relaxed);
    let live_events = live.join().expect("live producer");
    assert!(alerted, "no alert; log:\n{}", svc.log_text());
    assert!(
        consumed_before > 0.0 && live_events > 0,
        "the topic was busy during the test"
    );
    let alerts = alerted_users(&bootstrap, &t.alerts, 1);
    let users: BTreeSet<&str> = alerts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        users,
        BTreeSet::from(["quiet"]),
        "only the silent user: {alerts:?}"
    );
    assert_eq!(alerts[0].1["trigger"], "timer");
    assert!(
        ["grace", "dormant", "at_risk"].contains(&alerts[0].1["lifecycle_state"].as_str().unwrap()),
        "{}",
        alerts[0].1
    );
    let m = svc.metrics();
    assert!(
        m.sum(
            "churnguard_lifecycle_transitions_total",
            &["to=\"at_risk\""]
        ) >= 1.0
    );
    assert_eq!(
        m.sum("churnguard_events_rejected_total", &[]),
        0.0,
        "every event of the test was in time: none refused"
    );
    assert!(m.sum("churnguard_users_by_lifecycle_state", &["state=\"active\""]) >= 4.0);
}

#[test]
fn a_silent_user_is_alerted_when_the_whole_topic_has_gone_quiet() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "quiet", 1);
    let producer: BaseProducer = producer_config(&bootstrap).create().expect("producer");
    let now = now_ms();
    // Nothing arrives after this user's last event: only the wall clock can move time on.
    produce_to(
        &producer,
        &t.input,
        0,
        &daily("alone", now - 100 * DAY_MS, now - 45 * DAY_MS),
    );
    let mut svc = Service::start(&bootstrap, &t);
    let alerted = wait_until(Duration::from_secs(90), || {
        svc.metrics()
            .sum("churnguard_alerts_published_total", &["trigger=\"timer\""])
            >= 1.0
    });
    assert!(
        alerted,
        "no timer alert once the topic went quiet; log:\n{}",
        svc.log_text()
    );
    let alerts = alerted_users(&bootstrap, &t.alerts, 1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0, "alone");
    let watermark = svc
        .metrics()
        .sum("churnguard_event_time_watermark_seconds", &[]);
    assert!(
        watermark * 1000.0 >= (now - 60_000) as f64,
        "the wall clock drove the engine clock: {watermark}"
    );
}
