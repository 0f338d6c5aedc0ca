//! History from files: the offline tools (`train`, `evaluate`, `replay`) read events from JSONL
//! (`.jsonl`, `.json`, `.jsonl.gz`), CSV (`.csv`, `.csv.gz`) and Parquet (`.parquet`) files.
//!
//! Every record goes through the same [`EventDecoder`] as a Kafka message does (JSONL lines as
//! bytes, CSV and Parquet rows as JSON objects of column → value), so a model is trained on
//! exactly what the service will see. Files are streamed record by record, never read whole:
//! the only thing that grows with the input is the `Vec<Event>` the tools need anyway, so a
//! history larger than memory in its text form still loads. A refused record keeps its place
//! (file, and line or Parquet row) for the summary; records the mapping ignores are counted by
//! their source type, not refused.

mod csv_rows;
mod jsonl;
mod loaded;
#[cfg(feature = "parquet")]
mod parquet_rows;
mod progress;

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "parquet"))]
mod tests_parquet;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::event::Rejection;
use crate::mapping::{Decoded, EventDecoder};
use crate::replay::sort_events;
use crate::Millis;

pub use loaded::{Example, LoadedEvents};

/// The longest record (a JSONL line, a CSV row) read into memory. An event is a few hundred
/// bytes; a record this long is a file that is not what its name says (a binary file, a CSV
/// quote that never closes), and buffering it would let one bad file take all memory.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// Errors that stop reading a file. Bad records do not: they are refused one by one.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "{path}: cannot tell the file's format from its name; history files end in .jsonl, \
         .json, .jsonl.gz, .csv, .csv.gz or .parquet"
    )]
    UnknownFormat { path: String },
    #[error(
        "{path}: this churnguard was built without Parquet support (the `parquet` cargo \
         feature); convert the file to CSV or JSONL, or build with default features"
    )]
    ParquetNotBuilt { path: String },
    #[error("{path} is given twice: its events would count double")]
    SameFileTwice { path: String },
    #[error("cannot open history file {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path} at {at}: {source}")]
    Read {
        path: String,
        at: Position,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    BadHeader { path: String, detail: String },
    #[error("{path} is not a readable Parquet file: {detail}")]
    Parquet { path: String, detail: String },
    #[error(
        "no valid event in {files} ({records} non-blank records: {refused} refused, \
         {ignored} ignored; see the summary above): nothing to work on"
    )]
    NothingValid {
        files: String,
        records: u64,
        refused: u64,
        ignored: u64,
    },
    #[error(
        "{refused} of {records} records of {files} refused ({pct:.1} %), more than \
         --max-refused-fraction {max} allows; fix the input, or raise the limit to go on \
         without those records",
        pct = *.refused as f64 * 100.0 / (*.records).max(1) as f64
    )]
    TooManyRefused {
        files: String,
        refused: u64,
        records: u64,
        max: f64,
    },
}

/// The file formats, told apart by the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.json`), optionally gzip-compressed (`.gz`).
    Jsonl { gzip: bool },
    /// A header of column names, then one record per row (`.csv`, `.csv.gz`).
    Csv { gzip: bool },
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl Format {
    /// The format a file name announces (case-insensitive), or why there is none.
    pub fn of(path: &Path) -> Result<Format, HistoryError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        match (stem.rsplit_once('.').map(|(_, ext)| ext), gzip) {
            (Some("jsonl" | "json" | "ndjson"), gzip) => Ok(Format::Jsonl { gzip }),
            (Some("csv"), gzip) => Ok(Format::Csv { gzip }),
            (Some("parquet"), false) => Ok(Format::Parquet),
            _ => Err(HistoryError::UnknownFormat {
                path: path.display().to_string(),
            }),
        }
    }
}

/// Where a record was in its file: the physical line it starts on (JSONL, CSV; counting from
/// 1, blank lines and the CSV header included) or its row (Parquet; counting from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    Line(u64),
    Row(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Why a record was refused: the decoder's [`Rejection`], or a record the file format itself
/// makes unreadable (a ragged CSV row, a line that is not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable snake_case name: a [`crate::event::RejectReason`] name, or `malformed_csv` /
    /// `malformed_parquet` for records their format cannot give as a whole.
    pub reason: &'static str,
    /// A sentence a person can act on.
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Refusal {
            reason: r.reason.as_str(),
            detail: r.detail,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// How records become events.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    pub decoder: &'a EventDecoder,
    /// The clock that bounds future timestamps (see [`crate::event::decode`]).
    pub now: Millis,
    pub max_future_skew: Millis,
    /// Draw a progress bar per file on stderr (only where stderr is a terminal).
    pub progress: bool,
}

impl<'a> ReadOptions<'a> {
    /// For history known to be in the past: no bound on future timestamps beyond the
    /// representable range, and no progress bar.
    pub fn offline(decoder: &'a EventDecoder) -> Self {
        ReadOptions {
            decoder,
            now: Millis::MAX / 4,
            max_future_skew: 0,
            progress: false,
        }
    }

    fn decode(&self, payload: &[u8]) -> Result<Decoded, Refusal> {
        self.decoder
            .decode(payload, self.now, self.max_future_skew)
            .map_err(Refusal::from)
    }

    fn decode_value(&self, row: &serde_json::Value) -> Result<Decoded, Refusal> {
        self.decoder
            .decode_value(row, self.now, self.max_future_skew)
            .map_err(Refusal::from)
    }
}

/// What a reader hands on for each record, in file order.
pub type Sink<'s> = dyn FnMut(Position, Result<Decoded, Refusal>) + 's;

/// Streams every record of one file, in file order, to `sink`; the format comes from the file
/// name ([`Format::of`]). Returns the number of records (non-blank lines, rows) read.
pub fn read_file(
    path: &Path,
    options: &ReadOptions<'_>,
    sink: &mut Sink<'_>,
) -> Result<u64, HistoryError> {
    let format = Format::of(path)?;
    let open = |source| HistoryError::Open {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open)?;
    match format {
        Format::Jsonl { gzip } => read_text(path, file, gzip, options, sink, jsonl::read),
        Format::Csv { gzip } => read_text(path, file, gzip, options, sink, csv_rows::read),
        #[cfg(feature = "parquet")]
        Format::Parquet => parquet_rows::read(path, file, options, sink),
        #[cfg(not(feature = "parquet"))]
        Format::Parquet => Err(HistoryError::ParquetNotBuilt {
            path: path.display().to_string(),
        }),
    }
}

/// A reader of records from a text stream.
type TextReader = fn(
    &Path,
    Box<dyn std::io::BufRead>,
    &ReadOptions<'_>,
    &mut Sink<'_>,
) -> Result<u64, HistoryError>;

/// Runs `reader` over the text of `file` (gunzipped if `gzip`) under a progress bar.
fn read_text(
    path: &Path,
    file: std::fs::File,
    gzip: bool,
    options: &ReadOptions<'_>,
    sink: &mut Sink<'_>,
    reader: TextReader,
) -> Result<u64, HistoryError> {
    let bar = progress::file_bar(path, &file, options.progress);
    let input = progress::text_input(file, gzip, bar.clone());
    let read = reader(path, input, options, sink);
    bar.finish_and_clear();
    read
}

/// Reads every file in `paths` (any mix of formats, in any order: the events come back in
/// [`sort_events`] order, so splitting a history into files, e.g. by month, changes nothing).
/// A file named twice is refused rather than counted twice.
pub fn load(paths: &[PathBuf], options: &ReadOptions<'_>) -> Result<LoadedEvents, HistoryError> {
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        // Two spellings of one file (`a.csv`, `./a.csv`) are the same file too.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            return Err(HistoryError::SameFileTwice {
                path: path.display().to_string(),
            });
        }
    }
    let mut loaded = LoadedEvents::default();
    for path in paths {
        let file = loaded.add_file(path);
        let started = std::time::Instant::now();
        let records = read_file(path, options, &mut |at, outcome| {
            loaded.take(file, at, outcome)
        })?;
        tracing::debug!(
            file = %path.display(),
            records,
            secs = started.elapsed().as_secs_f64(),
            "history file read"
        );
    }
    sort_events(&mut loaded.events);
    Ok(loaded)
}
