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
use crate::Millis;

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
    /// Valid events in [`sort_events`] order.
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
    sort_events(&mut out.events);
    Ok(out)
}

/// Sorts events by time, and events of the same time by their content (user, event id, type,
/// amount): the order the engine sees, and so what it decides, is a function of the set of
/// events, not of the order of lines in a file. Day-resolution sources (CDNOW) give many events
/// one timestamp, and which of a user's events of a day comes first decides that day's scoring.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.user_id.cmp(&b.user_id))
            .then_with(|| a.event_id.cmp(&b.event_id))
            .then_with(|| (a.kind as u8).cmp(&(b.kind as u8)))
            .then_with(|| a.amount.total_cmp(&b.amount))
    });
}

/// What a replay produced.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    pub applied: usize,
    pub rejected: Vec<Rejection>,
    pub alerts: Vec<WinbackAlert>,
    pub scores: usize,
}

/// Applies sorted `events` to `engine`, then runs the clock on to `until` so users who went
/// silent at the end of the data are scored too (timers fire at their own deadlines, so one
/// jump decides what daily ticks would). An `until` outside the representable range is refused
/// by the engine (see [`Engine::advance`]); check it with [`event::check_time`] first.
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
        engine.advance(end, &mut scored);
    }
    out.scores = scored.len();
    out.alerts = scored
        .into_iter()
        .filter_map(|s| s.alert.map(|a| *a))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;
    use crate::engine::EngineConfig;
    use crate::event::EventKind;
    use crate::model::Model;
    use crate::DAY_MS;

    fn file_of(lines: &[String]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f.flush().unwrap();
        f
    }

    fn line(user: &str, id: &str, kind: &str, ts: &str, amount: f64) -> String {
        format!(
            r#"{{"event_id":"{id}","user_id":"{user}","type":"{kind}","ts":"{ts}","amount":{amount}}}"#
        )
    }

    /// Runs `f` on its own thread and fails if it has not returned within `secs`.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("did not return within {secs} s"))
    }

    #[test]
    fn events_before_1970_or_after_the_range_are_refused_not_clamped() {
        let f = file_of(&[
            line("u", "a", "login", "1969-07-20T20:17:40Z", 0.0),
            line("u", "b", "login", "0001-01-01T00:00:00Z", 0.0),
            line("u", "c", "login", "2106-02-07T06:28:16Z", 0.0),
            line("u", "d", "login", "2023-11-14T22:13:20Z", 0.0),
        ]);
        let loaded = load_events(f.path(), i64::MAX / 4, 0).unwrap();
        assert_eq!(loaded.events.len(), 1, "{:?}", loaded.events);
        let lines: Vec<usize> = loaded.rejected.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [1, 2, 3]);
        for (_, r) in &loaded.rejected {
            assert_eq!(r.reason.as_str(), "bad_timestamp", "{r}");
            assert!(r.detail.contains("1970-01-01T00:00:00Z"), "{r}");
        }
    }

    #[test]
    fn running_the_clock_on_over_no_events_returns() {
        let alerts = within(60, || {
            let mut engine = Engine::new(EngineConfig::default(), None);
            let until = crate::time::parse_instant("2026-07-30T00:00:00Z").unwrap();
            replay(&mut engine, &[], Some(until)).alerts.len()
        });
        assert_eq!(alerts, 0);
    }

    fn alert_ids(
        path: &Path,
        model: &Arc<Model>,
        until: Millis,
    ) -> std::collections::BTreeSet<String> {
        let loaded = load_events(path, i64::MAX / 4, 0).unwrap();
        let mut engine = Engine::new(EngineConfig::default(), Some(model.clone()));
        replay(&mut engine, &loaded.events, Some(until))
            .alerts
            .into_iter()
            .map(|a| a.alert_id.to_string())
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The same events in any file order give the same alerts, also when many share a
        /// timestamp (day-resolution sources such as CDNOW).
        #[test]
        fn the_alerts_do_not_depend_on_file_order(
            events in proptest::collection::vec((0u8..4, 0u32..90, 0usize..6, 0u32..30_000), 1..120),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let model = Arc::new(
                Model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json"))).unwrap(),
            );
            let kinds = ["login", "purchase", "page_view", "search", "cart_add", "complaint"];
            let lines: Vec<String> = events
                .iter()
                .enumerate()
                .map(|(i, (user, day, kind, cents))| {
                    let ts = chrono::DateTime::from_timestamp_millis(1_600_000_000_000 + i64::from(*day) * DAY_MS)
                        .unwrap()
                        .to_rfc3339();
                    line(&format!("u{user}"), &format!("e{i}"), kinds[*kind], &ts, f64::from(*cents) / 100.0)
                })
                .collect();
            let mut shuffled = lines.clone();
            // Fisher-Yates with a small LCG: any permutation, reproducible from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut reversed = lines.clone();
            reversed.reverse();
            let until = 1_600_000_000_000 + 200 * DAY_MS;
            let a = alert_ids(file_of(&lines).path(), &model, until);
            let b = alert_ids(file_of(&shuffled).path(), &model, until);
            let c = alert_ids(file_of(&reversed).path(), &model, until);
            proptest::prop_assert_eq!(&a, &b);
            proptest::prop_assert_eq!(&a, &c);
        }
    }

    #[test]
    fn equal_timestamps_are_ordered_by_content_not_by_arrival() {
        let ts = 1_600_000_000_000;
        let ev = |user: &str, id: &str, kind: EventKind| Event {
            event_id: id.into(),
            user_id: user.into(),
            kind,
            ts,
            amount: 0.0,
        };
        let mut a = [
            ev("b", "1", EventKind::Login),
            ev("a", "2", EventKind::Purchase),
            ev("a", "1", EventKind::Login),
        ];
        let f1 = file_of(&a.iter().map(event::encode).collect::<Vec<_>>());
        a.reverse();
        let f2 = file_of(&a.iter().map(event::encode).collect::<Vec<_>>());
        let l1 = load_events(f1.path(), i64::MAX / 4, 0).unwrap().events;
        let l2 = load_events(f2.path(), i64::MAX / 4, 0).unwrap().events;
        assert_eq!(l1, l2);
    }
}
