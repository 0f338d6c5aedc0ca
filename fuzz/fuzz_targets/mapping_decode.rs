//! Event mappings on arbitrary input: records through every shipped mapping (as JSON bytes and
//! as a row value), and arbitrary mapping files, which must be refused with a reason or decode
//! the shipped samples without panicking.
#![no_main]

use std::sync::OnceLock;

use churnguard::mapping::{self, Decoded, EventDecoder};
use churnguard_fuzz::{engine, NOW, SKEW};
use libfuzzer_sys::fuzz_target;

const MAPPINGS: [(&str, &str); 4] = [
    (
        "segment.toml",
        include_str!("../../deploy/mappings/segment.toml"),
    ),
    (
        "snowplow.toml",
        include_str!("../../deploy/mappings/snowplow.toml"),
    ),
    (
        "custom-example.toml",
        include_str!("../../deploy/mappings/custom-example.toml"),
    ),
    (
        "avro-example.toml",
        include_str!("../../deploy/mappings/avro-example.toml"),
    ),
];

const SAMPLES: &str = concat!(
    include_str!("../../deploy/mappings/samples/segment.jsonl"),
    include_str!("../../deploy/mappings/samples/snowplow.jsonl"),
    include_str!("../../deploy/mappings/samples/custom-example.jsonl"),
);

fn decoders() -> &'static [EventDecoder] {
    static DECODERS: OnceLock<Vec<EventDecoder>> = OnceLock::new();
    DECODERS.get_or_init(|| {
        MAPPINGS
            .iter()
            .map(|(name, text)| {
                EventDecoder::mapped(mapping::parse(name, text).expect("shipped mapping parses"))
            })
            .collect()
    })
}

fn check(decoded: Result<Decoded, churnguard::event::Rejection>) {
    if let Ok(Decoded::Event(e)) = decoded {
        let _ = engine(None).apply(&e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let n = decoders().len();
    let which = usize::from(selector) % (n + 1);
    if which < n {
        let decoder = &decoders()[which];
        check(decoder.decode(rest, NOW, SKEW));
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) {
            check(decoder.decode_value(&value, NOW, SKEW));
        }
        return;
    }
    // The mapping file itself.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mapping::parse("fuzz.toml", text) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(m) => {
            let decoder = EventDecoder::mapped(m);
            for line in SAMPLES.lines() {
                check(decoder.decode(line.as_bytes(), NOW, SKEW));
            }
        }
    }
});
