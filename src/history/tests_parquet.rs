//! Tests of the Parquet reader: column types to JSON, row numbers, nulls, corrupt files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Decimal128Array, DictionaryArray, DurationSecondArray, Float32Array,
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::event::Event;

/// A Parquet file of `columns`, in row groups of 1000 rows.
fn parquet_file(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let path = dir.join(name);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1_000))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

type Outcomes = Vec<(Position, Result<Decoded, Refusal>)>;

fn read_all(path: &Path) -> Result<Outcomes, HistoryError> {
    let decoder = EventDecoder::native();
    let mut out = Vec::new();
    read_file(path, &ReadOptions::offline(&decoder), &mut |at, o| {
        out.push((at, o))
    })?;
    Ok(out)
}

fn events(out: &Outcomes) -> Vec<Event> {
    out.iter()
        .map(|(at, o)| match o {
            Ok(Decoded::Event(e)) => e.clone(),
            other => panic!("{at}: {other:?}"),
        })
        .collect()
}

fn ts(text: &str) -> i64 {
    crate::time::parse_instant(text).unwrap()
}

/// The native columns with `ts` of the given array; four events of user u1.
fn native_with_ts(dir: &Path, name: &str, ts: ArrayRef) -> PathBuf {
    parquet_file(
        dir,
        name,
        vec![
            (
                "event_id",
                strings(&[Some("a"), Some("b"), Some("c"), Some("d")]),
            ),
            ("user_id", strings(&[Some("u1"); 4])),
            ("type", strings(&[Some("login"); 4])),
            ("ts", ts),
        ],
    )
}

#[test]
fn timestamps_of_every_unit_and_dates_become_utc_instants() {
    let dir = tempfile::tempdir().unwrap();
    let s = 1_748_736_000i64; // 2025-06-01T00:00:00Z
    let expected = [
        ts("2025-06-01T00:00:00Z"),
        ts("2025-06-01T00:00:00.123Z"),
        ts("2025-06-01T00:00:00.123Z"),
        ts("2025-06-01T00:00:00.123Z"),
    ];
    let columns: [(&str, ArrayRef); 4] = [
        (
            "s.parquet",
            Arc::new(TimestampSecondArray::from(vec![s, s, s, s])),
        ),
        (
            "ms.parquet",
            Arc::new(
                TimestampMillisecondArray::from(vec![s * 1_000 + 123; 4]).with_timezone("UTC"),
            ),
        ),
        (
            "us.parquet",
            Arc::new(
                TimestampMicrosecondArray::from(vec![s * 1_000_000 + 123_456; 4])
                    .with_timezone("+02:00"),
            ),
        ),
        (
            "ns.parquet",
            Arc::new(
                TimestampNanosecondArray::from(vec![s * 1_000_000_000 + 123_456_789; 4])
                    .with_timezone("UTC"),
            ),
        ),
    ];
    for (i, (name, array)) in columns.into_iter().enumerate() {
        let got = events(&read_all(&native_with_ts(dir.path(), name, array)).unwrap());
        assert_eq!(got.len(), 4, "{name}");
        assert!(got.iter().all(|e| e.ts == expected[i]), "{name}: {got:?}");
    }
    let days = Arc::new(Date32Array::from(vec![20_240; 4])); // 2025-06-01
    let got = events(&read_all(&native_with_ts(dir.path(), "date.parquet", days)).unwrap());
    assert!(got.iter().all(|e| e.ts == expected[0]), "{got:?}");
}

#[test]
fn decimals_and_floats_read_as_the_same_amounts_as_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let cents = Decimal128Array::from(vec![Some(1234), None, Some(5), Some(99_999_999)])
        .with_precision_and_scale(12, 2)
        .unwrap();
    let base = |amount: ArrayRef| {
        vec![
            (
                "event_id",
                strings(&[Some("a"), Some("b"), Some("c"), Some("d")]),
            ),
            ("user_id", strings(&[Some("u1"); 4])),
            ("type", strings(&[Some("purchase"); 4])),
            ("ts", strings(&[Some("2025-06-01T00:00:00Z"); 4])),
            ("amount", amount),
        ]
    };
    let want = [12.34, 0.0, 0.05, 999_999.99];
    let f32s = Float32Array::from(vec![Some(12.34f32), None, Some(0.05), Some(999_999.99)]);
    let f64s = Float64Array::from(vec![Some(12.34), None, Some(0.05), Some(999_999.99)]);
    for (name, amount) in [
        ("decimal.parquet", Arc::new(cents) as ArrayRef),
        ("f32.parquet", Arc::new(f32s)),
        ("f64.parquet", Arc::new(f64s)),
    ] {
        let path = parquet_file(dir.path(), name, base(amount));
        let amounts: Vec<f64> = events(&read_all(&path).unwrap())
            .iter()
            .map(|e| e.amount)
            .collect();
        if name == "f32.parquet" {
            // 999999.99 has no f32 closer than 1000000: the file holds 1e6, and so do we.
            assert_eq!(amounts[..3], want[..3], "{name}");
        } else {
            assert_eq!(amounts, want, "{name}");
        }
    }
}

#[test]
fn null_cells_are_absent_fields_refused_by_row_number_across_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000; // several batches and row groups
    let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let users: Vec<Option<&str>> = (0..n).map(|i| (i != 4_999).then_some("u1")).collect();
    let types = DictionaryArray::<arrow_array::types::Int32Type>::from_iter(
        (0..n).map(|i| Some(if i % 2 == 0 { "login" } else { "search" })),
    );
    let path = parquet_file(
        dir.path(),
        "nulls.parquet",
        vec![
            ("event_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("user_id", strings(&users)),
            ("type", Arc::new(types)),
            ("ts", strings(&vec![Some("2025-06-01T00:00:00Z"); n])),
            ("seq", Arc::new(Int64Array::from_iter_values(0..n as i64))),
            ("wait", Arc::new(DurationSecondArray::from(vec![5; n]))),
        ],
    );
    let out = read_all(&path).unwrap();
    assert_eq!(out.len(), n);
    let refused: Vec<_> = out.iter().filter(|(_, o)| o.is_err()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, Position::Row(5_000));
    match &refused[0].1 {
        Err(r) => assert!(
            r.reason == "missing_field" && r.detail.contains("user_id"),
            "{r}"
        ),
        other => panic!("{other:?}"),
    }
    let kinds: Vec<&str> = out[..2]
        .iter()
        .map(|(_, o)| match o {
            Ok(Decoded::Event(e)) => e.kind.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["login", "search"], "dictionary-encoded strings");
}

#[test]
fn a_corrupt_or_truncated_parquet_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = native_with_ts(
        dir.path(),
        "good.parquet",
        Arc::new(TimestampMillisecondArray::from(vec![1_748_736_000_000; 4])),
    );
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    for b in flipped.iter_mut().skip(4).take(bytes.len() / 2) {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    for (name, content) in [
        ("empty.parquet", Vec::new()),
        ("text.parquet", b"event_id,user_id\n".to_vec()),
        ("truncated.parquet", bytes[..bytes.len() - 20].to_vec()),
        ("flipped.parquet", flipped),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        match read_all(&path) {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains(name) && e.contains("not a readable Parquet file"),
                    "{e}"
                );
            }
            // Damage that only hits values reads as refused rows, never as a crash.
            Ok(out) => assert_eq!(name, "flipped.parquet", "{out:?}"),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Damaging any bytes of a valid Parquet file gives refused rows or an error naming the
    /// file, never a panic out of the reader.
    #[test]
    fn damaged_parquet_files_never_panic(
        damage in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let good = native_with_ts(
            dir.path(),
            "p.parquet",
            Arc::new(TimestampMillisecondArray::from(vec![1_748_736_000_000; 4])),
        );
        let mut bytes = std::fs::read(&good).unwrap();
        for (at, value) in damage {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        std::fs::write(&good, &bytes).unwrap();
        if let Err(e) = read_all(&good) {
            proptest::prop_assert!(e.to_string().contains("p.parquet"), "{}", e);
        }
    }
}
