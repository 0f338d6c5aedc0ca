//! CSV history: the header names the columns, each row becomes a JSON object of column → cell
//! (as a string; an empty cell is an absent field) for [`EventDecoder::decode_value`].
//!
//! Quoting follows RFC 4180 (the `csv` crate): quoted commas, quotes and line breaks inside a
//! cell are part of it. A row with more or fewer cells than the header, or a cell that is not
//! UTF-8, is refused with its line; a header that is not usable (not UTF-8, a name given twice,
//! an empty name) stops the file, since no row of it could be read right. A quote that never
//! closes would make the rest of the file one record: it stops the file once the record passes
//! [`MAX_RECORD_BYTES`], naming the line it started on.
//!
//! [`EventDecoder::decode_value`]: crate::mapping::EventDecoder::decode_value

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::{HistoryError, Position, ReadOptions, Refusal, Sink, MAX_RECORD_BYTES};

/// Reads the rows of `input` (the text of `path`) and hands each to `sink`. Returns the number
/// of rows (the header not counted).
pub(super) fn read(
    path: &Path,
    input: impl Read,
    options: &ReadOptions<'_>,
    sink: &mut Sink<'_>,
) -> Result<u64, HistoryError> {
    let lines = Rc::new(RefCell::new(Lines::default()));
    let tracked = Tracked {
        inner: input,
        lines: lines.clone(),
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(tracked);
    let mut record = ::csv::ByteRecord::new();
    let columns = match next(path, &mut reader, &mut record, &lines)? {
        Some(_) => header(path, &record)?,
        None => return Ok(0),
    };
    let mut rows = 0u64;
    while let Some(line) = next(path, &mut reader, &mut record, &lines)? {
        rows += 1;
        let outcome = row(&columns, &record).and_then(|value| options.decode_value(&value));
        sink(Position::Line(line), outcome);
    }
    Ok(rows)
}

/// Reads the next record into `record`; `Some(line its first cell is on)`, or `None` at the
/// end.
fn next<R: Read>(
    path: &Path,
    reader: &mut ::csv::Reader<R>,
    record: &mut ::csv::ByteRecord,
    lines: &RefCell<Lines>,
) -> Result<Option<u64>, HistoryError> {
    let start = reader.position().byte();
    lines.borrow_mut().record_start = start;
    let read = reader.read_byte_record(record);
    let line = lines.borrow_mut().line_of_record_at(start);
    match read {
        Ok(true) => Ok(Some(line)),
        Ok(false) => Ok(None),
        Err(e) => {
            let source = match e.into_kind() {
                ::csv::ErrorKind::Io(io) => io,
                other => std::io::Error::other(format!("{other:?}")),
            };
            Err(HistoryError::Read {
                path: path.display().to_string(),
                at: Position::Line(line),
                source,
            })
        }
    }
}

/// The column names of the header record, or why they cannot be used.
fn header(path: &Path, record: &::csv::ByteRecord) -> Result<Vec<String>, HistoryError> {
    let bad = |detail: String| HistoryError::BadHeader {
        path: path.display().to_string(),
        detail,
    };
    let mut columns: Vec<String> = Vec::with_capacity(record.len());
    for (i, cell) in record.iter().enumerate() {
        let name = std::str::from_utf8(cell)
            .map_err(|e| bad(format!("CSV header column {} is not UTF-8: {e}", i + 1)))?;
        // A byte-order mark (spreadsheet exports write one) is not part of the first name.
        let name = if i == 0 {
            name.trim_start_matches('\u{feff}')
        } else {
            name
        };
        if name.is_empty() {
            return Err(bad(format!("CSV header column {} has no name", i + 1)));
        }
        if columns.iter().any(|c| c == name) {
            return Err(bad(format!("CSV header names column {name:?} twice")));
        }
        columns.push(name.to_string());
    }
    Ok(columns)
}

/// One row as a JSON object of column → cell; empty cells are left out (an absent field).
fn row(columns: &[String], record: &::csv::ByteRecord) -> Result<Value, Refusal> {
    if record.len() != columns.len() {
        return Err(Refusal::new(
            "malformed_csv",
            format!(
                "the row has {} cells, the header {} columns",
                record.len(),
                columns.len()
            ),
        ));
    }
    let mut object = Map::new();
    for (name, cell) in columns.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(cell).map_err(|e| {
            Refusal::new(
                "malformed_csv",
                format!("column {name:?} is not UTF-8: {e}"),
            )
        })?;
        object.insert(name.clone(), Value::String(text.to_string()));
    }
    Ok(Value::Object(object))
}

/// The line breaks the CSV reader has been given but no record has passed yet, for the line
/// numbers of records: the CSV reader's own count points at the blank lines before a record
/// and, in a CRLF file, at the line before it. Also the guard against a record that never
/// ends.
#[derive(Debug, Default)]
struct Lines {
    /// Bytes handed to the CSV reader.
    read: u64,
    /// Where the record being read began.
    record_start: u64,
    /// Offsets of `\r` and `\n` bytes at or after the last record's start, `\n` ones marked
    /// with [`NEWLINE`].
    breaks: VecDeque<u64>,
    /// `\n` bytes before the first of `breaks`.
    newlines_before: u64,
}

/// Marks a `\n` (rather than a `\r`) in [`Lines::breaks`].
const NEWLINE: u64 = 1 << 63;

impl Lines {
    /// The line of the first cell of a record whose bytes begin at `start`: the CSV reader
    /// skips line breaks before a record (blank lines, the `\n` of a CRLF), so the record's
    /// own first byte is the first one after `start` that is not a line break.
    fn line_of_record_at(&mut self, start: u64) -> u64 {
        let mut at = start;
        while let Some(&b) = self.breaks.front() {
            let offset = b & !NEWLINE;
            if offset >= start && offset != at {
                break;
            }
            if offset == at {
                at += 1;
            }
            self.newlines_before += u64::from(b & NEWLINE != 0);
            self.breaks.pop_front();
        }
        self.newlines_before + 1
    }
}

/// What the CSV reader may have read ahead of the record it is on.
const READ_AHEAD_BYTES: u64 = 1 << 20;

/// The file's bytes on their way to the CSV reader: line breaks noted in [`Lines`], and the
/// read failed once more than [`MAX_RECORD_BYTES`] (plus the reader's read-ahead) have passed
/// since the current record began: a quote that never closes.
struct Tracked<R> {
    inner: R,
    lines: Rc<RefCell<Lines>>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut lines = self.lines.borrow_mut();
        if lines.read.saturating_sub(lines.record_start)
            > MAX_RECORD_BYTES as u64 + READ_AHEAD_BYTES
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a CSV record longer than {} MiB starts here: a quote that never closes?",
                    MAX_RECORD_BYTES >> 20
                ),
            ));
        }
        let n = self.inner.read(buf)?;
        let base = lines.read;
        for (i, b) in buf[..n].iter().enumerate() {
            match b {
                b'\n' => lines.breaks.push_back((base + i as u64) | NEWLINE),
                b'\r' => lines.breaks.push_back(base + i as u64),
                _ => {}
            }
        }
        lines.read += n as u64;
        Ok(n)
    }
}
