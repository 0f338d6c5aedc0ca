//! The events read from history files, and an account of everything that did not become one:
//! refusals counted by reason with their first few places (file and line or row), ignored
//! records counted by their source type.
//!
//! Only counts and a few examples are kept, never every refused record: a bad mapping can
//! refuse a whole 10 GB file, and its refusals must not take more memory than its events would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::event::Event;
use crate::mapping::Decoded;

use super::{HistoryError, Position, Refusal};

/// Refused records shown per reason in a summary; the rest are counted.
const EXAMPLES_PER_REASON: usize = 3;

/// Distinct ignored source types counted by name; further ones are counted together, so input
/// with a new type name in every record cannot grow the table without bound.
const IGNORED_TYPES_KEPT: usize = 1000;

/// The name under which ignored types beyond [`IGNORED_TYPES_KEPT`] are counted.
const OTHER_TYPES: &str = "(other types)";

/// Events of the history files plus what was refused or ignored (never dropped silently).
#[derive(Debug, Default)]
pub struct LoadedEvents {
    /// Valid events; in [`crate::replay::sort_events`] order once loading is done.
    pub events: Vec<Event>,
    /// The files read, in the order given.
    pub files: Vec<PathBuf>,
    /// Non-blank records read: events, refused and ignored ones.
    records: u64,
    refused: BTreeMap<&'static str, Tally>,
    /// Ignored records by their type as the source names it.
    ignored: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    examples: Vec<Example>,
}

/// One refused record, shown in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Index into [`LoadedEvents::files`].
    pub file: usize,
    pub at: Position,
    pub detail: String,
}

impl LoadedEvents {
    /// Starts a new file; returns its index for [`LoadedEvents::take`].
    pub fn add_file(&mut self, path: &Path) -> usize {
        self.files.push(path.to_path_buf());
        self.files.len() - 1
    }

    /// Accounts for one record of file `file`.
    pub fn take(&mut self, file: usize, at: Position, outcome: Result<Decoded, Refusal>) {
        self.records += 1;
        match outcome {
            Ok(Decoded::Event(e)) => self.events.push(e),
            Ok(Decoded::Ignored { source_type }) => {
                let key = if self.ignored.len() < IGNORED_TYPES_KEPT
                    || self.ignored.contains_key(&source_type)
                {
                    source_type
                } else {
                    OTHER_TYPES.to_string()
                };
                *self.ignored.entry(key).or_insert(0) += 1;
            }
            Err(r) => {
                let tally = self.refused.entry(r.reason).or_default();
                tally.count += 1;
                if tally.examples.len() < EXAMPLES_PER_REASON {
                    tally.examples.push(Example {
                        file,
                        at,
                        detail: r.detail,
                    });
                }
            }
        }
    }

    /// Non-blank records read (lines, rows): events plus refused and ignored records.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records refused.
    pub fn refused(&self) -> u64 {
        self.refused.values().map(|t| t.count).sum()
    }

    /// Records the decoder ignored.
    pub fn ignored(&self) -> u64 {
        self.ignored.values().sum()
    }

    /// Refusals by reason: the count and the first few refused records.
    pub fn refused_by_reason(&self) -> impl Iterator<Item = (&'static str, u64, &[Example])> {
        self.refused
            .iter()
            .map(|(reason, t)| (*reason, t.count, t.examples.as_slice()))
    }

    /// Ignored records by source type.
    pub fn ignored_by_type(&self) -> &BTreeMap<String, u64> {
        &self.ignored
    }

    /// The files read, as a person reads them in one line.
    pub fn files_label(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        match names.as_slice() {
            [] => "no file".to_string(),
            [one] => one.clone(),
            [a, b] => format!("{a} and {b}"),
            [first, .., last] => format!("{} files ({first} … {last})", names.len()),
        }
    }

    /// What was refused, per reason with its count and first records, e.g. `missing_field: 2
    /// (events.csv line 2: field "user_id" is missing; ...)`, then the ignored records by
    /// type. Empty when every record became an event.
    pub fn refusal_summary(&self) -> String {
        let mut out = String::new();
        let refused = self.refused();
        if refused > 0 {
            out.push_str(&format!(
                "refused {refused} of {} records of {}:\n",
                self.records,
                self.files_label()
            ));
            for (reason, count, examples) in self.refused_by_reason() {
                let shown: Vec<String> = examples
                    .iter()
                    .map(|e| format!("{} {}: {}", self.file_name(e.file), e.at, e.detail))
                    .collect();
                let more = if count > examples.len() as u64 {
                    "; ..."
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  {reason}: {count} ({}{more})\n",
                    shown.join("; ")
                ));
            }
        }
        if !self.ignored.is_empty() {
            let types: Vec<String> = self
                .ignored
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            out.push_str(&format!(
                "ignored {} of {} records (types without signal), by type: {}\n",
                self.ignored(),
                self.records,
                types.join(", ")
            ));
        }
        out
    }

    fn file_name(&self, file: usize) -> String {
        self.files
            .get(file)
            .map_or_else(|| "?".to_string(), |p| p.display().to_string())
    }

    /// Refuses a history with no valid event, or with more than `max_fraction` of its records
    /// refused: a tool would otherwise report on a small, unrepresentative remainder.
    pub fn check_refusals(&self, max_fraction: f64) -> Result<(), HistoryError> {
        let refused = self.refused();
        if self.events.is_empty() {
            return Err(HistoryError::NothingValid {
                files: self.files_label(),
                records: self.records,
                refused,
                ignored: self.ignored(),
            });
        }
        if refused as f64 > max_fraction * self.records as f64 {
            return Err(HistoryError::TooManyRefused {
                files: self.files_label(),
                refused,
                records: self.records,
                max: max_fraction,
            });
        }
        Ok(())
    }
}
