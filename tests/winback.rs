//! The win-back policy end to end against the real broker: every alert and outcome matches its
//! JSON Schema, opt-out and erase work, outcomes are measured per arm, and personal data planted
//! in event props appears in no alert, outcome, log line or metric.

mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{encode, Event, EventKind};
use churnguard::model::Model;
use churnguard::DAY_MS;
use util::schema::{validate_alert, validate_outcome};
use util::service::{now_ms, Service, Topics, MODEL};
use util::{create_topic, produce, shared, unique, wait_until};

const PLANTED_EMAIL: &str = "jane.planted@example.com";
const PLANTED_PHONE: &str = "+1-555-0100-7788";

fn event(user: &str, n: usize, kind: EventKind, ts: i64) -> Event {
    Event {
        event_id: format!("{user}-{n}"),
        user_id: user.into(),
        kind,
        ts,
        amount: if kind == EventKind::Purchase {
            25.0
        } else {
            0.0
        },
    }
}

/// Daily logins of `user` in `[from, to]`.
fn daily(user: &str, from: i64, to: i64) -> Vec<Event> {
    (0..)
        .map(|d| from + d * DAY_MS)
        .take_while(|t| *t <= to)
        .enumerate()
        .map(|(n, t)| event(user, n, EventKind::Login, t))
        .collect()
}

/// When the service's own engine alerts `events`' user, replaying them alone (same code, same
/// model), so the test can place a return just after the alert.
fn first_alert_ts(events: &[Event], until: i64) -> i64 {
    let model = Arc::new(Model::load(std::path::Path::new(MODEL)).expect("model"));
    let mut engine = Engine::new(EngineConfig::default(), Some(model));
    let mut out = Vec::new();
    for e in events {
        engine.advance(e.ts, &mut out);
        engine.apply(e).expect("valid event");
    }
    let mut t = events.last().expect("events").ts;
    while t < until {
        t += 3_600_000;
        engine.advance(t, &mut out);
        if let Some(a) = out.iter().find_map(|s| s.alert.as_ref()) {
            return chrono::DateTime::parse_from_rfc3339(&a.ts)
                .expect("ts")
                .timestamp_millis();
        }
    }
    panic!("the model never alerts this history");
}

#[test]
fn policy_privacy_and_outcomes_end_to_end() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "winback", 1);
    let outcomes_topic = unique("winback-outcomes");
    create_topic(&bootstrap, &outcomes_topic, 1);
    let now = now_ms();
    let (from, last) = (now - 100 * DAY_MS, now - 60 * DAY_MS);

    // Four users with the same history of daily logins that stops 60 days ago:
    //   keep     — alerted, never returns: outcome not_returned;
    //   returner — alerted, logs in two days after the alert: outcome won_back;
    //   optout   — opts out before going quiet: scored, never alerted;
    //   erased   — asks for erasure before the alert would come: no state, no alert.
    let mut events = Vec::new();
    for u in ["keep", "returner", "optout", "erased"] {
        events.extend(daily(u, from, last));
    }
    let alert_at = first_alert_ts(&daily("returner", from, last), now);
    assert!(
        alert_at + 2 * DAY_MS < now - DAY_MS,
        "alert leaves room for a return"
    );
    events.push(event(
        "returner",
        9_001,
        EventKind::Login,
        alert_at + 2 * DAY_MS,
    ));
    events.push(event("optout", 9_001, EventKind::OptOut, last + 60_000));
    events.push(event("erased", 9_001, EventKind::Erase, last + 60_000));
    // A live event moves the watermark to now, so every outcome window has closed.
    events.push(event("live", 0, EventKind::PageView, now - 60_000));
    events.sort_by_key(|e| e.ts);
    // Personal data in props, on valid and on malformed events; first in the stream, so the
    // valid one is not too late.
    let pii: Vec<(String, String)> = vec![
        (
            "keep".into(),
            format!(
                r#"{{"event_id":"pii-1","user_id":"keep","type":"page_view","ts":"{}","props":{{"email":"{PLANTED_EMAIL}","phone":"{PLANTED_PHONE}"}}}}"#,
                churnguard::alert::rfc3339(from)
            ),
        ),
        (
            "keep".into(),
            format!(
                r#"{{"user_id":"keep","type":"signup","props":{{"email":"{PLANTED_EMAIL}"}}}}"#
            ),
        ),
    ];
    let payloads: Vec<(String, String)> = pii
        .into_iter()
        .chain(events.iter().map(|e| (e.user_id.clone(), encode(e))))
        .collect();
    let records: Vec<(&str, &str)> = payloads
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    produce(&bootstrap, &t.input, &records);

    let mut svc = Service::start_with(&bootstrap, &t, &["--outcome-topic", &outcomes_topic]);
    let handled = wait_until(Duration::from_secs(90), || {
        let m = svc.metrics();
        m.handled() >= records.len() as u64
            && m.sum("churnguard_winback_outcomes_total", &[]) >= 2.0
    });
    assert!(handled, "not all handled; log:\n{}", svc.log_text());

    // Alerts: the schema holds for each; only keep and returner were alerted.
    let alerts = util::consume_all(&bootstrap, &t.alerts, 2, Duration::from_secs(20));
    let mut by_user: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (key, payload, _) in &alerts {
        let v: serde_json::Value = serde_json::from_str(payload).expect("alert JSON");
        validate_alert(&v).unwrap_or_else(|e| panic!("alert fails its schema: {e}\n{v}"));
        assert_eq!(v["user_id"].as_str(), Some(key.as_str()));
        by_user.entry(key.clone()).or_default().push(v);
    }
    assert_eq!(
        by_user.keys().map(String::as_str).collect::<Vec<_>>(),
        ["keep", "returner"],
        "{alerts:?}"
    );

    // Outcomes: schema, each about one published alert and in its arm. The returner went quiet
    // again after coming back, so may have a second alert (and outcome) of their own.
    let outcomes = util::consume_all(&bootstrap, &outcomes_topic, 2, Duration::from_secs(20));
    let mut outcome_of = BTreeMap::new();
    for (key, payload, _) in &outcomes {
        let v: serde_json::Value = serde_json::from_str(payload).expect("outcome JSON");
        validate_outcome(&v).unwrap_or_else(|e| panic!("outcome fails its schema: {e}\n{v}"));
        let n = by_user[key.as_str()]
            .iter()
            .position(|a| a["alert_id"] == v["alert_id"])
            .unwrap_or_else(|| panic!("outcome for an unknown alert: {v}"));
        assert_eq!(
            v["experiment_arm"],
            by_user[key.as_str()][n]["experiment_arm"]
        );
        outcome_of.insert(
            (key.clone(), n),
            v["outcome"].as_str().unwrap_or("").to_string(),
        );
    }
    assert_eq!(
        outcome_of.get(&("keep".to_string(), 0)).map(String::as_str),
        Some("not_returned")
    );
    assert_eq!(
        outcome_of
            .get(&("returner".to_string(), 0))
            .map(String::as_str),
        Some("won_back")
    );

    let m = svc.metrics();
    assert!(
        m.sum(
            "churnguard_alerts_suppressed_total",
            &["reason=\"opted_out\""]
        ) >= 1.0
    );
    assert_eq!(m.sum("churnguard_users_erased_total", &[]), 1.0);
    assert_eq!(
        m.sum(
            "churnguard_winback_outcomes_total",
            &["outcome=\"won_back\""]
        ),
        1.0
    );
    assert_eq!(
        m.sum("churnguard_alerts_published_total", &[]),
        alerts.len() as f64
    );

    // No personal data anywhere but the DLQ copy of the refused input.
    let everything = format!("{}\n{}\n{:?}\n{:?}", svc.log_text(), m.0, alerts, outcomes);
    for planted in [PLANTED_EMAIL, PLANTED_PHONE] {
        assert!(!everything.contains(planted), "{planted} leaked");
    }
    assert_eq!(m.sum("churnguard_events_rejected_total", &[]), 1.0);
}
