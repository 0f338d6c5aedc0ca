//! State changelog records, as a restore reads them from the compacted topic: arbitrary bytes
//! are restored or refused with a reason, never a panic, and a restored user can be used (new
//! events, timers, lookups, written again). Inputs whose first byte is odd are instead an event
//! script: the records an engine writes for it must restore to exactly the state written.
#![no_main]

use churnguard::engine::changelog::{decode_record, Change};
use churnguard::engine::Engine;
use churnguard::event::{Event, EventKind};
use churnguard::DAY_MS;
use churnguard_fuzz::{check_scored, drive, engine, script, shipped_model};
use libfuzzer_sys::fuzz_target;

/// Every record the engine has to write now, as `(user, record)`.
fn records(e: &mut Engine) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    e.take_changes(|c| {
        if let Change::Upsert { user_id, record } = c {
            out.push((user_id.to_string(), record.to_vec()));
        }
    });
    out
}

/// A record the engine wrote decodes, and restores in a fresh engine to the state it carries.
fn restores_exactly(user: &str, record: &[u8]) {
    let decoded = decode_record(record)
        .unwrap_or_else(|e| panic!("a record the engine wrote does not decode: {e}"));
    let mut fresh = engine(Some(shipped_model()));
    fresh
        .restore(user, record)
        .unwrap_or_else(|e| panic!("a record the engine wrote does not restore: {e}"));
    assert_eq!(fresh.state(user), Some(&decoded.state));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut e = engine(Some(shipped_model()));
    e.track_changes(true);
    if mode & 1 == 1 {
        for s in drive(&mut e, &script(rest), 120) {
            check_scored(&s);
        }
        for (user, record) in records(&mut e) {
            restores_exactly(&user, &record);
        }
        return;
    }
    let _ = decode_record(rest);
    if e.restore("u", rest).is_err() {
        return;
    }
    let _ = e.describe("u");
    let _ = e.export("u");
    // A restored user goes on: a new event and 400 days of silence (timers, eviction).
    let ts = e
        .state("u")
        .map_or(0, |s| s.last_activity_ms())
        .clamp(0, churnguard::event::END_TS - 2 * DAY_MS)
        + DAY_MS;
    let next = Event {
        event_id: "next".into(),
        user_id: "u".into(),
        kind: EventKind::Purchase,
        ts,
        amount: 10.0,
    };
    for s in drive(&mut e, &[next], 400) {
        check_scored(&s);
    }
    for (user, record) in records(&mut e) {
        restores_exactly(&user, &record);
    }
});
