//! Avro input against an independent writer: Python's `fastavro` writes Confluent-framed
//! payloads (`tests/avro_writer.py`) for the shipped example schemas (`deploy/mappings/avro/`),
//! well-formed and broken; churnguard reads them through `deploy/mappings/avro-example.toml`
//! and every event field and every refusal is checked, in the library and in `check-mapping`.
//!
//! Without `fastavro` the test is skipped with a message, unless `CI` is set: then it fails
//! (`.ci/run` installs it).
#![cfg(feature = "avro")]

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
