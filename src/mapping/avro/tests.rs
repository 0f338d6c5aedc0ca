use std::path::Path;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use proptest::prelude::*;

use super::*;
use crate::event::EventKind;
use crate::mapping::{load, Decoded, EventDecoder};

const NOW: i64 = 4_000_000_000_000;
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mappings");

fn shipped() -> (AvroSchemas, EventDecoder) {
    let schemas = AvroSchemas::load(&Path::new(DEPLOY).join("avro")).unwrap();
    let again = AvroSchemas::load(&Path::new(DEPLOY).join("avro")).unwrap();
    let mapping = load(&Path::new(DEPLOY).join("avro-example.toml")).unwrap();
    (again, EventDecoder::mapped(mapping).with_avro(schemas))
}

fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![MAGIC_BYTE];
    out.extend(id.to_be_bytes());
    out.extend(datum);
    out
}

/// A version-1 order as apache-avro itself writes it (the independent writer is in
/// tests/avro_input.rs).
fn order_v1(user: Option<&str>, revenue_cents: i64) -> Avro {
    let union = |i: u32, v: Avro| Avro::Union(i, Box::new(v));
    let revenue = Avro::Decimal(apache_avro::Decimal::from(revenue_cents.to_be_bytes()));
    Avro::Record(vec![
        ("event_id".into(), Avro::String("e-1".into())),
        (
            "user_id".into(),
            user.map_or(union(0, Avro::Null), |u| union(1, Avro::String(u.into()))),
        ),
        ("anonymous_id".into(), Avro::String("anon-1".into())),
        ("event_type".into(), Avro::Enum(0, "ORDER_COMPLETED".into())),
        (
            "occurred_at".into(),
            Avro::TimestampMillis(1_765_566_661_249),
        ),
        (
            "properties".into(),
            Avro::Record(vec![
                ("order_id".into(), union(1, Avro::String("o-9".into()))),
                ("revenue".into(), union(1, revenue)),
                ("currency".into(), union(1, Avro::String("EUR".into()))),
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
                (
                    "session_digest".into(),
                    union(1, Avro::Fixed(20, vec![7; 20])),
                ),
                ("consent".into(), Avro::Boolean(true)),
            ]),
        ),
    ])
}

fn schema_1(s: &AvroSchemas) -> &Schema {
    &s.get(1).unwrap().schema
}

#[test]
fn a_datum_becomes_the_json_a_mapping_reads() {
    let (schemas, decoder) = shipped();
    let datum =
        apache_avro::to_avro_datum(schema_1(&schemas), order_v1(Some("u-7"), 2_550)).unwrap();
    let json = schemas.decode(&framed(1, &datum)).unwrap();
    assert_eq!(json["user_id"], "u-7");
    assert_eq!(json["event_type"], "ORDER_COMPLETED");
    assert_eq!(json["occurred_at"], "2025-12-12T19:11:01.249Z");
    assert_eq!(json["properties"]["revenue"], 25.5);
    assert_eq!(json["properties"]["product_ids"][0], "p1");
    assert_eq!(
        json["context"]["session_digest"],
        "BwcHBwcHBwcHBwcHBwcHBwcHBwc="
    );
    assert_eq!(json["context"]["consent"], true);

    let Ok(Decoded::Event(e)) = decoder.decode(&framed(1, &datum), NOW, 0) else {
        panic!("not an event")
    };
    assert_eq!((e.user_id.as_str(), e.event_id.as_str()), ("u-7", "e-1"));
    assert_eq!(e.kind, EventKind::Purchase);
    assert_eq!(e.ts, 1_765_566_661_249);
    assert!(
        (e.amount - 25.5 * 1.08).abs() < 1e-9,
        "EUR at the mapping's rate"
    );

    let anonymous = apache_avro::to_avro_datum(schema_1(&schemas), order_v1(None, 0)).unwrap();
    assert_eq!(
        decoder.decode(&framed(1, &anonymous), NOW, 0),
        Ok(Decoded::Ignored {
            source_type: crate::mapping::ANONYMOUS.into()
        })
    );
}

#[test]
fn decimals_keep_their_scale_and_sign() {
    for (bytes, scale, expected) in [
        (vec![0x04, 0xe2], 2, 12.5),
        (vec![0xfb, 0x1e], 2, -12.5),
        (vec![0x07], 0, 7.0),
        (vec![0x01], 3, 0.001),
        (vec![], 2, 0.0),
    ] {
        let got = json::decimal(&bytes, scale).unwrap().as_f64();
        assert_eq!(got, Some(expected), "{bytes:?}");
    }
}

#[test]
fn every_broken_frame_is_refused_with_what_is_wrong() {
    let (schemas, decoder) = shipped();
    let datum = apache_avro::to_avro_datum(schema_1(&schemas), order_v1(Some("u"), 1)).unwrap();
    let detail = |payload: &[u8]| match decoder.decode(payload, NOW, 0) {
        Err(r) => {
            assert_eq!(r.reason, crate::event::RejectReason::MalformedJson, "{r}");
            r.detail
        }
        other => panic!("{payload:?}: {other:?}"),
    };
    assert!(detail(b"").contains("0 bytes is too short"));
    assert!(detail(br#"{"user_id":"u"}"#).contains("looks like JSON"));
    assert!(detail(&framed(42, &datum)).contains("unknown schema id 42 (schemas from "));
    let mut trailing = framed(1, &datum);
    trailing.push(0);
    assert!(detail(&trailing).contains("1 bytes left after the datum"));
    for cut in 0..datum.len() {
        let d = detail(&framed(1, &datum[..cut]));
        assert!(d.starts_with("Avro: "), "cut at {cut}: {d}");
    }
}

#[test]
fn schemas_an_event_cannot_be_read_from_are_refused_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    assert!(matches!(
        AvroSchemas::load(dir.path()),
        Err(AvroSchemaError::Empty(_))
    ));
    write("README.md", "not a schema: ignored");
    write(
        "7.avsc",
        r#"{"type":"record","name":"E","fields":[{"name":"a","type":"long"}]}"#,
    );
    assert_eq!(
        AvroSchemas::load(dir.path())
            .unwrap()
            .ids()
            .collect::<Vec<_>>(),
        [7]
    );
    let refused = |name: &str, text: &str, why: &str| {
        write(name, text);
        let e = AvroSchemas::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(why), "{e}");
        std::fs::remove_file(dir.path().join(name)).unwrap();
    };
    refused("latest.avsc", "{}", "must be the schema id");
    refused("8.avsc", "{\"type\":", "invalid Avro schema");
    refused("9.avsc", r#""string""#, "must be a record");
    refused(
        "10.avsc",
        r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        "recursive",
    );
    refused(
        "11.avsc",
        r#"{"type":"record","name":"E","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#,
        "take no bytes",
    );
}

/// A schema with every kind of field, for the property tests.
const EVERYTHING: &str = r#"{"type":"record","name":"All","fields":[
  {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
  {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},
  {"name":"by","type":"bytes"},{"name":"fx","type":{"type":"fixed","name":"F","size":3}},
  {"name":"e","type":{"type":"enum","name":"En","symbols":["A","B"]}},
  {"name":"u","type":["null","string","long"]},
  {"name":"a","type":{"type":"array","items":{"type":"array","items":"int"}}},
  {"name":"m","type":{"type":"map","values":["null","F"]}},
  {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":4}},
  {"name":"dfx","type":{"type":"fixed","name":"D","size":20,"logicalType":"decimal","precision":40,"scale":2}},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"lt","type":{"type":"long","logicalType":"local-timestamp-millis"}},
  {"name":"dt","type":{"type":"int","logicalType":"date"}},
  {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
  {"name":"uu","type":{"type":"string","logicalType":"uuid"}},
  {"name":"du","type":{"type":"fixed","name":"Du","size":12,"logicalType":"duration"}},
  {"name":"r","type":{"type":"record","name":"R","fields":[{"name":"again","type":"F"}]}}
]}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (_, decoder) = shipped();
        let _ = decoder.decode(&payload, NOW, 0);
    }

    #[test]
    fn valid_frames_with_arbitrary_datums_never_panic(
        id in prop_oneof![Just(1u32), Just(2), Just(3), any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let schemas = AvroSchemas::from_texts([
            (3, EVERYTHING),
            (1, include_str!("../../../deploy/mappings/avro/1.avsc")),
            (2, include_str!("../../../deploy/mappings/avro/2.avsc")),
        ]).unwrap();
        let decoder = EventDecoder::native().with_avro(schemas);
        if let Err(r) = decoder.decode(&framed(id, &tail), NOW, 0) {
            prop_assert!(!r.detail.is_empty());
        }
    }

    /// A datum cut short anywhere is refused, never read as a shorter record.
    #[test]
    fn truncated_datums_are_refused(user in "[a-z]{0,12}", cents in any::<i64>(), cut in any::<prop::sample::Index>()) {
        let (schemas, decoder) = shipped();
        let datum = apache_avro::to_avro_datum(schema_1(&schemas), order_v1(Some(&user), cents)).unwrap();
        let cut = cut.index(datum.len());
        let r = decoder.decode(&framed(1, &datum[..cut]), NOW, 0);
        prop_assert!(r.is_err(), "{r:?}");
    }
}
