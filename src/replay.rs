//! The file source: events from JSONL, driven through the engine in event-time order.
//!
//! Backtests, training and the parity test use this path; it calls the same
//! [`Engine::advance`] / [`Engine::apply`] sequence as the Kafka pipeline, so the features and
//! alerts it produces are the ones the service would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::alert::WinbackAlert;
use crate::engine::{Applied, Engine};
use crate::event::{self, Event, RejectReason, Rejection};
use crate::{Millis, DAY_MS};

/// Errors reading an events file.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read events file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no valid event in {path} ({lines} non-blank lines, all refused; see the refusals above): nothing to work on")]
    NothingValid { path: String, lines: usize },
    #[error(
        "{refused} of {lines} lines of {path} refused ({pct:.1} %), more than \
         --max-refused-fraction {max} allows; fix the input, or raise the limit to go on \
         without those lines",
        pct = percent(.refused, .lines)
    )]
    TooManyRefused {
        path: String,
        refused: usize,
        lines: usize,
        max: f64,
    },
}

fn percent(part: &usize, whole: &usize) -> f64 {
    *part as f64 * 100.0 / (*whole).max(1) as f64
}

/// Refused lines shown per reason in a summary; the rest are counted.
const EXAMPLES_PER_REASON: usize = 3;

/// Events of a file plus what was refused, line by line (never dropped silently).
#[derive(Debug, Default)]
pub struct LoadedEvents {
    /// Valid events, sorted by event time (stable: file order within a timestamp).
    pub events: Vec<Event>,
    /// `(line number, reason)` of every refused line.
    pub rejected: Vec<(usize, Rejection)>,
}

impl LoadedEvents {
    /// Refusals counted by reason, for a summary line.
    pub fn rejected_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for (_, r) in &self.rejected {
            *m.entry(r.reason.as_str()).or_insert(0) += 1;
        }
        m
    }

    /// Non-blank lines read: valid events plus refused lines.
    pub fn lines(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    /// What was refused, per reason: the count and the first few lines with their detail, e.g.
    /// `missing_field: 2 (line 1: field "user_id" is missing; line 3: ...)`. Empty when
    /// nothing was refused.
    pub fn refusal_summary(&self, path: &Path) -> String {
        if self.rejected.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "refused {} of {} lines of {}:\n",
            self.rejected.len(),
            self.lines(),
            path.display()
        );
        for (reason, count) in self.rejected_by_reason() {
            let examples: Vec<String> = self
                .rejected
                .iter()
                .filter(|(_, r)| r.reason.as_str() == reason)
                .take(EXAMPLES_PER_REASON)
                .map(|(line, r)| format!("line {line}: {}", r.detail))
                .collect();
            let more = if count > examples.len() { "; ..." } else { "" };
            out.push_str(&format!(
                "  {reason}: {count} ({}{more})\n",
                examples.join("; ")
            ));
        }
        out
    }

    /// Refuses a file with no valid event, or with more than `max_fraction` of its lines
    /// refused: a tool would otherwise report on a small, unrepresentative remainder.
    pub fn check_refusals(&self, path: &Path, max_fraction: f64) -> Result<(), ReplayError> {
        let path = path.display().to_string();
        if self.events.is_empty() {
            return Err(ReplayError::NothingValid {
                path,
                lines: self.lines(),
            });
        }
        let refused = self.rejected.len();
        if refused as f64 > max_fraction * self.lines() as f64 {
            return Err(ReplayError::TooManyRefused {
                path,
                refused,
                lines: self.lines(),
                max: max_fraction,
            });
        }
        Ok(())
    }
}

/// Reads a JSONL file of events. Blank lines are skipped; every other line is an event or a
/// recorded rejection with its line number (bytes that are not UTF-8 included). `now` bounds
/// future timestamps like the service's clock does.
pub fn load_events(
    path: &Path,
    now: Millis,
    max_future_skew: Millis,
) -> Result<LoadedEvents, ReplayError> {
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = LoadedEvents::default();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| ReplayError::Read {
                path: path.display().to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        // Lines are bytes: one that is not UTF-8 is a refused line like any other.
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let decoded = match std::str::from_utf8(text) {
            Ok(_) => event::decode(text, now, max_future_skew),
            Err(e) => Err(Rejection::new(
                RejectReason::MalformedJson,
                format!("not UTF-8: {e}"),
            )),
        };
        match decoded {
            Ok(e) => out.events.push(e),
            Err(r) => out.rejected.push((number, r)),
        }
    }
    out.events.sort_by_key(|e| e.ts);
    Ok(out)
}

/// What a replay produced.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    pub applied: usize,
    pub rejected: Vec<Rejection>,
    pub alerts: Vec<WinbackAlert>,
    pub scores: usize,
}

/// Applies sorted `events` to `engine`, then keeps the clock running day by day to `until` so
/// users who went silent at the end of the data are scored too.
pub fn replay(engine: &mut Engine, events: &[Event], until: Option<Millis>) -> ReplayOutcome {
    let mut out = ReplayOutcome::default();
    let mut scored = Vec::new();
    for e in events {
        engine.advance(e.ts, &mut scored);
        match engine.apply(e) {
            Ok(Applied::Updated { scored: Some(s) }) => scored.push(s),
            Ok(_) => {}
            Err(r) => out.rejected.push(r),
        }
        out.applied += 1;
    }
    if let Some(end) = until {
        let mut t = engine.clock();
        while t < end {
            t = (t + DAY_MS).min(end);
            engine.advance(t, &mut scored);
        }
    }
    out.scores = scored.len();
    out.alerts = scored
        .into_iter()
        .filter_map(|s| s.alert.map(|a| *a))
        .collect();
    out
}
