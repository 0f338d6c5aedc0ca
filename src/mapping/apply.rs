//! Applying a [`Mapping`] to one record: find each field, read it in the declared format, and
//! check it like the native schema does, so a mapped event is held to the same rules.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime};

use super::lookup::Leaf;
use super::spec::{Anonymous, FieldPath, Mapping, Target, TimeFormat, UnknownTypes};
use super::Decoded;
use crate::event::{self, Event, EventKind, RejectReason, Rejection};
use crate::Millis;

/// Anything fields can be looked up in by path.
pub trait Record<'a> {
    fn find(&self, path: &FieldPath) -> Option<Leaf<'a>>;
}

impl<'a> Record<'a> for super::lookup::RawObject<'a> {
    fn find(&self, path: &FieldPath) -> Option<Leaf<'a>> {
        super::lookup::RawObject::find(self, path)
    }
}

impl<'a> Record<'a> for &'a serde_json::Value {
    fn find(&self, path: &FieldPath) -> Option<Leaf<'a>> {
        super::lookup::find_in_value(self, path)
    }
}

/// The ignore label of a record whose user id is only at the anonymous fallback.
pub const ANONYMOUS: &str = "anonymous";
/// The ignore label of a source type the mapping does not name, under `unknown = "ignore"`.
pub const UNKNOWN: &str = "unknown";

impl Mapping {
    /// One record to an event, an ignored record, or a refusal naming the field and its path.
    pub fn apply<'a>(
        &self,
        record: &impl Record<'a>,
        now: Millis,
        max_future_skew: Millis,
    ) -> Result<Decoded, Rejection> {
        let kind = match self.resolve_kind(record)? {
            Resolved::Kind(kind) => kind,
            Resolved::Ignored(label) => return Ok(Decoded::Ignored { source_type: label }),
        };
        let user_id = match self.user_id(record)? {
            Some(id) => id,
            None => {
                return Ok(Decoded::Ignored {
                    source_type: ANONYMOUS.to_string(),
                })
            }
        };
        let event_id = required_id(record, &self.event_id, "event_id")?;
        let (ts, ts_text) = self.time(record)?;
        event::check_not_future(ts, &ts_text, now, max_future_skew)?;
        let amount = self.amount(record)?;
        Ok(Decoded::Event(Event {
            event_id,
            user_id,
            kind,
            ts,
            amount,
        }))
    }

    fn resolve_kind<'a>(&self, record: &impl Record<'a>) -> Result<Resolved, Rejection> {
        let found = self
            .kind
            .iter()
            .find_map(|p| record.find(p).filter(|l| l.as_id().is_some()));
        let Some(leaf) = found else {
            let paths: Vec<String> = self.kind.iter().map(FieldPath::display).collect();
            return Err(missing("type", &paths.join(" or ")));
        };
        let name = leaf.as_id().unwrap_or_default();
        match self.types.resolve(name) {
            Some((Target::Kind(kind), _)) => Ok(Resolved::Kind(kind)),
            Some((Target::Ignore, entry)) => Ok(Resolved::Ignored(entry.to_string())),
            None => match self.types.unknown {
                UnknownTypes::Ignore => Ok(Resolved::Ignored(UNKNOWN.to_string())),
                UnknownTypes::DeadLetter => Err(Rejection::new(
                    RejectReason::UnknownType,
                    format!("type {name:?} is not named in the event mapping"),
                )),
            },
        }
    }

    /// The user id; `None` for an anonymous record the mapping skips.
    fn user_id<'a>(&self, record: &impl Record<'a>) -> Result<Option<String>, Rejection> {
        if let Some(id) = record.find(&self.user_id).as_ref().and_then(Leaf::as_id) {
            return Ok(Some(id.to_string()));
        }
        if let Some((path, what)) = &self.anonymous_id {
            if let Some(id) = record.find(path).as_ref().and_then(Leaf::as_id) {
                return Ok(match what {
                    Anonymous::Skip => None,
                    Anonymous::Use => Some(id.to_string()),
                });
            }
            let both = format!("{} or {}", self.user_id.display(), path.display());
            return Err(missing("user_id", &both));
        }
        Err(missing("user_id", &self.user_id.display()))
    }

    fn time<'a>(&self, record: &impl Record<'a>) -> Result<(Millis, Cow<'a, str>), Rejection> {
        let leaf = record.find(&self.ts);
        let (text, is_number) = match leaf {
            Some(Leaf::Text(t)) if !t.trim().is_empty() => (t, false),
            Some(Leaf::Number(n)) => (n, true),
            Some(Leaf::Null) | Some(Leaf::Text(_)) | None => {
                return Err(missing("ts", &self.ts.display()))
            }
            Some(other) => {
                return Err(Rejection::new(
                    RejectReason::MalformedJson,
                    format!("ts ({}) is {}", self.ts.display(), other.describe()),
                ))
            }
        };
        let ms = parse_time(text.trim(), is_number, self.time_format).ok_or_else(|| {
            Rejection::new(
                RejectReason::BadTimestamp,
                format!(
                    "ts ({}) {text:?} is not {}",
                    self.ts.display(),
                    format_name(self.time_format)
                ),
            )
        })?;
        let ms = event::check_time(ms).map_err(|_| {
            Rejection::new(
                RejectReason::BadTimestamp,
                format!("ts {text:?} is outside {}", event::time_range()),
            )
        })?;
        Ok((ms, text))
    }

    fn amount<'a>(&self, record: &impl Record<'a>) -> Result<f64, Rejection> {
        let Some((path, leaf)) = self
            .money
            .amount
            .iter()
            .find_map(|p| record.find(p).map(|l| (p, l)))
        else {
            return Ok(0.0);
        };
        let value = match leaf {
            Leaf::Null => return Ok(0.0),
            Leaf::Text(t) if t.trim().is_empty() => return Ok(0.0),
            Leaf::Number(n) => n.parse::<f64>().ok(),
            Leaf::Text(t) => t.trim().parse::<f64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            Rejection::new(
                RejectReason::InvalidAmount,
                format!("amount ({}) is not a number", path.display()),
            )
        })?;
        let value = match self.money.minor_digits {
            Some(digits) => value / 10f64.powi(digits as i32),
            None => value,
        };
        let rate = self.rate(record)?;
        event::check_amount(value * rate)
    }

    /// The conversion rate of the record's currency into the shop currency.
    fn rate<'a>(&self, record: &impl Record<'a>) -> Result<f64, Rejection> {
        let Some(path) = &self.money.currency else {
            return Ok(1.0);
        };
        let code = record.find(path);
        let code = code.as_ref().and_then(Leaf::as_id).map(str::trim);
        let base = &self.money.base_currency;
        match code {
            None if self.money.missing_currency_is_base => Ok(1.0),
            None => Err(Rejection::new(
                RejectReason::InvalidAmount,
                format!(
                    "no currency at {} (the mapping requires one)",
                    path.display()
                ),
            )),
            Some(c) if c.eq_ignore_ascii_case(base) => Ok(1.0),
            Some(c) => self
                .money
                .rates
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(c))
                .map(|(_, r)| *r)
                .ok_or_else(|| {
                    Rejection::new(
                        RejectReason::InvalidAmount,
                        format!(
                            "currency {c:?} is neither the shop currency {base} nor in the \
                             mapping's rates"
                        ),
                    )
                }),
        }
    }
}

enum Resolved {
    Kind(EventKind),
    Ignored(String),
}

/// `field` was looked for at `path` (several joined by "or") and is absent or empty; the
/// path is named when it differs from the field, as it does under a mapping.
fn missing(field: &str, path: &str) -> Rejection {
    let detail = if field == path {
        format!("field {field:?} is missing or empty")
    } else {
        format!("field {field:?} is missing or empty (looked at {path})")
    };
    Rejection::new(RejectReason::MissingField, detail)
}

fn required_id<'a>(
    record: &impl Record<'a>,
    path: &FieldPath,
    field: &str,
) -> Result<String, Rejection> {
    match record.find(path) {
        Some(leaf) => match leaf.as_id() {
            Some(id) => Ok(id.to_string()),
            None if matches!(leaf, Leaf::Compound | Leaf::Bool(_)) => Err(Rejection::new(
                RejectReason::MalformedJson,
                format!("{field} ({}) is {}", path.display(), leaf.describe()),
            )),
            None => Err(missing(field, &path.display())),
        },
        None => Err(missing(field, &path.display())),
    }
}

fn format_name(f: TimeFormat) -> &'static str {
    match f {
        TimeFormat::Rfc3339 => "an RFC 3339 time",
        TimeFormat::NaiveUtc => "a date and time (YYYY-MM-DD HH:MM:SS[.fff], UTC, or RFC 3339)",
        TimeFormat::EpochSeconds => "seconds since the Unix epoch",
        TimeFormat::EpochMillis => "milliseconds since the Unix epoch",
        TimeFormat::EpochMicros => "microseconds since the Unix epoch",
    }
}

/// Milliseconds since the epoch, or `None` if `text` is not in `format`.
pub fn parse_time(text: &str, is_number: bool, format: TimeFormat) -> Option<Millis> {
    let epoch = |scale: f64| -> Option<Millis> {
        let v: f64 = text.parse().ok()?;
        let ms = (v * scale).round();
        // Beyond ±2^53 a float no longer holds whole milliseconds; far outside the range anyway.
        (v.is_finite() && ms.abs() < 9.0e15).then_some(ms as Millis)
    };
    match format {
        TimeFormat::Rfc3339 if !is_number => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis()),
        TimeFormat::NaiveUtc if !is_number => ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|t| t.and_utc().timestamp_millis())
            .or_else(|| parse_time(text, false, TimeFormat::Rfc3339)),
        TimeFormat::EpochSeconds => epoch(1000.0),
        TimeFormat::EpochMillis => epoch(1.0),
        TimeFormat::EpochMicros => epoch(0.001),
        _ => None,
    }
}
