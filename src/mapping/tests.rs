use super::*;
use crate::event::EventKind;

const NOW: Millis = 4_000_000_000_000;
const PRESETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mappings");

fn preset(name: &str) -> EventDecoder {
    let path = std::path::Path::new(PRESETS).join(name);
    EventDecoder::mapped(load(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn event(d: &EventDecoder, json: &str) -> Event {
    match d.decode(json.as_bytes(), NOW, 0) {
        Ok(Decoded::Event(e)) => e,
        other => panic!("{json}: {other:?}"),
    }
}

fn ignored(d: &EventDecoder, json: &str) -> String {
    match d.decode(json.as_bytes(), NOW, 0) {
        Ok(Decoded::Ignored { source_type }) => source_type,
        other => panic!("{json}: {other:?}"),
    }
}

fn refused(d: &EventDecoder, json: &str) -> Rejection {
    match d.decode(json.as_bytes(), NOW, 0) {
        Err(r) => r,
        other => panic!("{json}: {other:?}"),
    }
}

fn ms(rfc3339: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// A Track call as Segment's e-commerce spec documents it (context and products included).
const SEGMENT_ORDER: &str = r#"{"anonymousId":"23adfd82-aa0f-45a7-a756-24f2a7a4c895","context":{"library":{"name":"analytics.js","version":"2.11.1"},"page":{"path":"/checkout","url":"https://shop.example/checkout"},"ip":"108.0.78.21"},"event":"Order Completed","integrations":{},"messageId":"ajs-f8ca1e4de5024d9430b3928bd8ac6b96","properties":{"checkout_id":"fksdjfsdjfisjf9sdfjsd9f","order_id":"50314b8e9bcf000000000000","affiliation":"Google Store","total":27.50,"subtotal":22.50,"revenue":25.00,"shipping":3,"tax":2,"discount":2.5,"coupon":"hasbros","currency":"USD","products":[{"product_id":"507f1f77bcf86cd799439011","sku":"45790-32","name":"Monopoly: 3rd Edition","price":19,"quantity":1}]},"receivedAt":"2025-12-12T19:11:01.266Z","sentAt":"2025-12-12T19:11:01.169Z","timestamp":"2025-12-12T19:11:01.249Z","type":"track","userId":"AiUGstSDIg","originalTimestamp":"2025-12-12T19:11:01.152Z"}"#;

#[test]
fn segment_track_page_screen_and_identify_calls() {
    let d = preset("segment.toml");
    let e = event(&d, SEGMENT_ORDER);
    assert_eq!(e.user_id, "AiUGstSDIg");
    assert_eq!(e.event_id, "ajs-f8ca1e4de5024d9430b3928bd8ac6b96");
    assert_eq!(e.kind, EventKind::Purchase);
    assert_eq!(e.ts, ms("2025-12-12T19:11:01.249Z"));
    assert_eq!(e.amount, 25.0, "revenue, not total");

    let only_total = SEGMENT_ORDER.replace(r#""revenue":25.00,"#, "");
    assert_eq!(
        event(&d, &only_total).amount,
        27.5,
        "total when revenue is absent"
    );

    let viewed = r#"{"type":"track","event":"Product Viewed","userId":"u1","messageId":"m2","timestamp":"2025-12-12T19:12:00Z","properties":{"product_id":"p1","price":18.99}}"#;
    let v = event(&d, viewed);
    assert_eq!(v.kind, EventKind::PageView);
    assert_eq!(
        v.amount, 18.99,
        "amount is taken where the mapping says; kinds without money ignore it in the engine"
    );
    for (name, kind) in [
        ("Product Added", EventKind::CartAdd),
        ("Order Refunded", EventKind::Refund),
        ("Coupon Applied", EventKind::CouponRedeem),
        ("Products Searched", EventKind::Search),
        ("Product List Viewed", EventKind::PageView),
    ] {
        let json = format!(
            r#"{{"type":"track","event":"{name}","userId":"u1","messageId":"m-{name}","timestamp":"2025-12-12T19:12:00Z","properties":{{}}}}"#
        );
        assert_eq!(event(&d, &json).kind, kind, "{name}");
    }
    let page = r#"{"type":"page","name":"Home","userId":"u1","messageId":"m3","timestamp":"2025-12-12T19:13:00Z","properties":{"path":"/"}}"#;
    assert_eq!(event(&d, page).kind, EventKind::PageView);
    let screen = r#"{"type":"screen","name":"Cart","userId":"u1","messageId":"m4","timestamp":"2025-12-12T19:13:00Z"}"#;
    assert_eq!(event(&d, screen).kind, EventKind::PageView);
    let identify = r#"{"type":"identify","userId":"u1","messageId":"m5","timestamp":"2025-12-12T19:13:00Z","traits":{"email":"a@b.c"}}"#;
    assert_eq!(ignored(&d, identify), "identify");
    let custom = r#"{"type":"track","event":"Wishlist Synced","userId":"u1","messageId":"m6","timestamp":"2025-12-12T19:13:00Z"}"#;
    assert_eq!(
        ignored(&d, custom),
        UNKNOWN,
        "the preset counts unknown names"
    );
    let anonymous = r#"{"type":"track","event":"Product Viewed","anonymousId":"a1","messageId":"m7","timestamp":"2025-12-12T19:13:00Z"}"#;
    assert_eq!(ignored(&d, anonymous), ANONYMOUS);
}

#[test]
fn segment_malformed_payloads_are_refused_with_the_field_and_its_path() {
    let d = preset("segment.toml");
    let r = refused(
        &d,
        r#"{"type":"track","event":"Order Completed","messageId":"m1","timestamp":"2025-12-12T19:11:01Z"}"#,
    );
    assert_eq!(r.reason, RejectReason::MissingField);
    assert!(r.detail.contains("userId or anonymousId"), "{r}");
    let r = refused(
        &d,
        r#"{"type":"track","event":"Order Completed","userId":"u","messageId":"m1","timestamp":"yesterday"}"#,
    );
    assert_eq!(r.reason, RejectReason::BadTimestamp);
    assert!(r.detail.contains("timestamp"), "{r}");
    let r = refused(
        &d,
        r#"{"type":"track","event":"Order Completed","userId":"u","messageId":"m1","timestamp":"2025-12-12T19:11:01Z","properties":{"revenue":"lots"}}"#,
    );
    assert_eq!(r.reason, RejectReason::InvalidAmount);
    assert!(r.detail.contains("properties.revenue"), "{r}");
    let r = refused(
        &d,
        r#"{"type":"track","event":"Order Completed","userId":"u","messageId":"m1","timestamp":"2025-12-12T19:11:01Z","properties":{"revenue":10,"currency":"EUR"}}"#,
    );
    assert_eq!(r.reason, RejectReason::InvalidAmount);
    assert!(r.detail.contains("EUR"), "{r}");
    assert_eq!(
        ignored(
            &d,
            r#"{"type":"track","userId":"u","messageId":"m1","timestamp":"2025-12-12T19:11:01Z"}"#
        ),
        UNKNOWN,
        "a track call without an event name falls back to its type, which the preset leaves unmapped"
    );
    let r = refused(
        &d,
        r#"{"userId":"u","messageId":"m1","timestamp":"2025-12-12T19:11:01Z"}"#,
    );
    assert_eq!(r.reason, RejectReason::MissingField);
    assert!(r.detail.contains("event or type"), "{r}");
    for bad in [
        "",
        "[]",
        "{",
        "null",
        "\u{0}",
        r#"{"type":"track","event":"Order Completed","userId":{"id":1},"messageId":"m","timestamp":"2025-12-12T19:11:01Z"}"#,
    ] {
        let r = d.decode(bad.as_bytes(), NOW, 0);
        assert!(r.is_err(), "{bad:?}: {r:?}");
    }
    assert_eq!(
        d.decode(b"\xff\xfe", NOW, 0).unwrap_err().reason,
        RejectReason::MalformedJson
    );
}

/// An enriched event as the Snowplow Analytics SDK's JSON transform writes it (shortened: the
/// transform emits every enriched field, most of them null).
const SNOWPLOW_TRANSACTION: &str = r#"{"app_id":"shop","platform":"web","etl_tstamp":"2025-12-12T19:11:03.000Z","collector_tstamp":"2025-12-12T19:11:02.100Z","dvce_created_tstamp":"2025-12-12T19:11:01.900Z","event":"transaction","event_id":"c6ef3124-b53a-4b13-a233-0088f79dcbcb","txn_id":null,"name_tracker":"sp","v_tracker":"js-3.5.0","user_id":"jon.doe@email.com","user_ipaddress":"92.231.54.234","domain_userid":"d2d8b8b1-8ef6-46a9-8dbb-7ed7c1fd1cfa","domain_sessionidx":3,"page_url":"https://shop.example/checkout","tr_orderid":"order-123","tr_affiliation":null,"tr_total":42.5,"tr_tax":3.1,"tr_shipping":4.0,"tr_currency":"USD","event_vendor":"com.snowplowanalytics.snowplow","event_name":"transaction","event_format":"jsonschema","event_version":"1-0-0","derived_tstamp":"2025-12-12T19:11:01.950Z","contexts_org_w3_performance_timing_1":[{"navigationStart":1}]}"#;

#[test]
fn snowplow_enriched_events() {
    let d = preset("snowplow.toml");
    let e = event(&d, SNOWPLOW_TRANSACTION);
    assert_eq!(e.kind, EventKind::Purchase);
    assert_eq!(e.user_id, "jon.doe@email.com");
    assert_eq!(e.event_id, "c6ef3124-b53a-4b13-a233-0088f79dcbcb");
    assert_eq!(e.amount, 42.5);
    assert_eq!(e.ts, ms("2025-12-12T19:11:01.950Z"));
    let tsv_time =
        SNOWPLOW_TRANSACTION.replace("2025-12-12T19:11:01.950Z", "2025-12-12 19:11:01.950");
    assert_eq!(
        event(&d, &tsv_time).ts,
        ms("2025-12-12T19:11:01.950Z"),
        "the TSV form of derived_tstamp"
    );
    let page_view = r#"{"event_id":"e2","event_name":"page_view","user_id":null,"domain_userid":"d1","derived_tstamp":"2025-12-12T19:11:01.950Z","tr_total":null}"#;
    assert_eq!(
        ignored(&d, page_view),
        ANONYMOUS,
        "a null user_id falls back to the cookie id"
    );
    let ping = r#"{"event_id":"e3","event_name":"page_ping","user_id":"u","derived_tstamp":"2025-12-12T19:11:01.950Z"}"#;
    assert_eq!(ignored(&d, ping), "page_ping");
    let unknown = r#"{"event_id":"e4","event_name":"video_play","user_id":"u","derived_tstamp":"2025-12-12T19:11:01.950Z"}"#;
    let r = refused(&d, unknown);
    assert_eq!(r.reason, RejectReason::UnknownType);
    assert!(r.detail.contains("video_play"));
    let no_time = r#"{"event_id":"e5","event_name":"page_view","user_id":"u"}"#;
    assert!(refused(&d, no_time).detail.contains("derived_tstamp"));
}

#[test]
fn the_custom_example_reads_epoch_millis_cents_and_converts_currencies() {
    let d = preset("custom-example.toml");
    let e = event(
        &d,
        r#"{"uid":12345,"id":"x1","name":"checkout_success","ts_ms":1765566661249,"order":{"amount_cents":"2599","currency":"USD"}}"#,
    );
    assert_eq!(e.user_id, "12345", "a numeric id is kept as written");
    assert_eq!(e.ts, 1_765_566_661_249);
    assert!((e.amount - 25.99 * 0.92).abs() < 1e-9, "{}", e.amount);
    let eur = event(
        &d,
        r#"{"uid":"u","id":"x2","name":"checkout_success","ts_ms":"1765566661249","order":{"amount_cents":1000}}"#,
    );
    assert_eq!(eur.amount, 10.0, "no currency: the shop's");
    assert_eq!(
        ignored(
            &d,
            r#"{"uid":"u","id":"x3","name":"debug_trace","ts_ms":1}"#
        ),
        "debug_*"
    );
    let r = refused(
        &d,
        r#"{"uid":"u","id":"x4","name":"checkout_success","ts_ms":1765566661249,"order":{"amount_cents":100,"currency":"JPY"}}"#,
    );
    assert_eq!(r.reason, RejectReason::InvalidAmount);
}

#[test]
fn times_in_every_declared_format() {
    let t = ms("2025-12-12T19:11:01.249Z");
    assert_eq!(
        parse_time("2025-12-12T20:11:01.249+01:00", false, TimeFormat::Rfc3339),
        Some(t)
    );
    assert_eq!(
        parse_time("2025-12-12 19:11:01.249", false, TimeFormat::NaiveUtc),
        Some(t)
    );
    assert_eq!(
        parse_time("1765566661.249", true, TimeFormat::EpochSeconds),
        Some(t)
    );
    assert_eq!(
        parse_time("1765566661249", false, TimeFormat::EpochMillis),
        Some(t)
    );
    assert_eq!(
        parse_time("1765566661249000", true, TimeFormat::EpochMicros),
        Some(t)
    );
    assert_eq!(
        parse_time("1765566661249", true, TimeFormat::Rfc3339),
        None,
        "a number is no RFC 3339 time"
    );
    assert_eq!(parse_time("soon", false, TimeFormat::EpochMillis), None);
    assert_eq!(
        parse_time("1e300", true, TimeFormat::EpochMillis),
        None,
        "not clamped"
    );
    assert_eq!(parse_time("NaN", false, TimeFormat::EpochSeconds), None);
}

#[test]
fn a_time_outside_the_range_is_refused_not_clamped() {
    let d = preset("custom-example.toml");
    let r = refused(&d, r#"{"uid":"u","id":"x","name":"app_open","ts_ms":-5}"#);
    assert_eq!(r.reason, RejectReason::BadTimestamp);
    let r = refused(
        &d,
        r#"{"uid":"u","id":"x","name":"app_open","ts_ms":4102444800000}"#,
    );
    assert_eq!(r.reason, RejectReason::BadTimestamp);
    let r = d.decode(
        br#"{"uid":"u","id":"x","name":"app_open","ts_ms":1765566661249}"#,
        1_765_566_661_249 - 3_600_000,
        0,
    );
    assert_eq!(r.unwrap_err().reason, RejectReason::FutureTimestamp);
}

#[test]
fn refused_mappings_name_the_line_and_the_reason() {
    let cases = [
        ("[fields]\nuser_id = \"u\"\n", 1, "missing field"),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\nx = \"buy\"\n",
            7,
            "not a churnguard type",
        ),
        (
            "[fields]\nuser_id = \"a..b\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\nx = \"purchase\"\n",
            2,
            "not a path",
        ),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[time]\nformat = \"iso\"\n[types.map]\nx = \"purchase\"\n",
            7,
            "time format",
        ),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\ncurrency = \"c\"\n[types.map]\nx = \"purchase\"\n",
            6,
            "base_currency",
        ),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types]\nignore = [\"x\"]\n[types.map]\nx = \"purchase\"\n",
            7,
            "named twice",
        ),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\nspeling = 1\n[types.map]\nx = \"purchase\"\n",
            6,
            "unknown field",
        ),
        (
            "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[money]\nunit = \"minor\"\nminor_digits = 9\n[types.map]\nx = \"purchase\"\n",
            8,
            "minor_digits",
        ),
    ];
    for (src, line, reason) in cases {
        match parse("m.toml", src) {
            Err(MappingError::Invalid {
                line: l,
                reason: r,
                file,
                ..
            }) => {
                assert_eq!(file, "m.toml");
                assert_eq!(l, line, "{r}\n{src}");
                assert!(r.contains(reason), "{r:?} should say {reason:?}\n{src}");
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn patterns_match_in_file_order_after_exact_names() {
    let m = parse(
        "m.toml",
        "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\n\"Product Added\" = \"cart_add\"\n\"Product *\" = \"page_view\"\n\"*\" = \"search\"\n",
    )
    .unwrap();
    assert_eq!(
        m.types.resolve("Product Added").map(|r| r.0),
        Some(Target::Kind(EventKind::CartAdd))
    );
    assert_eq!(
        m.types.resolve("Product Viewed"),
        Some((Target::Kind(EventKind::PageView), "Product *"))
    );
    assert_eq!(
        m.types.resolve("anything"),
        Some((Target::Kind(EventKind::Search), "*"))
    );
    let p = |s: &str| Pattern(s.to_string());
    assert!(p("a*b*c").matches("a-b-c"));
    assert!(p("a*b*c").matches("abc"));
    assert!(!p("a*b*c").matches("ac"));
    assert!(p("*_view").matches("pdp_view"));
    assert!(!p("*_view").matches("pdp_viewed"));
    assert!(
        !p("ab*ba").matches("aba"),
        "prefix and suffix may not overlap"
    );
}

#[test]
fn the_fingerprint_follows_meaning_not_layout() {
    let a = parse("a", "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\nx = \"purchase\"\n").unwrap();
    let b = parse("b", "# comment\n[types.map]\nx = \"purchase\"\n\n[fields]\nts = \"ts\"\ntype = \"t\"\nevent_id = \"e\"\nuser_id = \"u\"\n").unwrap();
    let c = parse("c", "[fields]\nuser_id = \"u\"\nevent_id = \"e\"\ntype = \"t\"\nts = \"ts\"\n[types.map]\nx = \"refund\"\n").unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fingerprint(), c.fingerprint());
    assert_ne!(a.fingerprint(), Mapping::native().fingerprint());
}

#[test]
fn rows_in_native_columns_decode_like_native_json() {
    let d = EventDecoder::native();
    let json = r#"{"event_id":"e1","user_id":"u1","type":"purchase","ts":"2025-12-12T19:11:01Z","amount":12.5,"props":{"x":1}}"#;
    let native = d.decode(json.as_bytes(), NOW, 0).unwrap();
    let row = serde_json::json!({"event_id":"e1","user_id":"u1","type":"purchase","ts":"2025-12-12T19:11:01Z","amount":"12.5"});
    assert_eq!(d.decode_value(&row, NOW, 0).unwrap(), native);
    let empty_amount = serde_json::json!({"event_id":"e1","user_id":"u1","type":"login","ts":"2025-12-12T19:11:01Z","amount":""});
    assert!(
        matches!(d.decode_value(&empty_amount, NOW, 0), Ok(Decoded::Event(e)) if e.amount == 0.0)
    );
    let r = d.decode_value(&serde_json::json!({"event_id":"e1","user_id":"u1","type":"buy","ts":"2025-12-12T19:11:01Z"}), NOW, 0);
    assert_eq!(r.unwrap_err().reason, RejectReason::UnknownType);
    assert!(d.decode_value(&serde_json::json!([1]), NOW, 0).is_err());
    for bad in ["NaN", "inf", "-1", "1e300"] {
        let row = serde_json::json!({"event_id":"e1","user_id":"u1","type":"purchase","ts":"2025-12-12T19:11:01Z","amount":bad});
        let r = d.decode_value(&row, NOW, 0);
        assert_eq!(
            r.map_err(|r| r.reason),
            Err(RejectReason::InvalidAmount),
            "a CSV amount {bad:?} is refused, never read as 0"
        );
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic any preset's decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for name in ["segment.toml", "snowplow.toml", "custom-example.toml"] {
                let _ = preset(name).decode(&bytes, NOW, 0);
            }
        }

        /// JSON objects of arbitrary shape at the mapped paths never panic, and whatever is
        /// accepted holds what the engine needs.
        #[test]
        fn arbitrary_objects_decode_or_are_refused(
            uid in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), ".{0,20}".prop_map(serde_json::Value::from), Just(serde_json::json!({"a":1}))],
            ts in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(|f| serde_json::json!(f)), ".{0,30}".prop_map(serde_json::Value::from)],
            cents in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(|f| serde_json::json!(f)), ".{0,10}".prop_map(serde_json::Value::from)],
            name in prop_oneof![Just("checkout_success".to_string()), Just("debug_x".to_string()), ".{0,12}"],
        ) {
            let d = preset("custom-example.toml");
            let record = serde_json::json!({"uid": uid, "id": "e", "name": name, "ts_ms": ts, "order": {"amount_cents": cents}});
            let bytes = serde_json::to_vec(&record).unwrap();
            let from_bytes = d.decode(&bytes, NOW, 0);
            let from_value = d.decode_value(&record, NOW, 0);
            prop_assert_eq!(&from_bytes, &from_value, "bytes and value paths agree");
            if let Ok(Decoded::Event(e)) = from_bytes {
                prop_assert!(crate::event::check(&e, usize::MAX).is_ok());
                prop_assert!(!e.user_id.is_empty());
            }
        }
    }
}
