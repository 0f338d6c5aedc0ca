//! Avro payloads in the Confluent wire format, read with the shipped example schemas and
//! mapping: every payload is an event, ignored, or refused with a reason; none panics or
//! allocates without bound (the decoder caps declared lengths).
#![no_main]

use std::sync::OnceLock;

use churnguard::mapping::avro::AvroSchemas;
use churnguard::mapping::{self, Decoded, EventDecoder};
use churnguard_fuzz::{engine, NOW, SKEW};
use libfuzzer_sys::fuzz_target;

fn decoder() -> &'static EventDecoder {
    static DECODER: OnceLock<EventDecoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        let schemas = AvroSchemas::from_texts([
            (1, include_str!("../../deploy/mappings/avro/1.avsc")),
            (2, include_str!("../../deploy/mappings/avro/2.avsc")),
        ])
        .expect("shipped schemas parse");
        let mapping = mapping::parse(
            "avro-example.toml",
            include_str!("../../deploy/mappings/avro-example.toml"),
        )
        .expect("shipped mapping parses");
        EventDecoder::mapped(mapping).with_avro(schemas)
    })
}

fuzz_target!(|data: &[u8]| {
    match decoder().decode(data, NOW, SKEW) {
        Ok(Decoded::Event(e)) => {
            let _ = engine(None).apply(&e);
        }
        Ok(Decoded::Ignored { source_type }) => assert!(!source_type.is_empty()),
        Err(r) => assert!(!r.detail.is_empty(), "a refusal names what is wrong"),
    }
});
