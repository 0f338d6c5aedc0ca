//! Turning a shop's own event shapes into churnguard [`Event`]s.
//!
//! No shop emits churnguard's native JSON: Segment, Snowplow and in-house trackers name fields,
//! types, times and money their own way. An [`EventDecoder`] is the one place an input record
//! becomes an event, for the service and every offline tool alike, so a model is trained on
//! exactly what the service will see. Without a mapping file it is the native schema
//! ([`crate::event::decode`]); with one, fields are found where the mapping says.
//!
//! A record may also be *ignored*: a known event type that carries no signal (an `identify`
//! call, a `page` of the help center) is counted, not dead-lettered.

mod apply;
#[cfg(feature = "avro")]
pub mod avro;
mod lookup;
mod parse;
mod report;
mod spec;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

pub use apply::{parse_time, ANONYMOUS, UNKNOWN};
pub use parse::{load, parse, MappingError};
pub use report::MappingReport;
pub use spec::{
    Anonymous, FieldPath, Mapping, Money, Pattern, Target, TimeFormat, TypeTable, UnknownTypes,
};

use crate::event::{self, Event, RejectReason, Rejection};
use crate::Millis;

/// What one input record became.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An event for the engine.
    Event(Event),
    /// A record the mapping declares as carrying no signal, counted under `source_type`: a
    /// type the mapping lists (so the label set is bounded by the mapping file),
    /// [`UNKNOWN`] or [`ANONYMOUS`].
    Ignored { source_type: String },
}

/// Decodes input records (JSON bytes from Kafka or a JSONL line; field maps from CSV or
/// Parquet rows) into events, through the native schema or a mapping.
#[derive(Debug, Clone, Default)]
pub struct EventDecoder {
    mapping: Option<Arc<Mapping>>,
    /// The mapping's fingerprint, computed once (the service reports it with every refusal
    /// check).
    fingerprint: Option<String>,
    /// Writer schemas when payloads are Avro in the Confluent wire format.
    #[cfg(feature = "avro")]
    avro: Option<Arc<avro::AvroSchemas>>,
}

impl EventDecoder {
    /// The native schema: `event_id`, `user_id`, `type`, `ts` (RFC 3339), optional `amount`.
    pub fn native() -> Self {
        EventDecoder::default()
    }

    /// Records through `mapping`.
    pub fn mapped(mapping: Mapping) -> Self {
        EventDecoder {
            fingerprint: Some(mapping.fingerprint()),
            mapping: Some(Arc::new(mapping)),
            ..EventDecoder::default()
        }
    }

    /// The same decoder for Avro payloads in the Confluent wire format: [`Self::decode`] reads
    /// the datum with its writer schema and maps it like a row ([`Self::decode_value`]).
    #[cfg(feature = "avro")]
    pub fn with_avro(self, schemas: avro::AvroSchemas) -> Self {
        EventDecoder {
            avro: Some(Arc::new(schemas)),
            ..self
        }
    }

    /// Whether payloads are read as Avro.
    pub fn is_avro(&self) -> bool {
        #[cfg(feature = "avro")]
        return self.avro.is_some();
        #[cfg(not(feature = "avro"))]
        false
    }

    /// The mapping file's decoder, or the native one without a file.
    pub fn from_file(path: Option<&std::path::Path>) -> Result<Self, MappingError> {
        Ok(match path {
            Some(p) => EventDecoder::mapped(load(p)?),
            None => EventDecoder::native(),
        })
    }

    /// The mapping's fingerprint (a short hash of its meaning), `None` for the native schema.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Decodes one record's bytes (a Kafka message payload, a JSONL line; with
    /// [`Self::with_avro`], a wire-format Avro payload). `now` and `max_future_skew` bound
    /// future timestamps as in [`event::decode`].
    pub fn decode(
        &self,
        payload: &[u8],
        now: Millis,
        max_future_skew: Millis,
    ) -> Result<Decoded, Rejection> {
        #[cfg(feature = "avro")]
        if let Some(schemas) = &self.avro {
            let value = schemas.decode(payload)?;
            return self.decode_value(&value, now, max_future_skew);
        }
        let Some(mapping) = &self.mapping else {
            return event::decode(payload, now, max_future_skew).map(Decoded::Event);
        };
        let text = std::str::from_utf8(payload)
            .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("not UTF-8: {e}")))?;
        let record = lookup::RawObject::parse(text)
            .map_err(|e| Rejection::new(RejectReason::MalformedJson, e.to_string()))?;
        mapping.apply(&record, now, max_future_skew)
    }

    /// Decodes one record given as a JSON value: a CSV or Parquet row as an object of column
    /// name → value. Cells of text files are strings, so a number written as a string is
    /// accepted where a number is expected; without a mapping file the columns are the native
    /// schema's.
    pub fn decode_value(
        &self,
        value: &serde_json::Value,
        now: Millis,
        max_future_skew: Millis,
    ) -> Result<Decoded, Rejection> {
        static NATIVE: OnceLock<Mapping> = OnceLock::new();
        let mapping = match &self.mapping {
            Some(m) => m.as_ref(),
            None => NATIVE.get_or_init(Mapping::native),
        };
        if !value.is_object() {
            return Err(Rejection::new(
                RejectReason::MalformedJson,
                "a record must be an object of fields",
            ));
        }
        mapping.apply(&value, now, max_future_skew)
    }
}
