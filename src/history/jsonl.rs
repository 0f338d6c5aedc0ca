//! JSONL history: one record per line, handed to the decoder as bytes, exactly as a Kafka
//! payload is.
//!
//! Lines are bytes, not text: a line that is not UTF-8 is refused like any other bad record,
//! and so is a line longer than [`MAX_RECORD_BYTES`] (skipped without being buffered, so a
//! binary file misnamed `.jsonl` cannot take all memory).

use std::io::{BufRead, Read};
use std::path::Path;

use super::{HistoryError, Position, ReadOptions, Refusal, Sink, MAX_RECORD_BYTES};

/// Reads the lines of `input` (the text of `path`) and hands each non-blank one to `sink`.
/// Returns the number of non-blank lines.
pub(super) fn read(
    path: &Path,
    mut input: impl BufRead,
    options: &ReadOptions<'_>,
    sink: &mut Sink<'_>,
) -> Result<u64, HistoryError> {
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut records = 0u64;
    loop {
        number += 1;
        let failed = |source| HistoryError::Read {
            path: path.display().to_string(),
            at: Position::Line(number),
            source,
        };
        line.clear();
        let read = (&mut input)
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(failed)?;
        if read == 0 {
            return Ok(records);
        }
        let outcome = if line.len() > MAX_RECORD_BYTES && line.last() != Some(&b'\n') {
            input.skip_until(b'\n').map_err(failed)?;
            Err(Refusal::new(
                "malformed_json",
                format!("the line is longer than {} MiB", MAX_RECORD_BYTES >> 20),
            ))
        } else {
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match std::str::from_utf8(text) {
                Ok(_) => options.decode(text),
                Err(e) => Err(Refusal::new("malformed_json", format!("not UTF-8: {e}"))),
            }
        };
        records += 1;
        sink(Position::Line(number), outcome);
    }
}
