//! An Avro value as the JSON a mapping reads: records become objects, a union its branch's
//! value, an enum its symbol, timestamps RFC 3339 text in UTC, decimals numbers and bytes base64
//! text. Walked together with the writer schema, which holds what the value alone lacks (a
//! decimal's scale).

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, Schema};
use apache_avro::types::Value as Avro;
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat};
use serde_json::{Map, Number, Value as Json};

/// `value` (decoded with `schema`) as JSON; `Err` only if the value does not fit the schema,
/// which the decoder does not produce.
pub(super) fn to_json(
    value: &Avro,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
) -> Result<Json, String> {
    Walk { names }.value(value, schema, &None)
}

struct Walk<'n> {
    names: &'n HashMap<Name, Schema>,
}

impl Walk<'_> {
    fn value(&self, value: &Avro, schema: &Schema, ns: &Namespace) -> Result<Json, String> {
        if let Schema::Ref { name } = schema {
            let name = name.fully_qualified_name(ns);
            let target = self
                .names
                .get(&name)
                .ok_or_else(|| format!("type {} is not defined", name.fullname(None)))?;
            return self.value(value, target, &name.namespace);
        }
        Ok(match (value, schema) {
            (Avro::Union(i, inner), Schema::Union(u)) => {
                let variant = u
                    .variants()
                    .get(*i as usize)
                    .ok_or_else(|| format!("union branch {i} does not exist"))?;
                self.value(inner, variant, ns)?
            }
            (Avro::Record(fields), Schema::Record(r)) => {
                let name = r.name.fully_qualified_name(ns);
                let mut object = Map::with_capacity(fields.len());
                for ((key, v), field) in fields.iter().zip(&r.fields) {
                    object.insert(key.clone(), self.value(v, &field.schema, &name.namespace)?);
                }
                Json::Object(object)
            }
            (Avro::Array(items), Schema::Array(a)) => Json::Array(
                items
                    .iter()
                    .map(|v| self.value(v, &a.items, ns))
                    .collect::<Result<_, _>>()?,
            ),
            (Avro::Map(entries), Schema::Map(m)) => {
                let mut object = Map::with_capacity(entries.len());
                for (key, v) in entries {
                    object.insert(key.clone(), self.value(v, &m.types, ns)?);
                }
                Json::Object(object)
            }
            (Avro::Decimal(d), Schema::Decimal(s)) => {
                let bytes: Vec<u8> = d.try_into().map_err(|e| format!("decimal: {e}"))?;
                decimal(&bytes, s.scale)?
            }
            (other, _) => scalar(other)?,
        })
    }
}

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const DAYS_BEFORE_EPOCH: i32 = 719_163;

/// A value that needs no schema to be read.
fn scalar(value: &Avro) -> Result<Json, String> {
    Ok(match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(n) => Json::from(*n),
        Avro::Long(n) => Json::from(*n),
        Avro::Float(x) => float(f64::from(*x)),
        Avro::Double(x) => float(*x),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s.clone()),
        Avro::Uuid(u) => Json::String(u.to_string()),
        Avro::BigDecimal(d) => number_text(&d.to_string()),
        Avro::Date(days) => days
            .checked_add(DAYS_BEFORE_EPOCH)
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .map_or(Json::from(*days), |d| Json::String(d.to_string())),
        Avro::TimeMillis(ms) => time_of_day(i64::from(*ms) * 1_000, *ms),
        Avro::TimeMicros(us) => time_of_day(*us, *us),
        Avro::TimestampMillis(ms) => utc(DateTime::from_timestamp_millis(*ms), *ms),
        Avro::TimestampMicros(us) => utc(DateTime::from_timestamp_micros(*us), *us),
        Avro::TimestampNanos(ns) => utc(Some(DateTime::from_timestamp_nanos(*ns)), *ns),
        Avro::LocalTimestampMillis(ms) => local(DateTime::from_timestamp_millis(*ms), *ms),
        Avro::LocalTimestampMicros(us) => local(DateTime::from_timestamp_micros(*us), *us),
        Avro::LocalTimestampNanos(ns) => local(Some(DateTime::from_timestamp_nanos(*ns)), *ns),
        Avro::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        other => return Err(format!("a value that does not fit its schema: {other:?}")),
    })
}

/// A JSON number, or for NaN and infinities (which JSON has no numbers for) their text, which a
/// mapping then refuses where it expects an amount.
fn float(x: f64) -> Json {
    Number::from_f64(x).map_or_else(|| Json::String(x.to_string()), Json::Number)
}

/// Decimal text as a JSON number (money becomes a float in the event anyway); text a float
/// cannot hold stays text.
fn number_text(text: &str) -> Json {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => float(x),
        _ => Json::String(text.to_string()),
    }
}

/// A decimal from its unscaled big-endian two's-complement bytes and scale.
pub(super) fn decimal(bytes: &[u8], scale: usize) -> Result<Json, String> {
    if bytes.len() > 16 {
        return Err(format!(
            "decimal of {} bytes is wider than 128 bits",
            bytes.len()
        ));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut wide = if negative { [0xff; 16] } else { [0; 16] };
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(wide);
    let digits = unscaled.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    Ok(number_text(&format!("{sign}{whole}.{fraction}0")))
}

/// A timestamp as RFC 3339 in UTC; one outside the calendar stays the number it was, and a
/// mapping reading it as a time refuses it as `bad_timestamp`.
fn utc(time: Option<DateTime<chrono::Utc>>, raw: i64) -> Json {
    time.map_or(Json::from(raw), |t| {
        Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    })
}

/// A local timestamp (no time zone) as `YYYY-MM-DDTHH:MM:SS[.fff]`, what `naive_utc` reads.
fn local(time: Option<DateTime<chrono::Utc>>, raw: i64) -> Json {
    time.map_or(Json::from(raw), |t| {
        Json::String(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string())
    })
}

/// A time of day from microseconds after midnight.
fn time_of_day(micros: i64, raw: impl Into<Json>) -> Json {
    let seconds = micros.div_euclid(1_000_000);
    let nanos = micros.rem_euclid(1_000_000) * 1_000;
    u32::try_from(seconds)
        .ok()
        .zip(u32::try_from(nanos).ok())
        .and_then(|(s, n)| NaiveTime::from_num_seconds_from_midnight_opt(s, n))
        .map_or_else(|| raw.into(), |t| Json::String(t.to_string()))
}
