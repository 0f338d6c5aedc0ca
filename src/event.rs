//! Activity event schema and validation.
//!
//! Producers are many (apps, site, backend jobs) and not all of them are careful, so decoding
//! never panics and never guesses: an input is either a valid [`Event`] or a [`Rejection`] that
//! names the reason. Rejections go to the dead-letter topic with the original bytes; the reason
//! label is a small fixed set so it can be a metric label.

use std::fmt;

use chrono::DateTime;
use serde::Deserialize;

use crate::Millis;

/// Earliest event time the engine holds: 1970-01-01T00:00:00Z. It keeps instants as unsigned
/// whole seconds since the epoch in 32 bits, so earlier instants would be silently moved; they
/// are refused instead. (Second 0 means "never", so the first second of 1970 is kept as second
/// 1: a shift below the whole-second resolution instants have anyway.)
pub const EARLIEST_TS: Millis = 0;

/// First instant past the range the engine holds: 2100-01-01T00:00:00Z. Its 32-bit seconds end
/// on 2106-02-07; the years in between are for the deadlines that follow an event (eviction
/// after the retention, outcome windows), which must be representable too.
pub const END_TS: Millis = 4_102_444_800_000;

/// Largest money amount one event may carry (purchases, refunds), in the shop currency. Day
/// counters hold whole cents in 32 bits; one event up to this fits them, and a heavier day
/// continues in another bucket of the same day, so sums stay exact.
pub const MAX_AMOUNT: f64 = 10_000_000.0;

/// Default bound on the length of `user_id` and `event_id`, in bytes (configurable): ids are
/// kept in memory and become changelog keys, so their size is part of every user's cost.
pub const DEFAULT_MAX_ID_BYTES: usize = 256;

/// Default bound on one input message's payload, in bytes (configurable): an event is a few
/// hundred bytes, a tracker's richest (Segment's own limit) 32 KiB; anything far beyond is a
/// broken or hostile producer, refused before it is parsed (reason `too_large`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

/// What a user did. The wire name is the snake_case form (`cart_add`, `coupon_redeem`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Login,
    SessionEnd,
    PageView,
    Search,
    CartAdd,
    CartRemove,
    Purchase,
    Refund,
    CouponRedeem,
    Complaint,
    Review,
    Share,
    CampaignOpen,
    OptOut,
    Erase,
}

impl EventKind {
    /// Every kind, in a fixed order (used for metric label pre-registration and tests).
    pub const ALL: [EventKind; 15] = [
        EventKind::Login,
        EventKind::SessionEnd,
        EventKind::PageView,
        EventKind::Search,
        EventKind::CartAdd,
        EventKind::CartRemove,
        EventKind::Purchase,
        EventKind::Refund,
        EventKind::CouponRedeem,
        EventKind::Complaint,
        EventKind::Review,
        EventKind::Share,
        EventKind::CampaignOpen,
        EventKind::OptOut,
        EventKind::Erase,
    ];

    /// The wire name, also the `type` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::SessionEnd => "session_end",
            EventKind::PageView => "page_view",
            EventKind::Search => "search",
            EventKind::CartAdd => "cart_add",
            EventKind::CartRemove => "cart_remove",
            EventKind::Purchase => "purchase",
            EventKind::Refund => "refund",
            EventKind::CouponRedeem => "coupon_redeem",
            EventKind::Complaint => "complaint",
            EventKind::Review => "review",
            EventKind::Share => "share",
            EventKind::CampaignOpen => "campaign_open",
            EventKind::OptOut => "opt_out",
            EventKind::Erase => "erase",
        }
    }

    /// Parses a wire name; `None` for anything not in the schema.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether the event is the user's own doing (counts as "activity" for recency).
    /// Consent and erasure requests are administrative, not engagement.
    pub fn is_activity(self) -> bool {
        !matches!(self, EventKind::OptOut | EventKind::Erase)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated activity event. `props` is deliberately not kept: it may carry personal data
/// and no feature needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub user_id: String,
    pub kind: EventKind,
    /// Event time, milliseconds since the Unix epoch.
    pub ts: Millis,
    /// Money amount in the shop currency (purchases, refunds); `0.0` when absent.
    pub amount: f64,
}

/// Why an input was refused. The label set is closed so it is safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not JSON, not an object, or a field of the wrong JSON type.
    MalformedJson,
    /// A required field (`event_id`, `user_id`, `type`, `ts`) is absent or empty.
    MissingField,
    /// `type` is not one of the schema's event types.
    UnknownType,
    /// `amount` is negative or not finite.
    InvalidAmount,
    /// `ts` is not an RFC 3339 timestamp.
    BadTimestamp,
    /// `ts` lies further in the future than the configured clock skew allows.
    FutureTimestamp,
    /// `ts` lies behind the watermark by more than the allowed lateness.
    TooLate,
    /// `user_id` or `event_id` is longer than the configured bound.
    InvalidId,
    /// The message is larger than the configured bound; it was not parsed.
    TooLarge,
    /// A new user while the partition already holds the configured most users.
    UserCap,
}

impl RejectReason {
    /// Every reason, for pre-registering metric labels so dashboards show zeros, not gaps.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::UnknownType,
        RejectReason::InvalidAmount,
        RejectReason::BadTimestamp,
        RejectReason::FutureTimestamp,
        RejectReason::TooLate,
        RejectReason::InvalidId,
        RejectReason::TooLarge,
        RejectReason::UserCap,
    ];

    /// Stable snake_case name used in metrics, DLQ headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::InvalidAmount => "invalid_amount",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TooLate => "too_late",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::TooLarge => "too_large",
            RejectReason::UserCap => "user_cap",
        }
    }
}

/// A refused input: the machine-readable reason plus a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason_str}: {detail}", reason_str = .reason.as_str())]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Wire form. Every field is optional here so a missing one is reported by name rather than as
/// a generic serde error; unknown fields (including `props`) are ignored.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    amount: Option<f64>,
}

/// Decodes and validates one message payload.
///
/// `now` is the wall clock used for the future-skew check; `max_future_skew` is how far ahead of
/// it an event may claim to be (device clocks drift, but not by days).
pub fn decode(payload: &[u8], now: Millis, max_future_skew: Millis) -> Result<Event, Rejection> {
    let wire: WireEvent<'_> = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, e.to_string()))?;

    let event_id = required(wire.event_id, "event_id")?;
    let user_id = required(wire.user_id, "user_id")?;
    let kind_name = required(wire.kind, "type")?;
    let ts_text = required(wire.ts, "ts")?;

    let kind = EventKind::parse(&kind_name).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownType,
            format!("type {kind_name:?} is not one of the schema's event types"),
        )
    })?;
    let ts = DateTime::parse_from_rfc3339(&ts_text)
        .map_err(|e| {
            Rejection::new(
                RejectReason::BadTimestamp,
                format!("ts {ts_text:?} is not RFC 3339: {e}"),
            )
        })?
        .timestamp_millis();
    let ts = check_time(ts).map_err(|_| {
        Rejection::new(
            RejectReason::BadTimestamp,
            format!("ts {ts_text:?} is outside {}", time_range()),
        )
    })?;
    check_not_future(ts, &ts_text, now, max_future_skew)?;
    let amount = check_amount(wire.amount.unwrap_or(0.0))?;
    Ok(Event {
        event_id: event_id.into_owned(),
        user_id: user_id.into_owned(),
        kind,
        ts,
        amount,
    })
}

/// Refuses (`future_timestamp`) an event time further ahead of `now` than `max_future_skew`;
/// `ts_text` is the time as the input wrote it.
pub fn check_not_future(
    ts: Millis,
    ts_text: &str,
    now: Millis,
    max_future_skew: Millis,
) -> Result<(), Rejection> {
    if ts > now.saturating_add(max_future_skew) {
        return Err(Rejection::new(
            RejectReason::FutureTimestamp,
            format!(
                "ts {ts_text} is {:.1} h ahead of the service clock (allowed skew {:.1} h)",
                (ts - now) as f64 / 3_600_000.0,
                max_future_skew as f64 / 3_600_000.0
            ),
        ));
    }
    Ok(())
}

/// The representable time range, as a person reads it.
pub fn time_range() -> String {
    let text = |ts: Millis| {
        DateTime::from_timestamp_millis(ts)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    format!(
        "the representable time range {} (inclusive) to {} (exclusive)",
        text(EARLIEST_TS),
        text(END_TS)
    )
}

/// `ts` if the engine can hold it exactly, else a `bad_timestamp` refusal naming the range.
pub fn check_time(ts: Millis) -> Result<Millis, Rejection> {
    if (EARLIEST_TS..END_TS).contains(&ts) {
        Ok(ts)
    } else {
        Err(Rejection::new(
            RejectReason::BadTimestamp,
            format!(
                "event time {ts} ms since the epoch is outside {}",
                time_range()
            ),
        ))
    }
}

/// `amount` if it is a finite number from 0 to [`MAX_AMOUNT`], else an `invalid_amount`
/// refusal.
pub fn check_amount(amount: f64) -> Result<f64, Rejection> {
    if amount.is_finite() && (0.0..=MAX_AMOUNT).contains(&amount) {
        Ok(amount)
    } else {
        Err(Rejection::new(
            RejectReason::InvalidAmount,
            format!(
                "amount {amount} must be a finite number from 0 to {MAX_AMOUNT} (the largest \
                 amount one event may carry)"
            ),
        ))
    }
}

/// Refuses (`too_large`) a payload longer than `max_bytes`, before anything parses it: a
/// hostile producer's megabyte messages then cost a length comparison each, not a parse.
pub fn check_size(payload: &[u8], max_bytes: usize) -> Result<(), Rejection> {
    if payload.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "message of {} bytes is larger than the limit of {max_bytes} bytes \
                 (--max-event-bytes); it was not parsed",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// Checks what the engine needs of any event, however it was made (decoded, generated, read
/// back): ids within `max_id_bytes`, a representable time, an amount within the maximum.
pub fn check(event: &Event, max_id_bytes: usize) -> Result<(), Rejection> {
    for (name, id) in [("user_id", &event.user_id), ("event_id", &event.event_id)] {
        if id.len() > max_id_bytes {
            return Err(Rejection::new(
                RejectReason::InvalidId,
                format!(
                    "{name} of {} bytes is longer than the limit of {max_id_bytes} bytes \
                     (--max-id-bytes)",
                    id.len()
                ),
            ));
        }
    }
    check_time(event.ts)?;
    check_amount(event.amount)?;
    Ok(())
}

fn required<'a>(
    value: Option<std::borrow::Cow<'a, str>>,
    name: &str,
) -> Result<std::borrow::Cow<'a, str>, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("field {name:?} is empty"),
        )),
        None => Err(Rejection::new(
            RejectReason::MissingField,
            format!("field {name:?} is missing"),
        )),
    }
}

/// Encodes an event in the wire schema (used by the demo feeder, load generator and tests).
pub fn encode(event: &Event) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(event.ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut value = serde_json::json!({
        "event_id": event.event_id,
        "user_id": event.user_id,
        "type": event.kind.as_str(),
        "ts": ts,
    });
    if event.amount > 0.0 {
        value["amount"] = serde_json::json!(event.amount);
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;
    const SKEW: Millis = 3_600_000;

    fn reason(payload: &str) -> RejectReason {
        decode(payload.as_bytes(), NOW, SKEW).unwrap_err().reason
    }

    #[test]
    fn decodes_a_purchase_and_ignores_unknown_fields_and_props() {
        let e = decode(
            br#"{"event_id":"e1","user_id":"u1","type":"purchase","ts":"2023-11-14T22:13:20Z",
                "amount":12.5,"props":{"email":"a@b.c"},"extra":[1,2]}"#,
            NOW,
            SKEW,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Purchase);
        assert_eq!(e.ts, NOW);
        assert_eq!(e.amount, 12.5);
        assert_eq!(e.user_id, "u1");
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        let e = Event {
            event_id: "x".into(),
            user_id: "u".into(),
            kind: EventKind::Refund,
            ts: NOW,
            amount: 3.0,
        };
        assert_eq!(decode(encode(&e).as_bytes(), NOW, SKEW).unwrap(), e);
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_its_reason() {
        assert_eq!(reason("not json"), RejectReason::MalformedJson);
        assert_eq!(reason("[1,2]"), RejectReason::MalformedJson);
        assert_eq!(
            reason(r#"{"event_id":"e","user_id":"u","type":"login","ts":5}"#),
            RejectReason::MalformedJson
        );
        assert_eq!(
            reason(r#"{"user_id":"u","type":"login","ts":"2023-11-14T22:13:20Z"}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(r#"{"event_id":"e","user_id":" ","type":"login","ts":"2023-11-14T22:13:20Z"}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","user_id":"u","type":"teleport","ts":"2023-11-14T22:13:20Z"}"#
            ),
            RejectReason::UnknownType
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","user_id":"u","type":"purchase","ts":"2023-11-14T22:13:20Z","amount":-1}"#
            ),
            RejectReason::InvalidAmount
        );
        assert_eq!(
            reason(r#"{"event_id":"e","user_id":"u","type":"login","ts":"yesterday"}"#),
            RejectReason::BadTimestamp
        );
        assert_eq!(
            reason(r#"{"event_id":"e","user_id":"u","type":"login","ts":"2031-01-01T00:00:00Z"}"#),
            RejectReason::FutureTimestamp
        );
    }

    #[test]
    fn a_small_future_skew_is_tolerated() {
        let ts = chrono::DateTime::from_timestamp_millis(NOW + SKEW / 2)
            .unwrap()
            .to_rfc3339();
        let payload = format!(r#"{{"event_id":"e","user_id":"u","type":"login","ts":"{ts}"}}"#);
        assert!(decode(payload.as_bytes(), NOW, SKEW).is_ok());
    }

    /// Instants whose whole seconds do not fit the engine's 32-bit clock are refused with the
    /// range named, not clamped to its ends.
    #[test]
    fn timestamps_outside_the_representable_range_are_refused_with_the_range() {
        let far_now = i64::MAX / 4;
        for ts in [
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2100-01-01T00:00:00Z",
            "2106-02-07T06:28:16Z",
            "9999-12-31T23:59:59Z",
        ] {
            let payload = format!(r#"{{"event_id":"e","user_id":"u","type":"login","ts":"{ts}"}}"#);
            let r = decode(payload.as_bytes(), far_now, 0)
                .map(|e| e.ts)
                .expect_err(ts);
            assert_eq!(r.reason, RejectReason::BadTimestamp, "{ts}: {r}");
            assert!(
                r.detail.contains("1970-01-01T00:00:00Z")
                    && r.detail.contains("2100-01-01T00:00:00Z"),
                "{ts}: the detail names the range: {r}"
            );
        }
        for ts in ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z"] {
            let payload = format!(r#"{{"event_id":"e","user_id":"u","type":"login","ts":"{ts}"}}"#);
            assert!(decode(payload.as_bytes(), far_now, 0).is_ok(), "{ts}");
        }
    }

    /// Amounts are whole cents in 32-bit day counters: beyond the documented maximum an amount
    /// is refused, never capped.
    #[test]
    fn amounts_beyond_the_maximum_are_refused() {
        for amount in ["1e30", "10000000.01", "42949672.96"] {
            let payload = format!(
                r#"{{"event_id":"e","user_id":"u","type":"purchase","ts":"2023-11-14T22:13:20Z","amount":{amount}}}"#
            );
            let r = decode(payload.as_bytes(), NOW, SKEW)
                .map(|e| e.amount)
                .expect_err(amount);
            assert_eq!(r.reason, RejectReason::InvalidAmount, "{amount}: {r}");
            assert!(
                r.detail.contains("10000000"),
                "{amount}: names the maximum: {r}"
            );
        }
        let at_max = br#"{"event_id":"e","user_id":"u","type":"purchase","ts":"2023-11-14T22:13:20Z","amount":10000000}"#;
        assert_eq!(decode(at_max, NOW, SKEW).unwrap().amount, 10_000_000.0);
    }

    #[test]
    fn rejection_messages_name_the_field() {
        let r = decode(
            br#"{"event_id":"e","type":"login","ts":"2023-11-14T22:13:20Z"}"#,
            NOW,
            SKEW,
        )
        .unwrap_err();
        assert!(r.to_string().contains("user_id"), "{r}");
    }

    #[test]
    fn a_message_over_the_size_limit_is_refused_as_too_large_and_at_it_is_not() {
        let limit = 100;
        let at = vec![b' '; limit];
        assert_eq!(check_size(&at, limit), Ok(()));
        let over = vec![b'{'; limit + 1];
        let r = check_size(&over, limit).unwrap_err();
        assert_eq!(r.reason, RejectReason::TooLarge);
        assert_eq!(r.reason.as_str(), "too_large");
        assert!(
            r.detail.contains("101 bytes") && r.detail.contains("100"),
            "{r}"
        );
        assert!(r.detail.contains("--max-event-bytes"), "{r}");
    }
}
