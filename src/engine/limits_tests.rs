//! The engine's input limits: identifiers, amounts and instants it cannot hold exactly are
//! refused with a reason, and no clock movement can spin forever.

use std::sync::mpsc;
use std::time::Duration;

use super::tests::{ev, silence_model};
use super::*;

/// Runs `f` on its own thread and fails if it has not returned within `secs`: a hang is a test
/// failure, not a stuck suite.
pub(crate) fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not return within {secs} s"))
}

fn refusal(r: Result<Applied, Rejection>) -> Rejection {
    match r {
        Err(r) => r,
        Ok(a) => panic!("accepted: {a:?}"),
    }
}

#[test]
fn identifiers_longer_than_the_limit_are_refused_as_invalid_id() {
    let mut e = Engine::new(EngineConfig::default(), None);
    let long_user = ev(&"u".repeat(257), 1.0, EventKind::Login);
    let r = refusal(e.apply(&long_user));
    assert_eq!(r.reason.as_str(), "invalid_id", "{r}");
    assert!(
        r.detail.contains("user_id") && r.detail.contains("256"),
        "{r}"
    );
    let mut long_event = ev("u", 1.0, EventKind::Login);
    long_event.event_id = "e".repeat(257);
    let r = refusal(e.apply(&long_event));
    assert_eq!(r.reason.as_str(), "invalid_id", "{r}");
    assert!(r.detail.contains("event_id"), "{r}");
    assert_eq!(e.users(), 0, "nothing of a refused event is kept");
    // Exactly at the limit (bytes, not characters) is fine.
    let mut at_limit = ev(&"é".repeat(128), 1.0, EventKind::Login);
    at_limit.event_id = "e".repeat(256);
    assert!(e.apply(&at_limit).is_ok());
}

#[test]
fn events_outside_the_representable_time_range_are_refused_not_clamped() {
    let mut e = Engine::new(EngineConfig::default(), None);
    for ts in [
        -DAY_MS,
        -1,
        4_102_444_800_000, // 2100-01-01T00:00:00Z
        4_294_967_296_000, // 2106-02-07T06:28:16Z, past the 32-bit seconds
        i64::MAX / 4,
    ] {
        let mut x = ev("u", 0.0, EventKind::Login);
        x.ts = ts;
        let r = refusal(e.apply(&x));
        assert_eq!(r.reason.as_str(), "bad_timestamp", "{ts}: {r}");
        assert!(r.detail.contains("2100-01-01T00:00:00Z"), "{ts}: {r}");
    }
    assert_eq!(e.users(), 0);
}

#[test]
fn amounts_beyond_the_maximum_are_refused_by_the_engine_too() {
    let mut e = Engine::new(EngineConfig::default(), None);
    for amount in [1e30, 10_000_000.01, f64::INFINITY, -1.0] {
        let mut x = ev("u", 1.0, EventKind::Purchase);
        x.amount = amount;
        let r = refusal(e.apply(&x));
        assert_eq!(r.reason.as_str(), "invalid_amount", "{amount}: {r}");
    }
    assert_eq!(e.users(), 0);
}

/// An event past the 32-bit seconds once made every deadline saturate at the last second, and
/// advancing to it re-fired the same timer forever.
#[test]
fn advancing_to_the_end_of_time_returns() {
    within(60, || {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        let far = 4_294_967_296_000 + DAY_MS;
        let mut x = ev("u", 0.0, EventKind::Login);
        x.ts = far;
        let _ = e.apply(&x);
        e.advance(far, &mut Vec::new());
        e.advance(i64::MAX / 4, &mut Vec::new());
    });
}

#[test]
fn at_the_user_cap_new_users_are_refused_and_held_users_go_on() {
    let config = EngineConfig {
        max_users: 3,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, Some(silence_model()));
    for u in ["a", "b", "c"] {
        assert!(e.apply(&ev(u, 1.0, EventKind::Login)).is_ok());
    }
    let r = refusal(e.apply(&ev("d", 1.5, EventKind::Purchase)));
    assert_eq!(r.reason.as_str(), "user_cap", "{r}");
    assert!(
        r.detail.contains("3 users") && r.detail.contains("--max-users-per-partition"),
        "{r}"
    );
    assert_eq!(e.users(), 3);
    assert!(e.state("d").is_none(), "nothing of a refused user is kept");
    // The users held keep being updated, duplicates of them are still recognised.
    assert!(e.apply(&ev("a", 2.0, EventKind::Purchase)).is_ok());
    assert!(matches!(
        e.apply(&ev("a", 2.0, EventKind::Purchase)),
        Ok(Applied::Duplicate)
    ));
    // Room made by an erasure is used again.
    assert!(matches!(
        e.apply(&ev("b", 2.0, EventKind::Erase)),
        Ok(Applied::Erased)
    ));
    assert!(e.apply(&ev("d", 2.5, EventKind::Login)).is_ok());
    assert_eq!(e.users(), 3);
}

#[test]
fn the_duplicate_detector_stays_within_its_cap_and_counts_what_it_forgot() {
    let config = EngineConfig {
        max_dedupe_entries: 100,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, None);
    // One user, a thousand distinct events within one second.
    for i in 0..1_000 {
        let mut x = ev("flood", 1.0, EventKind::PageView);
        x.event_id = format!("e{i}");
        assert!(e.apply(&x).is_ok());
    }
    assert!(e.dedupe_entries() <= 100, "{}", e.dedupe_entries());
    assert_eq!(
        e.counters().dedupe_forgotten + e.dedupe_entries() as u64,
        1_000
    );
    assert_eq!(e.users(), 1);
}

/// A user whose only event is an opt-out has no activity yet (first seen and last active are
/// `NEVER`, the smallest instant): staging, scheduling and timers must not subtract that from
/// the clock, and the user stays (the opt-out is remembered). Found by fuzzing
/// (`changelog_record`): before the fix this panicked with "attempt to subtract with overflow"
/// wherever overflow checks are on (debug builds, `cargo test` without `--release`, the fuzz
/// targets) and wrapped silently in release builds.
#[test]
fn a_user_whose_only_event_is_an_opt_out_is_staged_scheduled_and_kept_without_overflow() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    assert!(matches!(
        e.apply(&ev("u", 6.0, EventKind::OptOut)),
        Ok(Applied::Updated { .. })
    ));
    assert!(e.state("u").is_some_and(|s| !s.has_activity()));
    assert!(e.apply(&ev("v", 6.0, EventKind::OptOut)).is_ok());
    assert!(e.apply(&ev("v", 6.5, EventKind::Refund)).is_ok());
    let mut out = Vec::new();
    // No timer for a user with nothing to score: before the fix, u's deadline (derived from
    // `NEVER`) was always past and fired every second of event time, a scoring each.
    assert_eq!(e.advance(7 * DAY_MS, &mut out), 0, "nothing fired");
    e.advance(500 * DAY_MS, &mut out);
    assert!(
        e.state("u").is_some_and(|s| s.opted_out()),
        "the opt-out is remembered"
    );
    assert!(e.describe("u").is_some());
    assert!(
        e.state("v").is_none(),
        "v was active, and is evicted after the retention"
    );
}
