//! Events driven through the engine in event-time order (the files they come from are read by
//! [`crate::history`]).
//!
//! Backtests, training and the parity test use this path; it calls the same
//! [`Engine::advance`] / [`Engine::apply`] sequence as the Kafka pipeline, so the features and
//! alerts it produces are the ones the service would.

use crate::alert::WinbackAlert;
use crate::engine::{Applied, Engine};
use crate::event::{Event, Rejection};
use crate::Millis;

/// Sorts events by time, and events of the same time by their content (user, event id, type,
/// amount): the order the engine sees, and so what it decides, is a function of the set of
/// events, not of the order of lines in a file. Day-resolution sources (CDNOW) give many events
/// one timestamp, and which of a user's events of a day comes first decides that day's scoring.
///
/// The order compares every field, so events it calls equal are identical and an unstable sort
/// gives the same sequence as a stable one, without the stable sort's buffer of half the events.
pub fn sort_events(events: &mut [Event]) {
    events.sort_unstable_by(|a, b| {
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
/// by the engine (see [`Engine::advance`]); check it with [`crate::event::check_time`] first.
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
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::engine::EngineConfig;
    use crate::event::{self, EventKind};
    use crate::mapping::EventDecoder;
    use crate::model::Model;
    use crate::DAY_MS;

    fn file_of(lines: &[String]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .unwrap();
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

    /// The events of a JSONL file, sorted.
    fn load_events(path: &Path) -> Vec<Event> {
        let decoder = EventDecoder::native();
        let options = crate::history::ReadOptions::offline(&decoder);
        crate::history::load(&[path.to_path_buf()], &options)
            .unwrap()
            .events
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
        let events = load_events(path);
        let mut engine = Engine::new(EngineConfig::default(), Some(model.clone()));
        replay(&mut engine, &events, Some(until))
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
        let l1 = load_events(f1.path());
        let l2 = load_events(f2.path());
        assert_eq!(l1, l2);
    }
}
