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

use std::sync::Arc;

use crate::event::{self, Event, RejectReason, Rejection};
use crate::Millis;

/// What one input record became.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An event for the engine.
    Event(Event),
    /// A record the mapping declares as carrying no signal; `source_type` is its type as the
    /// source names it, for counting.
    Ignored { source_type: String },
}

/// Decodes input records (JSON bytes from Kafka or a JSONL line; field maps from CSV or
/// Parquet rows) into events, through the native schema or a mapping.
#[derive(Debug, Clone, Default)]
pub struct EventDecoder {
    mapping: Option<Arc<Mapping>>,
}

/// A parsed, validated mapping file. (Its contents arrive with the mapping parser.)
#[derive(Debug, Default)]
pub struct Mapping {
    fingerprint: String,
}

impl EventDecoder {
    /// The native schema: `event_id`, `user_id`, `type`, `ts` (RFC 3339), optional `amount`.
    pub fn native() -> Self {
        EventDecoder::default()
    }

    /// The mapping's fingerprint (a short hash of its meaning), `None` for the native schema.
    pub fn fingerprint(&self) -> Option<&str> {
        self.mapping.as_ref().map(|m| m.fingerprint.as_str())
    }

    /// Decodes one record's bytes (a Kafka message payload, a JSONL line). `now` and
    /// `max_future_skew` bound future timestamps as in [`event::decode`].
    pub fn decode(
        &self,
        payload: &[u8],
        now: Millis,
        max_future_skew: Millis,
    ) -> Result<Decoded, Rejection> {
        event::decode(payload, now, max_future_skew).map(Decoded::Event)
    }

    /// Decodes one record given as a JSON value: a CSV or Parquet row as an object of column
    /// name → value. Cells of text files are strings, so a number written as a string is
    /// accepted where a number is expected.
    pub fn decode_value(
        &self,
        value: &serde_json::Value,
        now: Millis,
        max_future_skew: Millis,
    ) -> Result<Decoded, Rejection> {
        let mut value = value.clone();
        if let Some(amount) = value.get_mut("amount") {
            if let Some(text) = amount.as_str() {
                let trimmed = text.trim();
                *amount = if trimmed.is_empty() {
                    serde_json::Value::Null
                } else {
                    let number: f64 = trimmed.parse().map_err(|_| {
                        Rejection::new(
                            RejectReason::InvalidAmount,
                            format!("amount {text:?} is not a number"),
                        )
                    })?;
                    serde_json::json!(number)
                };
            }
        }
        let bytes = serde_json::to_vec(&value)
            .map_err(|e| Rejection::new(RejectReason::MalformedJson, e.to_string()))?;
        self.decode(&bytes, now, max_future_skew)
    }
}
