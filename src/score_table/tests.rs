//! Tests of [`super`]: the table is the engine's views at the instant, sorted, without later
//! events; CSV cells survive any user id.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::engine::EngineConfig;
use crate::event::EventKind;
use crate::model::Model;
use crate::replay::sort_events;
use crate::DAY_MS;

/// 2026-01-01T00:00:00Z.
const START: Millis = 20_454 * DAY_MS;

fn model() -> Arc<Model> {
    Arc::new(
        Model::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/churn-lr.json"
        )))
        .unwrap(),
    )
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), Some(model()))
}

fn event(user: &str, day: i64, kind: EventKind) -> Event {
    Event {
        event_id: format!("{user}-{day}-{}", kind as u8),
        user_id: user.into(),
        kind,
        ts: START + day * DAY_MS,
        amount: if kind == EventKind::Purchase {
            35.0
        } else {
            0.0
        },
    }
}

/// `busy` logs in and buys every few days for 120 days; `gone` does the same for the first 30
/// days only; `late` appears on day 150.
fn history() -> Vec<Event> {
    let mut events = Vec::new();
    for day in (0..120).step_by(2) {
        events.push(event("busy", day, EventKind::Login));
        if day % 10 == 0 {
            events.push(event("busy", day, EventKind::Purchase));
        }
        if day < 30 {
            events.push(event("gone", day, EventKind::Login));
            events.push(event("gone", day, EventKind::Purchase));
        }
    }
    events.push(event("late", 150, EventKind::Login));
    sort_events(&mut events);
    events
}

#[test]
fn the_table_is_every_users_view_at_the_instant_without_later_events() {
    let events = history();
    let at = START + 120 * DAY_MS;
    let mut e = engine();
    let folded = fold_to(&mut e, &events, at).unwrap();
    assert_eq!(folded.at, at);
    assert_eq!(
        folded.after_at, 1,
        "late's day-150 login is after the instant"
    );
    assert_eq!(folded.applied, events.len() - 1);
    let table: Vec<UserView> = views(&e).collect();
    let users: Vec<&str> = table.iter().map(|v| &*v.user_id).collect();
    assert_eq!(users, ["busy", "gone"], "sorted, and late is not known yet");
    for view in &table {
        assert_eq!(view.as_of, rfc3339(at));
    }
    let score = |name: &str| table.iter().find(|v| v.user_id == name).unwrap().score;
    let threshold = table[0].threshold.unwrap();
    assert!(score("gone").unwrap() >= threshold, "{table:?}");
    assert!(score("busy").unwrap() < threshold, "{table:?}");

    // The same engine driven by hand to the instant gives the same views.
    let mut by_hand = engine();
    for ev in events.iter().filter(|ev| ev.ts <= at) {
        by_hand.advance(ev.ts, &mut Vec::new());
        by_hand.apply(ev).unwrap();
    }
    by_hand.advance(at, &mut Vec::new());
    for view in &table {
        assert_eq!(Some(view), by_hand.describe(&view.user_id).as_ref());
    }
}

#[test]
fn timers_fire_on_the_way_and_the_counts_say_so() {
    let events = history();
    let mut e = engine();
    let folded = fold_to(&mut e, &events, START + 200 * DAY_MS).unwrap();
    assert_eq!(folded.after_at, 0);
    assert!(
        folded.alerts >= 1,
        "gone's silence raised an alert: {folded:?}"
    );
    let gone = e.describe("gone").unwrap();
    assert_eq!(gone.decision, "already_alerted");
    assert!(!gone.caps.alert_days.is_empty(), "{gone:?}");
}

#[test]
fn an_instant_before_the_history_or_outside_the_range_is_refused() {
    let events = history();
    let err = fold_to(&mut engine(), &events, START - DAY_MS).unwrap_err();
    assert!(
        err.to_string()
            .contains("no event at or before 2025-12-31T00:00:00.000Z: the history starts at 2026-01-01T00:00:00.000Z"),
        "{err}"
    );
    let err = fold_to(&mut engine(), &events, crate::event::END_TS).unwrap_err();
    assert!(
        err.to_string().contains("representable time range"),
        "{err}"
    );
    // No history at all is an empty table, not an error: there is nobody to score.
    let mut e = engine();
    assert_eq!(fold_to(&mut e, &[], START).unwrap().applied, 0);
    assert_eq!(views(&e).count(), 0);
}

#[test]
fn csv_rows_flatten_the_view_and_jsonl_rows_are_the_view() {
    let mut e = engine();
    fold_to(&mut e, &history(), START + 120 * DAY_MS).unwrap();
    let mut csv_bytes = Vec::new();
    let written = write_table(&e, TableFormat::Csv, &mut csv_bytes, || {}).unwrap();
    assert_eq!(
        written,
        Written {
            users: 2,
            at_or_above_threshold: 1
        }
    );
    let mut reader = csv::Reader::from_reader(&csv_bytes[..]);
    assert_eq!(
        reader.headers().unwrap(),
        &csv::StringRecord::from(CSV_COLUMNS.to_vec())
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let gone = e.describe("gone").unwrap();
    let row = &rows[1];
    assert_eq!(&row[0], "gone");
    assert_eq!(row[2].parse::<f64>().unwrap(), gone.score.unwrap());
    assert_eq!(&row[4], gone.risk_band.unwrap().as_str());
    assert_eq!(&row[9], gone.decision);
    let reasons: Vec<(String, f64)> = row[11]
        .split(';')
        .map(|r| {
            let (f, c) = r.split_once(':').unwrap();
            (f.to_string(), c.parse().unwrap())
        })
        .collect();
    let expected: Vec<(String, f64)> = gone
        .reasons
        .iter()
        .map(|r| (r.feature.clone(), r.contribution))
        .collect();
    assert_eq!(reasons, expected);
    assert!(!reasons.is_empty());

    let mut jsonl = Vec::new();
    write_table(&e, TableFormat::Jsonl, &mut jsonl, || {}).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], serde_json::to_value(&gone).unwrap());
}

#[test]
fn a_view_without_a_model_has_empty_score_cells() {
    let mut e = Engine::new(EngineConfig::default(), None);
    fold_to(&mut e, &history(), START + 120 * DAY_MS).unwrap();
    let row = csv_row(&e.describe("busy").unwrap());
    assert_eq!(&row[2], "");
    assert_eq!(&row[9], "no_model");
    assert_eq!(&row[15], "");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// User ids come from input files: any id the engine accepts (commas, quotes, line breaks,
    /// any Unicode) reads back from the CSV unchanged, one row per user, sorted.
    #[test]
    fn any_user_id_reads_back_from_the_csv(
        ids in proptest::collection::btree_set("\\PC{1,12}|[a-z,\"\\r\\n ;:]{1,8}", 1..20),
    ) {
        let mut events: Vec<Event> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Event { event_id: format!("e{i}"), ..event(id, i as i64, EventKind::Login) })
            .collect();
        sort_events(&mut events);
        let mut e = engine();
        let folded = fold_to(&mut e, &events, START + 40 * DAY_MS).unwrap();
        let mut bytes = Vec::new();
        write_table(&e, TableFormat::Csv, &mut bytes, || {}).unwrap();
        let read: Vec<String> = csv::Reader::from_reader(&bytes[..])
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        let tracked: Vec<String> = ids
            .iter()
            .filter(|id| e.describe(id).is_some())
            .cloned()
            .collect();
        proptest::prop_assert_eq!(folded.rejected + tracked.len(), ids.len());
        proptest::prop_assert_eq!(read, tracked);
    }
}
