//! Event mappings end to end: the shipped presets on their sample files through
//! `churnguard check-mapping`, and a Segment-style topic on the broker producing exactly the
//! alerts the same activity produces in the native schema.

mod util;

use std::process::Command;

use churnguard::event::{Event, EventKind};
use churnguard::{synth, DAY_MS};
use util::service::{alert_ids_to_the_end, now_ms, produce_events, run_to_the_end};
use util::{create_topic, produce, shared, unique};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check_mapping(sample: &str, mapping: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["check-mapping", "--show", "0", "--events"])
        .arg(format!("{ROOT}/deploy/mappings/samples/{sample}"))
        .arg("--event-mapping")
        .arg(format!("{ROOT}/deploy/mappings/{mapping}"))
        .output()
        .expect("run churnguard");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The line of the histogram for `label` with its count, e.g. `purchase 1`.
fn count(text: &str, label: &str) -> u64 {
    text.lines()
        .map(str::split_whitespace)
        .filter_map(|mut w| (w.next() == Some(label)).then(|| w.next()).flatten())
        .find_map(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} count in:\n{text}"))
}

#[test]
fn every_preset_reads_its_sample_as_documented() {
    let (ok, text) = check_mapping("segment.jsonl", "segment.toml");
    assert!(ok, "{text}");
    assert_eq!(count(&text, "events"), 9, "{text}");
    assert_eq!(count(&text, "purchase"), 1);
    assert_eq!(count(&text, "identify"), 1);
    assert_eq!(count(&text, "anonymous"), 1);
    assert_eq!(count(&text, "refused"), 4);
    assert!(
        text.contains("segment.jsonl:13: currency \"EUR\""),
        "{text}"
    );
    assert!(
        text.contains("segment.jsonl:16:"),
        "the cut-off last line is named: {text}"
    );

    let (ok, text) = check_mapping("snowplow.jsonl", "snowplow.toml");
    assert!(ok, "{text}");
    assert_eq!(count(&text, "events"), 4, "{text}");
    assert_eq!(count(&text, "cart_add"), 1);
    assert_eq!(count(&text, "page_ping"), 1);
    assert_eq!(count(&text, "unknown_type"), 1);
    assert!(
        text.contains("derived_tstamp"),
        "the missing time names its field: {text}"
    );

    let (ok, text) = check_mapping("custom-example.jsonl", "custom-example.toml");
    assert!(ok, "{text}");
    assert_eq!(count(&text, "purchase"), 2, "{text}");
    assert_eq!(
        count(&text, "debug_*"),
        1,
        "counted under the pattern, not the raw name"
    );
    assert_eq!(count(&text, "invalid_amount"), 1, "JPY has no rate");
}

#[test]
fn check_mapping_fails_when_the_mapping_refuses_most_records() {
    // The Segment sample read as native events: almost nothing has the native fields.
    let out = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["check-mapping", "--events"])
        .arg(format!("{ROOT}/deploy/mappings/samples/segment.jsonl"))
        .output()
        .expect("run churnguard");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("refuses 16 of 16 records"), "{text}");
    assert!(text.contains("missing_field"), "{text}");
}

#[test]
fn a_refused_mapping_file_stops_the_service_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\nx = \"buy\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["run", "--brokers", "127.0.0.1:1", "--event-mapping"])
        .arg(&path)
        .output()
        .expect("run churnguard");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("bad.toml, line 7"), "{text}");
    assert!(text.contains("not a churnguard type"), "{text}");
}

/// The Segment call that carries `e` (see deploy/mappings/segment.toml), plus the
/// Segment-only noise the preset ignores.
fn as_segment(e: &Event) -> serde_json::Value {
    let ts = chrono::DateTime::from_timestamp_millis(e.ts)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let track = |name: &str, properties: serde_json::Value| {
        serde_json::json!({
            "type": "track", "event": name, "userId": e.user_id, "messageId": e.event_id,
            "timestamp": ts, "anonymousId": format!("anon-{}", e.user_id),
            "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
            "properties": properties,
        })
    };
    let money = serde_json::json!({"revenue": e.amount, "currency": "USD"});
    match e.kind {
        EventKind::Purchase => track("Order Completed", money),
        EventKind::Refund => track("Order Refunded", serde_json::json!({"total": e.amount})),
        EventKind::CartAdd => track("Product Added", serde_json::json!({"product_id": "p1"})),
        EventKind::CartRemove => track("Product Removed", serde_json::json!({})),
        EventKind::CouponRedeem => track("Coupon Applied", serde_json::json!({"coupon_id": "c"})),
        EventKind::Search => track("Products Searched", serde_json::json!({"query": "q"})),
        EventKind::Review => track("Product Reviewed", serde_json::json!({"rating": 5})),
        EventKind::Share => track("Product Shared", serde_json::json!({})),
        EventKind::Login => track("Signed In", serde_json::json!({})),
        EventKind::SessionEnd => track("Signed Out", serde_json::json!({})),
        EventKind::CampaignOpen => track("Email Opened", serde_json::json!({})),
        EventKind::OptOut => track("Unsubscribed", serde_json::json!({})),
        EventKind::PageView => serde_json::json!({
            "type": "page", "name": "Product", "userId": e.user_id, "messageId": e.event_id,
            "timestamp": ts, "properties": {"path": "/p/1"},
        }),
        other => panic!("no Segment call for {other}"),
    }
}

#[test]
fn a_segment_topic_gives_the_alerts_of_the_same_activity_in_the_native_schema() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 300,
        days: 150,
        // Further back than the retention, so both runs end with every user's last timer fired.
        end: now_ms() - 500 * DAY_MS,
        churn_share: 0.3,
        seed: 7,
    });
    // Complaints have no Segment spec name; both runs get the same activity without them.
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.kind != EventKind::Complaint)
        .collect();

    let native = unique("native-in");
    create_topic(&bootstrap, &native, 3);
    produce_events(&bootstrap, &native, &events);

    let segment = unique("segment-in");
    create_topic(&bootstrap, &segment, 3);
    let mut records: Vec<(String, String)> = Vec::with_capacity(events.len() * 11 / 10);
    for (i, e) in events.iter().enumerate() {
        records.push((e.user_id.clone(), as_segment(e).to_string()));
        if i % 10 == 0 {
            // Identify calls and anonymous browsing: ignored by the preset, never alerts.
            let ts = chrono::DateTime::from_timestamp_millis(e.ts)
                .unwrap()
                .to_rfc3339();
            let identify = serde_json::json!({"type": "identify", "userId": e.user_id,
                "messageId": format!("id-{i}"), "timestamp": ts, "traits": {"plan": "gold"}});
            records.push((e.user_id.clone(), identify.to_string()));
            let anonymous = serde_json::json!({"type": "track", "event": "Product Viewed",
                "anonymousId": format!("visitor-{i}"), "messageId": format!("an-{i}"),
                "timestamp": ts});
            records.push((format!("visitor-{i}"), anonymous.to_string()));
        }
    }
    let borrowed: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for chunk in borrowed.chunks(20_000) {
        produce(&bootstrap, &segment, chunk);
    }

    let from_native = alert_ids_to_the_end(&bootstrap, &native, "native", &[]);
    let preset = format!("{ROOT}/deploy/mappings/segment.toml");
    let (from_segment, metrics) = run_to_the_end(
        &bootstrap,
        &segment,
        "segment",
        &["--event-mapping", &preset],
    );
    assert!(!from_native.is_empty(), "the stream has churners to alert");
    let only_native: Vec<_> = from_native.difference(&from_segment).take(5).collect();
    let only_segment: Vec<_> = from_segment.difference(&from_native).take(5).collect();
    assert!(
        only_native.is_empty() && only_segment.is_empty(),
        "{} alerts from native events, {} from Segment calls; only native {only_native:?}, \
         only Segment {only_segment:?}",
        from_native.len(),
        from_segment.len()
    );
    let noise = records.len() - events.len();
    assert_eq!(
        metrics.sum(
            "churnguard_events_ignored_total",
            &["source_type=\"identify\""]
        ) + metrics.sum(
            "churnguard_events_ignored_total",
            &["source_type=\"anonymous\""]
        ),
        noise as f64,
        "every identify call and anonymous visit counted as ignored"
    );
    assert_eq!(metrics.sum("churnguard_events_rejected_total", &[]), 0.0);
    assert_eq!(
        metrics.sum("churnguard_model_mapping_mismatch", &[]),
        1.0,
        "the shipped model was trained on native events"
    );
    util::log(format!(
        "{} events ({} Segment calls with noise): the same {} alerts from both schemas",
        events.len(),
        records.len(),
        from_native.len()
    ));
}

/// `train` through the Segment preset on Segment calls fits the model it fits on the same
/// activity in the native schema, and records the mapping's fingerprint; a service serving it
/// under the same mapping reports no mismatch (checked offline here through the artifact).
#[test]
fn training_through_a_mapping_fits_the_native_model_and_records_the_mapping() {
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 400,
        days: 200,
        end: now_ms() - 30 * DAY_MS,
        churn_share: 0.3,
        seed: 11,
    });
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.kind != EventKind::Complaint)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native.jsonl");
    let segment = dir.path().join("segment.jsonl");
    let lines =
        |f: &dyn Fn(&Event) -> String| -> String { events.iter().map(|e| f(e) + "\n").collect() };
    std::fs::write(&native, lines(&|e| churnguard::event::encode(e))).unwrap();
    std::fs::write(&segment, lines(&|e| as_segment(e).to_string())).unwrap();
    let preset = format!("{ROOT}/deploy/mappings/segment.toml");
    let train = |events: &std::path::Path, out: &str, mapping: Option<&str>| {
        let out = dir.path().join(out);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
        cmd.args(["train", "--horizon-days", "60", "--events"])
            .arg(events)
            .arg("--out")
            .arg(&out);
        if let Some(m) = mapping {
            cmd.args(["--event-mapping", m]);
        }
        let o = cmd.output().expect("run churnguard train");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let from_native = train(&native, "native.json", None);
    let from_segment = train(&segment, "segment.json", Some(&preset));
    assert_eq!(
        from_native["features"], from_segment["features"],
        "same coefficients"
    );
    assert_eq!(from_native["intercept"], from_segment["intercept"]);
    assert_eq!(from_native["threshold"], from_segment["threshold"]);
    assert!(from_native["training"].get("event_mapping").is_none());
    let fingerprint = churnguard::mapping::load(std::path::Path::new(&preset))
        .unwrap()
        .fingerprint();
    assert_eq!(
        from_segment["training"]["event_mapping"],
        fingerprint.as_str()
    );
}
