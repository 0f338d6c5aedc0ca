//! Avro input against an independent writer: Python's `fastavro` writes Confluent-framed
//! payloads (`tests/avro_writer.py`) for the shipped example schemas (`deploy/mappings/avro/`),
//! well-formed and broken; churnguard reads them through `deploy/mappings/avro-example.toml`
//! and every event field and every refusal is checked, in the library and in `check-mapping`.
//!
//! A topic of Avro payloads (encoded here with apache-avro) run through the service on the
//! broker gives the same alerts as the same activity in the native schema.
//!
//! Without `fastavro` the fastavro tests are skipped with a message, unless `CI` is set: then it fails
//! (`.ci/run` installs it).
#![cfg(feature = "avro")]

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use churnguard::event::{EventKind, RejectReason};
use churnguard::mapping::avro::AvroSchemas;
use churnguard::mapping::{load, Decoded, EventDecoder, ANONYMOUS};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NOW: i64 = 4_000_000_000_000;

/// The writer's payloads by name; `None` when fastavro is missing outside CI.
fn fastavro_payloads() -> Option<BTreeMap<String, Vec<u8>>> {
    let out = Command::new("python3")
        .arg(format!("{ROOT}/tests/avro_writer.py"))
        .arg(format!("{ROOT}/deploy/mappings/avro"))
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let missing = stderr.contains("No module named 'fastavro'");
        if missing && std::env::var_os("CI").is_none() {
            eprintln!(
                "SKIPPED avro_input: Python fastavro is not installed \
                 (python3 -m pip install fastavro); CI installs it and runs this test"
            );
            return None;
        }
        panic!("tests/avro_writer.py failed (CI must install fastavro):\n{stderr}");
    }
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    Some(
        text.lines()
            .map(|line| {
                let (name, b64) = line.split_once(' ').expect("name and payload");
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64");
                (name.to_string(), payload)
            })
            .collect(),
    )
}

fn decoder() -> EventDecoder {
    let schemas = AvroSchemas::load(&Path::new(ROOT).join("deploy/mappings/avro")).unwrap();
    let mapping = load(&Path::new(ROOT).join("deploy/mappings/avro-example.toml")).unwrap();
    EventDecoder::mapped(mapping).with_avro(schemas)
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn fastavro_payloads_become_the_events_the_mapping_says() {
    let Some(payloads) = fastavro_payloads() else {
        return;
    };
    let d = decoder();
    let decode = |name: &str| d.decode(&payloads[name], NOW, 0);
    let event = |name: &str| match decode(name) {
        Ok(Decoded::Event(e)) => e,
        other => panic!("{name}: {other:?}"),
    };

    let order = event("order");
    assert_eq!(order.event_id, "ord-1001");
    assert_eq!(order.user_id, "u-42");
    assert_eq!(order.kind, EventKind::Purchase);
    assert_eq!(order.ts, ms("2025-12-12T19:11:01.249Z"), "timestamp-millis");
    assert!(
        (order.amount - 25.5 * 1.08).abs() < 1e-9,
        "decimal 25.50 EUR at the mapping's rate: {}",
        order.amount
    );

    let viewed = event("viewed");
    assert_eq!(viewed.event_id, "view-1");
    assert_eq!(viewed.kind, EventKind::PageView);
    assert_eq!(viewed.amount, 0.0, "a null revenue is no amount");

    let refund = event("refund_v2");
    assert_eq!(refund.event_id, "ref-7");
    assert_eq!(refund.kind, EventKind::Refund);
    assert_eq!(
        refund.ts,
        ms("2025-12-13T08:00:00.123Z"),
        "timestamp-micros, to the millisecond"
    );
    assert_eq!(refund.amount, 12.25, "a double, no currency: the shop's");

    let ignored = |name: &str| match decode(name) {
        Ok(Decoded::Ignored { source_type }) => source_type,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        ignored("anonymous"),
        ANONYMOUS,
        "a null user id falls back to anonymous_id"
    );
    assert_eq!(ignored("heartbeat"), "HEARTBEAT");

    let refused = |name: &str| match decode(name) {
        Err(r) => (r.reason, r.detail),
        other => panic!("{name}: {other:?}"),
    };
    let (reason, detail) = refused("negative_amount");
    assert_eq!(reason, RejectReason::InvalidAmount, "{detail}");
    let (reason, detail) = refused("yen_v2");
    assert_eq!(reason, RejectReason::InvalidAmount);
    assert!(detail.contains("JPY"), "{detail}");

    for (name, expected) in [
        ("wrong_magic", "Avro: magic byte is 0x01, not 0"),
        ("json", "looks like JSON"),
        ("unknown_id", "Avro: unknown schema id 42 (schemas from "),
        (
            "header_only",
            "Avro: datum of schema id 1 is truncated (0 bytes",
        ),
        ("too_short", "Avro: 3 bytes is too short"),
        ("truncated", "Avro: datum of schema id 1 is truncated"),
        (
            "trailing",
            "Avro: 2 bytes left after the datum of schema id 1",
        ),
    ] {
        let (reason, detail) = refused(name);
        assert_eq!(reason, RejectReason::MalformedJson, "{name}: {detail}");
        assert!(detail.contains(expected), "{name}: {detail}");
    }
    let (_, detail) = refused("v2_framed_as_v1");
    assert!(
        detail.starts_with("Avro: "),
        "a datum read with another writer schema: {detail}"
    );
}

#[test]
fn check_mapping_reads_a_base64_sample_of_avro_payloads() {
    let Some(payloads) = fastavro_payloads() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample.b64");
    let lines: Vec<String> = ["order", "viewed", "heartbeat", "refund_v2", "unknown_id"]
        .iter()
        .map(|n| base64::engine::general_purpose::STANDARD.encode(&payloads[*n]))
        .chain(["not base64!".to_string()])
        .collect();
    std::fs::write(&sample, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["check-mapping", "--show", "0", "--events"])
        .arg(&sample)
        .arg("--event-mapping")
        .arg(format!("{ROOT}/deploy/mappings/avro-example.toml"))
        .arg("--avro-schemas")
        .arg(format!("{ROOT}/deploy/mappings/avro"))
        .output()
        .expect("run churnguard");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let line = |label: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(text.contains("6 records"), "{text}");
    assert_eq!(line("purchase"), Some(1), "{text}");
    assert_eq!(line("refund"), Some(1), "{text}");
    assert_eq!(line("HEARTBEAT"), Some(1), "{text}");
    assert_eq!(line("malformed_json"), Some(2), "{text}");
    assert!(text.contains("unknown schema id 42"), "{text}");
    assert!(text.contains("not base64"), "{text}");
}

/// The version-1 datum (deploy/mappings/avro/1.avsc) of the tracker event that carries `e`;
/// `None` for kinds the example mapping has no symbol for.
fn as_avro(
    e: &churnguard::event::Event,
    user: Option<&str>,
    symbol: Option<&str>,
) -> Option<apache_avro::types::Value> {
    use apache_avro::types::Value as Avro;
    let symbol = symbol.or(match e.kind {
        EventKind::Purchase => Some("ORDER_COMPLETED"),
        EventKind::Refund => Some("ORDER_REFUNDED"),
        EventKind::PageView => Some("PRODUCT_VIEWED"),
        EventKind::CartAdd => Some("PRODUCT_ADDED"),
        EventKind::CartRemove => Some("PRODUCT_REMOVED"),
        EventKind::Search => Some("PRODUCTS_SEARCHED"),
        EventKind::CouponRedeem => Some("COUPON_APPLIED"),
        EventKind::Login => Some("APP_OPENED"),
        EventKind::SessionEnd => Some("APP_CLOSED"),
        _ => None,
    })?;
    const SYMBOLS: [&str; 10] = [
        "ORDER_COMPLETED",
        "ORDER_REFUNDED",
        "PRODUCT_VIEWED",
        "PRODUCT_ADDED",
        "PRODUCT_REMOVED",
        "PRODUCTS_SEARCHED",
        "COUPON_APPLIED",
        "APP_OPENED",
        "APP_CLOSED",
        "HEARTBEAT",
    ];
    let index = SYMBOLS.iter().position(|s| *s == symbol)? as u32;
    let union = |i: u32, v: Avro| Avro::Union(i, Box::new(v));
    let cents = (e.amount * 100.0).round() as i64;
    let revenue = if cents > 0 {
        union(
            1,
            Avro::Decimal(apache_avro::Decimal::from(cents.to_be_bytes())),
        )
    } else {
        union(0, Avro::Null)
    };
    Some(Avro::Record(vec![
        ("event_id".into(), Avro::String(e.event_id.clone())),
        (
            "user_id".into(),
            user.map_or(union(0, Avro::Null), |u| union(1, Avro::String(u.into()))),
        ),
        (
            "anonymous_id".into(),
            Avro::String(format!("anon-{}", e.user_id)),
        ),
        ("event_type".into(), Avro::Enum(index, symbol.into())),
        ("occurred_at".into(), Avro::TimestampMillis(e.ts)),
        (
            "properties".into(),
            Avro::Record(vec![
                ("order_id".into(), union(0, Avro::Null)),
                ("revenue".into(), revenue),
                ("currency".into(), union(1, Avro::String("USD".into()))),
                (
                    "product_ids".into(),
                    Avro::Array(vec![Avro::String("p1".into())]),
                ),
                ("attributes".into(), Avro::Map(Default::default())),
            ]),
        ),
        (
            "context".into(),
            Avro::Record(vec![
                ("ip".into(), union(0, Avro::Null)),
                ("session_digest".into(), union(0, Avro::Null)),
                ("consent".into(), Avro::Boolean(true)),
            ]),
        ),
    ]))
}

/// Produces binary `(key, payload)` records and waits for every delivery.
fn produce_bytes(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = util::producer_config(bootstrap).create().expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload) in records {
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // librdkafka's queue is full: its deliveries drain it within milliseconds.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    for delivery in pending {
        match util::block_on(delivery) {
            Ok(Ok(_)) => {}
            other => panic!("delivery to {topic} failed: {other:?}"),
        }
    }
}

#[test]
fn an_avro_topic_gives_the_alerts_of_the_same_activity_in_the_native_schema() {
    use churnguard::{synth, DAY_MS};
    use util::service::{alert_ids_to_the_end, now_ms, produce_events, run_to_the_end};

    let broker = util::shared();
    let bootstrap = broker.bootstrap();
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 300,
        days: 150,
        // Further back than the retention, so both runs end with every user's last timer fired.
        end: now_ms() - 500 * DAY_MS,
        churn_share: 0.3,
        seed: 11,
    });
    // Only kinds the example mapping names; amounts in whole cents, as the decimal(12,2) holds.
    let events: Vec<churnguard::event::Event> = events
        .into_iter()
        .filter(|e| as_avro(e, None, None).is_some())
        .map(|mut e| {
            e.amount = (e.amount * 100.0).round() / 100.0;
            e
        })
        .collect();

    let native = util::unique("avro-native-in");
    util::create_topic(&bootstrap, &native, 3);
    produce_events(&bootstrap, &native, &events);

    let schema = apache_avro::Schema::parse_str(include_str!("../deploy/mappings/avro/1.avsc"))
        .expect("schema 1");
    let frame = |value| {
        let mut payload = vec![0, 0, 0, 0, 1];
        payload.extend(apache_avro::to_avro_datum(&schema, value).expect("encode"));
        payload
    };
    let mut records = Vec::with_capacity(events.len() * 11 / 10);
    for (i, e) in events.iter().enumerate() {
        let datum = as_avro(e, Some(&e.user_id), None).expect("a mapped kind");
        records.push((e.user_id.clone(), frame(datum)));
        if i % 10 == 0 {
            // Heartbeats and anonymous browsing: ignored by the mapping, never alerts.
            let mut noise = e.clone();
            noise.event_id = format!("hb-{i}");
            let heartbeat = as_avro(&noise, Some(&e.user_id), Some("HEARTBEAT")).expect("symbol");
            records.push((e.user_id.clone(), frame(heartbeat)));
            noise.event_id = format!("anon-{i}");
            let anonymous = as_avro(&noise, None, None).expect("a mapped kind");
            records.push((format!("anon-{}", e.user_id), frame(anonymous)));
        }
    }
    let avro = util::unique("avro-in");
    util::create_topic(&bootstrap, &avro, 3);
    produce_bytes(&bootstrap, &avro, &records);

    let from_native = alert_ids_to_the_end(&bootstrap, &native, "avro-native", &[]);
    let mapping = format!("{ROOT}/deploy/mappings/avro-example.toml");
    let schemas = format!("{ROOT}/deploy/mappings/avro");
    let (from_avro, metrics) = run_to_the_end(
        &bootstrap,
        &avro,
        "avro",
        &["--event-mapping", &mapping, "--avro-schemas", &schemas],
    );
    assert!(!from_native.is_empty(), "the stream has churners to alert");
    let only_native: Vec<_> = from_native.difference(&from_avro).take(5).collect();
    let only_avro: Vec<_> = from_avro.difference(&from_native).take(5).collect();
    assert!(
        only_native.is_empty() && only_avro.is_empty(),
        "{} alerts from native events, {} from Avro; only native {only_native:?}, only Avro \
         {only_avro:?}",
        from_native.len(),
        from_avro.len()
    );
    let noise = records.len() - events.len();
    assert_eq!(
        metrics.sum(
            "churnguard_events_ignored_total",
            &["source_type=\"HEARTBEAT\""]
        ) + metrics.sum(
            "churnguard_events_ignored_total",
            &["source_type=\"anonymous\""]
        ),
        noise as f64,
        "every heartbeat and anonymous visit counted as ignored"
    );
    assert_eq!(metrics.sum("churnguard_events_rejected_total", &[]), 0.0);
    util::log(format!(
        "{} events ({} Avro payloads with noise): the same {} alerts from both",
        events.len(),
        records.len(),
        from_native.len()
    ));
}
