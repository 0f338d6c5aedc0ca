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
use crate::event::{self, Event, Rejection};
use crate::{Millis, DAY_MS};

/// Errors reading an events file.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read events file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

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
}

/// Reads a JSONL file of events. Blank lines are skipped; every other line is an event or a
/// recorded rejection. `now` bounds future timestamps like the service's clock does.
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
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReplayError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match event::decode(line.as_bytes(), now, max_future_skew) {
            Ok(e) => out.events.push(e),
            Err(r) => out.rejected.push((i + 1, r)),
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
