//! The crate's unit of event time and its printed form, shared by every layer that handles
//! instants (events, features, alerts, the model tools), so none of them imports another just to
//! format a timestamp.

/// Milliseconds since the Unix epoch, the engine's unit of event time.
pub type Millis = i64;

/// One day in milliseconds: windows are exact at day granularity.
pub const DAY_MS: Millis = 86_400_000;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ts: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
