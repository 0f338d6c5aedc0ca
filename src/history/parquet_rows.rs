//! Parquet history: rows read in batches by the arrow reader, each row turned into a JSON
//! object of column → value for [`EventDecoder::decode_value`].
//!
//! Values take the form the native schema reads: timestamps (seconds to nanoseconds) and dates
//! become RFC 3339 instants in UTC, integers and decimals JSON numbers, strings strings, nulls
//! absent fields; structs and lists become objects and arrays, for mappings that look inside
//! them. A column of a type with no JSON form here (intervals, maps, unions) is left out with
//! a warning, so a mapping that needs it refuses rows as `missing_field` and the warning says
//! why. Only one batch of rows is in memory at a time.
//!
//! The arrow reader returns errors for corrupt files; a panic inside it is caught too and
//! reported as an error naming the file, since a history file is untrusted input.
//!
//! [`EventDecoder::decode_value`]: crate::mapping::EventDecoder::decode_value

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type,
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

use super::{progress, HistoryError, Position, ReadOptions, Refusal, Sink};

/// Rows per batch: a few MiB of columns at most, and few enough allocations per row to matter.
const BATCH_ROWS: usize = 4096;

/// Reads the rows of the Parquet file `path` and hands each to `sink`. Returns the rows read.
pub(super) fn read(
    path: &Path,
    file: File,
    options: &ReadOptions<'_>,
    sink: &mut Sink<'_>,
) -> Result<u64, HistoryError> {
    let failed = |detail: String| HistoryError::Parquet {
        path: path.display().to_string(),
        detail,
    };
    let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file)).map_err(failed)?;
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let columns = readable_columns(path, builder.schema().fields());
    let mut reader = guarded(|| builder.with_batch_size(BATCH_ROWS).build()).map_err(failed)?;
    let bar = progress::bar(
        path,
        total,
        options.progress,
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, {eta})",
    );
    let mut rows = 0u64;
    loop {
        let batch = match guarded(|| reader.next().transpose()) {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(detail) => {
                bar.finish_and_clear();
                return Err(failed(format!("at row {}: {detail}", rows + 1)));
            }
        };
        for r in 0..batch.num_rows() {
            rows += 1;
            let outcome =
                row(&columns, batch.columns(), r).and_then(|value| options.decode_value(&value));
            sink(Position::Row(rows), outcome);
        }
        bar.inc(batch.num_rows() as u64);
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Runs a call into the Parquet reader, turning its error or its panic into a message.
fn guarded<T, E: std::fmt::Display>(call: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(format!("the Parquet reader gave up on it ({what})"))
        }
    }
}

/// `(index, name)` of the columns with a JSON form; the others are named in a warning.
fn readable_columns(path: &Path, fields: &arrow_schema::Fields) -> Vec<(usize, String)> {
    let mut columns = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        if has_json_form(field.data_type()) {
            columns.push((i, field.name().clone()));
        } else {
            tracing::warn!(
                file = %path.display(),
                column = %field.name(),
                data_type = %field.data_type(),
                "Parquet column of a type without a JSON form: left out of every row"
            );
        }
    }
    columns
}

fn has_json_form(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) | Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView
        | FixedSizeBinary(_) | Date32 | Date64 | Timestamp(..) => true,
        Time32(unit) => matches!(unit, TimeUnit::Second | TimeUnit::Millisecond),
        Time64(unit) => matches!(unit, TimeUnit::Microsecond | TimeUnit::Nanosecond),
        List(item) | LargeList(item) => has_json_form(item.data_type()),
        Struct(fields) => fields.iter().all(|f| has_json_form(f.data_type())),
        Dictionary(key, value) => key.is_dictionary_key_type() && has_json_form(value),
        _ => false,
    }
}

/// Row `r` of the batch as a JSON object; null cells are left out.
fn row(columns: &[(usize, String)], arrays: &[ArrayRef], r: usize) -> Result<Value, Refusal> {
    let mut object = Map::new();
    for (i, name) in columns {
        let Some(array) = arrays.get(*i) else {
            continue;
        };
        if let Some(value) = cell(name, array.as_ref(), r)? {
            object.insert(name.clone(), value);
        }
    }
    Ok(Value::Object(object))
}

/// Refusal of a row whose cell has no JSON form after all (the reader gave a type other than
/// the schema's, or a value out of range).
fn unreadable(column: &str, what: impl std::fmt::Display) -> Refusal {
    Refusal::new("malformed_parquet", format!("column {column:?}: {what}"))
}

/// The value of primitive array `array` at `r`, or a refusal if it is not of type `T`.
fn primitive<T: ArrowPrimitiveType>(
    column: &str,
    array: &dyn Array,
    r: usize,
) -> Result<T::Native, Refusal> {
    array
        .as_primitive_opt::<T>()
        .map(|a| a.value(r))
        .ok_or_else(|| unreadable(column, format!("not a {} array", array.data_type())))
}

/// Cell `r` of `array` as JSON; `None` for null.
fn cell(column: &str, array: &dyn Array, r: usize) -> Result<Option<Value>, Refusal> {
    use DataType::*;
    if array.is_null(r) {
        return Ok(None);
    }
    let value = match array.data_type() {
        Null => return Ok(None),
        Boolean => Value::Bool(
            array
                .as_boolean_opt()
                .ok_or_else(|| unreadable(column, "not a boolean array"))?
                .value(r),
        ),
        Int8 => Value::from(primitive::<Int8Type>(column, array, r)?),
        Int16 => Value::from(primitive::<Int16Type>(column, array, r)?),
        Int32 => Value::from(primitive::<Int32Type>(column, array, r)?),
        Int64 => Value::from(primitive::<Int64Type>(column, array, r)?),
        UInt8 => Value::from(primitive::<UInt8Type>(column, array, r)?),
        UInt16 => Value::from(primitive::<UInt16Type>(column, array, r)?),
        UInt32 => Value::from(primitive::<UInt32Type>(column, array, r)?),
        UInt64 => Value::from(primitive::<UInt64Type>(column, array, r)?),
        Float16 => float(primitive::<Float16Type>(column, array, r)?.to_f64()),
        // The shortest text of the f32 read as f64: 12.34f32 is 12.34, as the writer meant,
        // not 12.340000152587890625.
        Float32 => float(
            primitive::<Float32Type>(column, array, r)?
                .to_string()
                .parse()
                .unwrap_or(f64::NAN),
        ),
        Float64 => float(primitive::<Float64Type>(column, array, r)?),
        Decimal32(..) => decimal::<Decimal32Type>(column, array, r)?,
        Decimal64(..) => decimal::<Decimal64Type>(column, array, r)?,
        Decimal128(..) => decimal::<Decimal128Type>(column, array, r)?,
        Decimal256(..) => decimal::<Decimal256Type>(column, array, r)?,
        Date32 => {
            let days = primitive::<Date32Type>(column, array, r)?;
            instant(
                column,
                i64::from(days).saturating_mul(86_400),
                TimeUnit::Second,
            )?
        }
        Date64 => instant(
            column,
            primitive::<Date64Type>(column, array, r)?,
            TimeUnit::Millisecond,
        )?,
        Timestamp(unit, _) => timestamp(column, array, r, *unit)?,
        Time32(_) | Time64(_) => time_of_day(column, array, r)?,
        Utf8 | LargeUtf8 | Utf8View => Value::String(text(column, array, r)?.to_string()),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => {
            let bytes = binary(column, array, r)?;
            let text = std::str::from_utf8(bytes)
                .map_err(|e| unreadable(column, format!("binary value is not UTF-8: {e}")))?;
            Value::String(text.to_string())
        }
        List(_) | LargeList(_) => list(column, array, r)?,
        Struct(_) => {
            let parts = array
                .as_struct_opt()
                .ok_or_else(|| unreadable(column, "not a struct array"))?;
            let mut object = serde_json::Map::new();
            for (field, child) in parts.fields().iter().zip(parts.columns()) {
                if let Some(v) = cell(column, child.as_ref(), r)? {
                    object.insert(field.name().clone(), v);
                }
            }
            Value::Object(object)
        }
        Dictionary(..) => {
            let dictionary = array
                .as_any_dictionary_opt()
                .ok_or_else(|| unreadable(column, "not a dictionary array"))?;
            let key = dictionary_key(dictionary.keys(), r)
                .filter(|k| *k < dictionary.values().len())
                .ok_or_else(|| unreadable(column, "dictionary key out of range"))?;
            return cell(column, dictionary.values().as_ref(), key);
        }
        other => return Err(unreadable(column, format!("type {other} has no JSON form"))),
    };
    Ok(Some(value))
}

/// A finite float as a JSON number; NaN and infinities as their text, so the decoder refuses
/// them by name instead of reading an absent field.
fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map_or_else(|| Value::String(value.to_string()), Value::Number)
}

/// A decimal as the JSON number its text reads as (`12.34` in a DECIMAL(10,2) column is the
/// same f64 as `12.34` in a JSONL line).
fn decimal<T: arrow_array::types::DecimalType>(
    column: &str,
    array: &dyn Array,
    r: usize,
) -> Result<Value, Refusal> {
    let text = array
        .as_primitive_opt::<T>()
        .ok_or_else(|| unreadable(column, "not a decimal array"))?
        .value_as_string(r);
    let number: f64 = text
        .parse()
        .map_err(|_| unreadable(column, format!("decimal {text} is not a number")))?;
    Ok(float(number))
}

fn timestamp(column: &str, array: &dyn Array, r: usize, unit: TimeUnit) -> Result<Value, Refusal> {
    let value = match unit {
        TimeUnit::Second => primitive::<TimestampSecondType>(column, array, r)?,
        TimeUnit::Millisecond => primitive::<TimestampMillisecondType>(column, array, r)?,
        TimeUnit::Microsecond => primitive::<TimestampMicrosecondType>(column, array, r)?,
        TimeUnit::Nanosecond => primitive::<TimestampNanosecondType>(column, array, r)?,
    };
    instant(column, value, unit)
}

/// `value` units after the Unix epoch as an RFC 3339 instant in UTC, with as many fraction
/// digits as it has. A timestamp without a time zone (a "local" one) is read as UTC: the file
/// does not say which zone it meant.
fn instant(column: &str, value: i64, unit: TimeUnit) -> Result<Value, Refusal> {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let secs = value.div_euclid(per_second);
    let nanos = value.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let time = u32::try_from(nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(secs, n))
        .ok_or_else(|| {
            Refusal::new(
                "bad_timestamp",
                format!("column {column:?}: timestamp {value} ({unit:?}) is out of range"),
            )
        })?;
    Ok(Value::String(
        time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    ))
}

/// A time of day as `HH:MM:SS[.fraction]`.
fn time_of_day(column: &str, array: &dyn Array, r: usize) -> Result<Value, Refusal> {
    let nanos: i64 = match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            i64::from(primitive::<Time32SecondType>(column, array, r)?) * 1_000_000_000
        }
        DataType::Time32(_) => {
            i64::from(primitive::<Time32MillisecondType>(column, array, r)?) * 1_000_000
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            primitive::<Time64MicrosecondType>(column, array, r)?.saturating_mul(1_000)
        }
        _ => primitive::<Time64NanosecondType>(column, array, r)?,
    };
    let secs = u32::try_from(nanos.div_euclid(1_000_000_000)).ok();
    let frac = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok();
    secs.zip(frac)
        .and_then(|(s, f)| chrono::NaiveTime::from_num_seconds_from_midnight_opt(s, f))
        .map(|t| Value::String(t.to_string()))
        .ok_or_else(|| unreadable(column, format!("time of day {nanos} ns is out of range")))
}

fn text<'a>(column: &str, array: &'a dyn Array, r: usize) -> Result<&'a str, Refusal> {
    match array.data_type() {
        DataType::Utf8 => array.as_string_opt::<i32>().map(|a| a.value(r)),
        DataType::LargeUtf8 => array.as_string_opt::<i64>().map(|a| a.value(r)),
        _ => array.as_string_view_opt().map(|a| a.value(r)),
    }
    .ok_or_else(|| unreadable(column, "not a string array"))
}

fn binary<'a>(column: &str, array: &'a dyn Array, r: usize) -> Result<&'a [u8], Refusal> {
    match array.data_type() {
        DataType::Binary => array.as_binary_opt::<i32>().map(|a| a.value(r)),
        DataType::LargeBinary => array.as_binary_opt::<i64>().map(|a| a.value(r)),
        DataType::FixedSizeBinary(_) => array.as_fixed_size_binary_opt().map(|a| a.value(r)),
        _ => array.as_binary_view_opt().map(|a| a.value(r)),
    }
    .ok_or_else(|| unreadable(column, "not a binary array"))
}

/// A list cell as a JSON array; null items stay in place as JSON nulls.
fn list(column: &str, array: &dyn Array, r: usize) -> Result<Value, Refusal> {
    let items = match array.data_type() {
        DataType::List(_) => array.as_list_opt::<i32>().map(|a| a.value(r)),
        _ => array.as_list_opt::<i64>().map(|a| a.value(r)),
    }
    .ok_or_else(|| unreadable(column, "not a list array"))?;
    (0..items.len())
        .map(|i| cell(column, items.as_ref(), i).map(|v| v.unwrap_or(Value::Null)))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Dictionary key `r` as an index into the dictionary's values.
fn dictionary_key(keys: &dyn Array, r: usize) -> Option<usize> {
    let key = |k: Option<i64>| k.and_then(|k| usize::try_from(k).ok());
    match keys.data_type() {
        DataType::Int8 => key(keys
            .as_primitive_opt::<Int8Type>()
            .map(|a| a.value(r).into())),
        DataType::Int16 => key(keys
            .as_primitive_opt::<Int16Type>()
            .map(|a| a.value(r).into())),
        DataType::Int32 => key(keys
            .as_primitive_opt::<Int32Type>()
            .map(|a| a.value(r).into())),
        DataType::Int64 => key(keys.as_primitive_opt::<Int64Type>().map(|a| a.value(r))),
        DataType::UInt8 => key(keys
            .as_primitive_opt::<UInt8Type>()
            .map(|a| a.value(r).into())),
        DataType::UInt16 => key(keys
            .as_primitive_opt::<UInt16Type>()
            .map(|a| a.value(r).into())),
        DataType::UInt32 => key(keys
            .as_primitive_opt::<UInt32Type>()
            .map(|a| a.value(r).into())),
        DataType::UInt64 => keys
            .as_primitive_opt::<UInt64Type>()
            .and_then(|a| usize::try_from(a.value(r)).ok()),
        _ => None,
    }
}
