//! Tests of [`super::lookup`]: a view agrees with the alert the next scoring publishes and
//! changes nothing.

use super::tests::{ev, run_days, silence_model};
use super::*;

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), Some(silence_model()))
}

#[test]
fn a_view_predicts_the_alert_the_next_scoring_raises() {
    let mut e = engine();
    e.apply(&ev("quiet", 100.0, EventKind::Purchase)).unwrap();
    run_days(&mut e, 100, 120);
    let view = e.describe("quiet").expect("tracked");
    assert_eq!(view.as_of, crate::time::rfc3339(120 * DAY_MS));
    assert_eq!(view.decision, "below_threshold");
    // 21 silent days: over the 20.5-day threshold; the view says an alert would go out.
    e.advance(121 * DAY_MS, &mut Vec::new());
    let before = e.state("quiet").cloned();
    let view = e.describe("quiet").expect("tracked");
    assert_eq!(e.state("quiet").cloned(), before, "a view changes no state");
    assert_eq!(view.decision, "alert");
    assert!(view.score.unwrap() >= 0.5);
    let alert = run_days(&mut e, 121, 125)
        .into_iter()
        .find_map(|s| s.alert)
        .expect("the timer raises the alert");
    let view_then = e.describe("quiet").expect("tracked");
    assert_eq!(view_then.decision, "already_alerted");
    let open = view_then.open_alert.expect("the alert is watched");
    assert_eq!(open.alert_id, alert.alert_id);
    assert_eq!(view.risk_band, Some(alert.risk_band));
    assert_eq!(view.value_tier, alert.value_tier);
    assert_eq!(
        Some(&alert.recommended_action),
        view.recommended_action.as_ref()
    );
    assert_eq!(view_then.caps.alerts_last_30d, 1);
    assert_eq!(
        view_then.last_purchase_at.as_deref(),
        Some(&*alert.last_activity_at)
    );
}

#[test]
fn an_unknown_user_has_no_view_and_none_is_created() {
    let mut e = engine();
    e.apply(&ev("someone", 100.0, EventKind::Login)).unwrap();
    assert!(e.describe("nobody").is_none());
    assert!(e.export("nobody").is_none());
    assert_eq!(e.users(), 1);
}

#[test]
fn without_a_model_the_view_has_no_score() {
    let mut e = Engine::new(EngineConfig::default(), None);
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    let view = e.describe("u").expect("tracked");
    assert_eq!((view.score, view.decision), (None, "no_model"));
    assert!(view.recommended_action.is_none());
}

#[test]
fn an_export_lists_every_stored_day_and_sum() {
    let mut e = engine();
    e.apply(&ev("buyer", 100.0, EventKind::Purchase)).unwrap();
    e.apply(&ev("buyer", 100.5, EventKind::PageView)).unwrap();
    e.apply(&ev("buyer", 103.0, EventKind::Purchase)).unwrap();
    let x = e.export("buyer").expect("tracked");
    let days: Vec<_> = x
        .days
        .iter()
        .map(|d| (d.date.as_str(), d.events, d.spend))
        .collect();
    assert_eq!(days, [("1970-04-11", 2, 20.0), ("1970-04-14", 1, 20.0)]);
    assert_eq!((x.purchases_total, x.spend_total), (2, 40.0));
    assert_eq!(
        x.first_purchase_at.as_deref(),
        Some("1970-04-11T00:00:00.000Z")
    );
    assert!(!x.opted_out);
    let json = serde_json::to_string(&x).unwrap();
    assert!(!json.contains("props"), "{json}");
}

#[test]
fn an_erased_user_has_no_view() {
    let mut e = engine();
    e.apply(&ev("gone", 100.0, EventKind::Login)).unwrap();
    assert!(e.erase("gone"));
    assert!(e.describe("gone").is_none() && e.export("gone").is_none());
}
