//! Tests of the file formats, the text readers (JSONL, CSV, gzip) and the account of refusals.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::event::{Event, EventKind};

/// A file `name` holding `bytes` in a fresh temporary directory (kept alive by the guard).
fn file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

type Outcomes = Vec<(Position, Result<Decoded, Refusal>)>;

/// Every record of `path` as the reader hands it on, or the error that stopped it.
fn read_all(path: &Path) -> Result<Outcomes, HistoryError> {
    let decoder = EventDecoder::native();
    let mut out = Vec::new();
    let records = read_file(path, &ReadOptions::offline(&decoder), &mut |at, o| {
        out.push((at, o))
    })?;
    assert_eq!(
        records,
        out.len() as u64,
        "the count is of records handed on"
    );
    Ok(out)
}

fn event(o: &Result<Decoded, Refusal>) -> &Event {
    match o {
        Ok(Decoded::Event(e)) => e,
        other => panic!("not an event: {other:?}"),
    }
}

fn refusal(o: &Result<Decoded, Refusal>) -> &Refusal {
    match o {
        Err(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

const LOGIN: &str =
    r#"{"event_id":"e1","user_id":"u1","type":"login","ts":"2025-06-01T00:00:00Z"}"#;
const PURCHASE: &str = r#"{"event_id":"e2","user_id":"u1","type":"purchase","ts":"2025-06-02T10:00:00.250Z","amount":12.34}"#;

#[test]
fn formats_come_from_the_file_name() {
    for (name, format) in [
        ("a.jsonl", Format::Jsonl { gzip: false }),
        ("a.json", Format::Jsonl { gzip: false }),
        ("a.ndjson", Format::Jsonl { gzip: false }),
        ("dir.v2/a.JSONL.GZ", Format::Jsonl { gzip: true }),
        ("2025-06.csv", Format::Csv { gzip: false }),
        ("a.csv.gz", Format::Csv { gzip: true }),
        ("a.Parquet", Format::Parquet),
    ] {
        assert_eq!(Format::of(Path::new(name)).unwrap(), format, "{name}");
    }
    for name in ["a.txt", "a", "a.gz", "a.parquet.gz", "csv"] {
        let err = Format::of(Path::new(name)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{name}: ")), "{err}");
        assert!(err.contains(".parquet"), "names the formats: {err}");
    }
}

#[test]
fn jsonl_lines_keep_their_physical_line_numbers_and_bad_utf8_is_refused() {
    let mut bytes = format!("{LOGIN}\n\n  \n").into_bytes();
    bytes.extend_from_slice(b"{\"event_id\":\"x\",\"user_id\":\"u\xff\"}\r\n");
    bytes.extend_from_slice(PURCHASE.as_bytes()); // no final newline
    let (_dir, path) = file("e.jsonl", &bytes);
    let out = read_all(&path).unwrap();
    let at: Vec<Position> = out.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        at,
        [Position::Line(1), Position::Line(4), Position::Line(5)]
    );
    assert_eq!(event(&out[0].1).kind, EventKind::Login);
    let r = refusal(&out[1].1);
    assert_eq!(r.reason, "malformed_json");
    assert!(r.detail.contains("not UTF-8"), "{r}");
    assert_eq!(event(&out[2].1).amount, 12.34);
}

#[test]
fn events_before_1970_or_after_the_range_are_refused_not_clamped() {
    let line = |id: &str, ts: &str| {
        format!(r#"{{"event_id":"{id}","user_id":"u","type":"login","ts":"{ts}"}}"#)
    };
    let text = [
        line("a", "1969-07-20T20:17:40Z"),
        line("b", "0001-01-01T00:00:00Z"),
        line("c", "2106-02-07T06:28:16Z"),
        line("d", "2023-11-14T22:13:20Z"),
    ]
    .join("\n");
    let (_dir, path) = file("e.jsonl", text.as_bytes());
    let decoder = EventDecoder::native();
    let loaded = load(&[path], &ReadOptions::offline(&decoder)).unwrap();
    assert_eq!(loaded.events.len(), 1, "{:?}", loaded.events);
    let reasons: Vec<_> = loaded.refused_by_reason().collect();
    assert_eq!(reasons.len(), 1);
    let (reason, count, examples) = reasons[0];
    assert_eq!((reason, count), ("bad_timestamp", 3));
    let lines: Vec<Position> = examples.iter().map(|e| e.at).collect();
    assert_eq!(
        lines,
        [Position::Line(1), Position::Line(2), Position::Line(3)]
    );
    for e in examples {
        assert!(e.detail.contains("1970-01-01T00:00:00Z"), "{}", e.detail);
    }
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_stopping_the_file() {
    let mut bytes = format!("{LOGIN}\n").into_bytes();
    bytes.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
    bytes.push(b'\n');
    bytes.extend_from_slice(PURCHASE.as_bytes());
    let (_dir, path) = file("e.jsonl", &bytes);
    let out = read_all(&path).unwrap();
    assert_eq!(out.len(), 3);
    assert!(refusal(&out[1].1).detail.contains("longer than 4 MiB"));
    assert_eq!(out[2].0, Position::Line(3));
    assert_eq!(event(&out[2].1).event_id, "e2");
}

#[test]
fn gzip_jsonl_reads_as_the_plain_file_and_a_corrupt_one_is_an_error_naming_it() {
    let text = format!("{LOGIN}\nnot json\n{PURCHASE}\n");
    let (_d1, plain) = file("e.jsonl", text.as_bytes());
    let (_d2, gz) = file("e.jsonl.gz", &gzip(text.as_bytes()));
    assert_eq!(read_all(&plain).unwrap(), read_all(&gz).unwrap());

    // Two gzip members one after the other (`cat a.gz b.gz`) are one stream.
    let mut two = gzip(format!("{LOGIN}\n").as_bytes());
    two.extend(gzip(format!("{PURCHASE}\n").as_bytes()));
    let (_d3, cat) = file("cat.jsonl.gz", &two);
    assert_eq!(read_all(&cat).unwrap().len(), 2);

    let mut corrupt = gzip(text.repeat(50).as_bytes());
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 8].copy_from_slice(b"\xde\xad\xbe\xef\xde\xad\xbe\xef");
    let truncated = gzip(text.repeat(50).as_bytes())[..middle].to_vec();
    for (name, bytes) in [
        ("corrupt.jsonl.gz", corrupt),
        ("truncated.jsonl.gz", truncated),
        ("plain.jsonl.gz", text.clone().into_bytes()),
    ] {
        let (_d, path) = file(name, &bytes);
        let err = read_all(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn csv_rows_become_objects_of_their_header_with_quoted_commas_and_empty_cells() {
    let text = "\u{feff}event_id,user_id,type,ts,amount,note\n\
                e1,\"Doe, Jane\",login,2025-06-01T00:00:00Z,,\"a \"\"quoted\"\"\nnote\"\n\
                e2,u2,purchase,2025-06-02T10:00:00.250Z,12.34,\n\
                \n\
                e3,,login,2025-06-03T00:00:00Z,,\n";
    let (_dir, path) = file("e.csv", text.as_bytes());
    let out = read_all(&path).unwrap();
    // The same rows with Windows line ends sit on the same lines.
    let (_dir2, crlf) = file("crlf.csv", text.replace('\n', "\r\n").as_bytes());
    let crlf_lines: Vec<Position> = read_all(&crlf).unwrap().iter().map(|(p, _)| *p).collect();
    assert_eq!(crlf_lines, out.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    assert_eq!(out.len(), 3);
    let first = event(&out[0].1);
    assert_eq!(first.user_id, "Doe, Jane");
    assert_eq!(first.amount, 0.0, "an empty cell is an absent field");
    assert_eq!(out[0].0, Position::Line(2));
    // The quoted line break makes row 2 two lines long: the next row starts on line 4.
    assert_eq!(out[1].0, Position::Line(4));
    assert_eq!(event(&out[1].1).amount, 12.34);
    assert_eq!(out[2].0, Position::Line(6));
    let r = refusal(&out[2].1);
    assert_eq!(r.reason, "missing_field");
    assert!(r.detail.contains("user_id"), "{r}");
}

#[test]
fn a_ragged_csv_row_or_a_cell_that_is_not_utf8_is_refused_by_line() {
    let mut text = b"event_id,user_id,type,ts\n\
                     e1,u1,login,2025-06-01T00:00:00Z\n\
                     e2,u1,login\n\
                     e3,u1,login,2025-06-01T00:00:00Z,extra\n\
                     e4,u"
        .to_vec();
    text.extend_from_slice(b"\xff,login,2025-06-01T00:00:00Z\ne5,u1,login,2025-06-01T00:00:00Z\n");
    let (_dir, path) = file("e.csv", &text);
    let out = read_all(&path).unwrap();
    assert_eq!(out.len(), 5);
    for (i, cells) in [(1, 3), (2, 5)] {
        let r = refusal(&out[i].1);
        assert_eq!(r.reason, "malformed_csv");
        assert_eq!(
            r.detail,
            format!("the row has {cells} cells, the header 4 columns")
        );
    }
    assert_eq!(out[1].0, Position::Line(3));
    let r = refusal(&out[3].1);
    assert!(r.detail.contains("\"user_id\" is not UTF-8"), "{r}");
    assert_eq!(event(&out[4].1).event_id, "e5");
}

#[test]
fn a_csv_without_a_needed_column_refuses_every_row_and_stops_naming_the_file() {
    let text = "event_id,user_id,type\ne1,u1,login\ne2,u1,login\n";
    let (_dir, path) = file("no-ts.csv", text.as_bytes());
    let decoder = EventDecoder::native();
    let loaded = load(std::slice::from_ref(&path), &ReadOptions::offline(&decoder)).unwrap();
    let summary = loaded.refusal_summary();
    assert!(summary.contains("refused 2 of 2 records of"), "{summary}");
    assert!(
        summary.contains("no-ts.csv line 2: field \"ts\" is missing or empty"),
        "{summary}"
    );
    let err = loaded.check_refusals(0.5).unwrap_err().to_string();
    assert!(
        err.contains("no valid event in") && err.contains("no-ts.csv"),
        "{err}"
    );
}

#[test]
fn an_unusable_csv_header_stops_the_file_naming_it() {
    for (header, says) in [
        ("event_id,user_id,user_id", "column \"user_id\" twice"),
        ("event_id,,type", "column 2 has no name"),
        ("event_id,\u{1}\u{2}", ""),
    ] {
        let text = format!("{header}\na,b,c\n");
        let (_dir, path) = file("h.csv", text.as_bytes());
        match read_all(&path) {
            Err(e @ HistoryError::BadHeader { .. }) => {
                let e = e.to_string();
                assert!(e.contains("h.csv") && e.contains(says), "{e}");
            }
            Ok(out) => {
                // Odd but valid names: every row is refused by the decoder instead.
                assert!(says.is_empty(), "{header}: {out:?}");
                assert!(out.iter().all(|(_, o)| o.is_err()));
            }
            Err(other) => panic!("{header}: {other}"),
        }
    }
    let mut bad = b"event_id,\xff\n".to_vec();
    bad.extend_from_slice(b"a,b\n");
    let (_dir, path) = file("h.csv", &bad);
    let err = read_all(&path).unwrap_err().to_string();
    assert!(err.contains("h.csv") && err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_quote_that_never_closes_stops_the_file_at_its_line_not_at_the_end_of_memory() {
    let mut text = b"event_id,user_id,type,ts\ne1,u1,login,2025-06-01T00:00:00Z\ne2,\"u1".to_vec();
    let filler = b"x,y,z\n".repeat((MAX_RECORD_BYTES + (2 << 20)) / 6);
    text.extend_from_slice(&filler);
    let (_dir, path) = file("open-quote.csv.gz", &gzip(&text));
    let err = read_all(&path).unwrap_err().to_string();
    assert!(err.contains("open-quote.csv.gz"), "{err}");
    assert!(
        err.contains("line 3") && err.contains("never closes"),
        "{err}"
    );
}

#[test]
fn csv_gz_reads_as_the_plain_csv() {
    let text = "event_id,user_id,type,ts,amount\ne1,u1,purchase,2025-06-01T00:00:00Z,9.5\n";
    let (_d1, plain) = file("e.csv", text.as_bytes());
    let (_d2, gz) = file("e.csv.gz", &gzip(text.as_bytes()));
    assert_eq!(read_all(&plain).unwrap(), read_all(&gz).unwrap());
}

#[test]
fn several_files_in_any_order_give_the_same_sorted_events() {
    let csv = "event_id,user_id,type,ts,amount\n\
               e3,u2,purchase,2025-05-01T00:00:00Z,5\n\
               e4,u1,login,2025-07-01T00:00:00Z,\n";
    let (_d1, a) = file("june.jsonl", format!("{LOGIN}\n{PURCHASE}\n").as_bytes());
    let (_d2, b) = file("may-july.csv", csv.as_bytes());
    let decoder = EventDecoder::native();
    let options = ReadOptions::offline(&decoder);
    let ab = load(&[a.clone(), b.clone()], &options).unwrap();
    let ba = load(&[b.clone(), a.clone()], &options).unwrap();
    assert_eq!(ab.events, ba.events);
    let ids: Vec<&str> = ab.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e3", "e1", "e2", "e4"]);
    assert_eq!(ab.records(), 4);

    let twice = load(&[a.clone(), b, a.clone()], &options).unwrap_err();
    assert!(
        matches!(twice, HistoryError::SameFileTwice { .. }),
        "{twice}"
    );
    let missing = a.with_file_name("absent.jsonl");
    let err = load(&[a, missing], &options).unwrap_err().to_string();
    assert!(err.contains("absent.jsonl"), "{err}");
}

#[test]
fn the_summary_names_files_and_places_and_counts_ignored_records_by_type() {
    let mut loaded = LoadedEvents::default();
    let a = loaded.add_file(Path::new("a.csv"));
    let b = loaded.add_file(Path::new("b.parquet"));
    let ignored = |t: &str| {
        Ok(Decoded::Ignored {
            source_type: t.to_string(),
        })
    };
    for i in 0..5u64 {
        let r = Refusal::new("missing_field", format!("field \"ts\" is missing ({i})"));
        loaded.take(if i < 2 { a } else { b }, Position::Row(i + 1), Err(r));
    }
    loaded.take(a, Position::Line(9), ignored("identify"));
    loaded.take(b, Position::Row(9), ignored("identify"));
    loaded.take(b, Position::Row(10), ignored("page"));
    assert_eq!(
        (loaded.records(), loaded.refused(), loaded.ignored()),
        (8, 5, 3)
    );
    let summary = loaded.refusal_summary();
    assert!(
        summary.contains("refused 5 of 8 records of a.csv and b.parquet"),
        "{summary}"
    );
    assert!(
        summary.contains("missing_field: 5 (a.csv row 1: "),
        "{summary}"
    );
    assert!(summary.contains("b.parquet row 3: "), "{summary}");
    assert!(
        summary.contains("; ...)"),
        "only the first examples: {summary}"
    );
    assert!(summary.contains("by type: identify 2, page 1"), "{summary}");
    let err = loaded.check_refusals(1.0).unwrap_err().to_string();
    assert!(err.contains("5 refused, 3 ignored"), "{err}");
}

#[test]
fn too_many_refusals_stop_the_tools_and_a_few_do_not() {
    let text = format!("{LOGIN}\n{PURCHASE}\nbad\n");
    let (_dir, path) = file("e.jsonl", text.as_bytes());
    let decoder = EventDecoder::native();
    let loaded = load(&[path], &ReadOptions::offline(&decoder)).unwrap();
    assert!(loaded.check_refusals(0.5).is_ok());
    let err = loaded.check_refusals(0.2).unwrap_err().to_string();
    assert!(
        err.contains("1 of 3 records of") && err.contains("(33.3 %)"),
        "{err}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Whatever the bytes of a text history file (plain or gzip), the reader returns records
    /// or an error naming the file; it never panics.
    #[test]
    fn arbitrary_bytes_never_panic_the_text_readers(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        lines in proptest::collection::vec("[a-z0-9,\"\\\\{}:\\[\\] \\n\\r]{0,40}", 0..20),
    ) {
        let mut mixed = bytes.clone();
        mixed.extend(lines.concat().into_bytes());
        let tail = LOGIN.replace("login", "purchase");
        mixed.extend_from_slice(tail.as_bytes());
        for name in ["f.jsonl", "f.csv", "f.jsonl.gz", "f.csv.gz"] {
            for content in [&bytes, &mixed] {
                let content = if name.ends_with(".gz") && content.len() % 2 == 0 {
                    gzip(content)
                } else {
                    content.clone()
                };
                let (_dir, path) = file(name, &content);
                if let Err(e) = read_all(&path) {
                    proptest::prop_assert!(e.to_string().contains(name), "{}", e);
                }
            }
        }
    }
}
