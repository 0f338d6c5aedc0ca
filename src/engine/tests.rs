//! Tests of the parent module, kept in their own file so the module itself stays short.

use super::*;
use crate::alert::Outcome;
use crate::model::{Format, Kind, Model, ModelArtifact, ModelFeature, TrainingRecord, Transform};
use crate::policy::ExperimentArm;

/// A model whose score is >= 0.5 exactly when the user has been silent for 20.5 days or more.
pub(super) fn silence_model() -> Arc<Model> {
    let artifact = ModelArtifact {
        format: Format::V1,
        version: "sha256:test".into(),
        kind: Kind::LogisticRegression,
        features: vec![ModelFeature {
            name: "days_since_last_activity".into(),
            transform: Transform::Identity,
            mean: 20.5,
            std: 1.0,
            coef: 1.0,
        }],
        intercept: 0.0,
        threshold: 0.5,
        training: TrainingRecord::default(),
        forest: None,
        derived: None,
        gbm: None,
    };
    Arc::new(Model::new(artifact, "test", crate::features::Windows::default()).unwrap())
}

pub(super) fn ev(user: &str, day: f64, kind: EventKind) -> Event {
    Event {
        event_id: format!("{user}-{day}"),
        user_id: user.into(),
        kind,
        ts: (day * DAY_MS as f64) as Millis,
        amount: if kind == EventKind::Purchase {
            20.0
        } else {
            0.0
        },
    }
}

pub(super) fn run_days(engine: &mut Engine, from: i64, to: i64) -> Vec<Scored> {
    let mut out = Vec::new();
    for d in from..=to {
        engine.advance(d * DAY_MS, &mut out);
    }
    out
}

#[test]
fn a_silent_user_is_alerted_once_by_timer() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("quiet", 100.0, EventKind::Login)).unwrap();
    let alerts: Vec<_> = run_days(&mut e, 100, 200)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].trigger, Trigger::Timer);
    // Threshold at 20.5 silent days; re-scoring steps are at most 15% of the silence apart.
    let ts = chrono::DateTime::parse_from_rfc3339(&alerts[0].ts)
        .unwrap()
        .timestamp_millis();
    let silent_days = (ts - 100 * DAY_MS) as f64 / DAY_MS as f64;
    assert!(
        (20.5..=20.5 * 1.15 + 1e-9).contains(&silent_days),
        "alerted after {silent_days} days"
    );
}

#[test]
fn a_user_who_returns_before_the_deadline_is_not_alerted() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    let mut alerts = 0;
    for d in (100..200).step_by(10) {
        e.apply(&ev("regular", d as f64, EventKind::Login)).unwrap();
        alerts += run_days(&mut e, d, d + 9)
            .iter()
            .filter(|s| s.alert.is_some())
            .count();
    }
    assert_eq!(alerts, 0);
}

#[test]
fn a_return_opens_a_new_episode_with_a_new_alert_id() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    let first: Vec<_> = run_days(&mut e, 100, 130)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    e.apply(&ev("u", 131.0, EventKind::Purchase)).unwrap();
    let second: Vec<_> = run_days(&mut e, 131, 170)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].alert_id, second[0].alert_id);
}

#[test]
fn a_catch_up_jump_gives_the_same_alerts_as_daily_ticks() {
    let mut daily = Engine::new(EngineConfig::default(), Some(silence_model()));
    let mut jump = Engine::new(EngineConfig::default(), Some(silence_model()));
    for e in [&mut daily, &mut jump] {
        e.apply(&ev("a", 10.0, EventKind::Login)).unwrap();
        e.apply(&ev("b", 15.5, EventKind::Purchase)).unwrap();
    }
    let a: Vec<_> = run_days(&mut daily, 10, 100)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    let mut out = Vec::new();
    jump.advance(100 * DAY_MS, &mut out);
    let b: Vec<_> = out.into_iter().filter_map(|s| s.alert).collect();
    assert_eq!(a, b);
}

#[test]
fn opted_out_users_are_scored_but_never_alerted() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    e.apply(&ev("u", 100.5, EventKind::OptOut)).unwrap();
    let out = run_days(&mut e, 100, 150);
    assert!(out.iter().any(|s| s.decision == AlertDecision::OptedOut));
    assert!(out.iter().all(|s| s.alert.is_none()));
}

#[test]
fn too_late_events_are_refused_and_erase_forgets() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    e.advance(100 * DAY_MS, &mut Vec::new());
    let late = e.apply(&ev("u", 90.0, EventKind::Login)).unwrap_err();
    assert_eq!(late.reason, RejectReason::TooLate);
    e.apply(&ev("u", 99.0, EventKind::Login)).unwrap(); // within 3 days: accepted
    assert!(matches!(
        e.apply(&ev("u", 100.0, EventKind::Erase)).unwrap(),
        Applied::Erased
    ));
    assert_eq!(e.users(), 0);
    assert!(e.state("u").is_none());
    assert_eq!(e.counters().erased, 1);
}

fn stage_of(e: &Engine, user: &str) -> Stage {
    e.state(user).unwrap().stage()
}

/// Every lifecycle transition, driven by a synthetic event-time sequence; the engine runs
/// without a model, so only the silence deadlines move it.
#[test]
fn every_lifecycle_transition_happens_at_its_threshold() {
    use Stage::*;
    let mut e = Engine::new(EngineConfig::default(), None);
    // Daily logins for 20 days: new until 14 days of tenure, then active.
    for d in 0..20i32 {
        e.apply(&ev("u", f64::from(d) + 0.5, EventKind::Login))
            .unwrap();
        e.advance(i64::from(d) * DAY_MS + DAY_MS / 2, &mut Vec::new());
        let expect = if d < 14 { New } else { Active };
        assert_eq!(stage_of(&e, "u"), expect, "day {d}");
    }
    let last = 19.5;
    let check = |e: &mut Engine, silent_days: f64, expect: Stage| {
        e.advance(
            ((last + silent_days) * DAY_MS as f64) as Millis,
            &mut Vec::new(),
        );
        assert_eq!(stage_of(e, "u"), expect, "after {silent_days} silent days");
    };
    check(&mut e, 13.9, Active);
    check(&mut e, 14.0, AtRisk);
    check(&mut e, 29.9, AtRisk);
    check(&mut e, 30.0, Grace);
    check(&mut e, 44.0, Dormant);
    check(&mut e, 90.0, Churned);
    // A return brings them back to active.
    e.apply(&ev("u", last + 100.0, EventKind::Purchase))
        .unwrap();
    assert_eq!(stage_of(&e, "u"), Active);
    let t = e.stage_stats().transitions;
    for (from, to) in [
        (New, Active),
        (Active, AtRisk),
        (AtRisk, Grace),
        (Grace, Dormant),
        (Dormant, Churned),
        (Churned, Active),
    ] {
        assert_eq!(t.get(from, to), 1, "{from:?} -> {to:?}");
    }
    assert_eq!(e.stage_stats().users.get(Active), 1);
    assert_eq!(e.stage_stats().users.total(), 1);
}

#[test]
fn a_return_during_grace_or_at_risk_goes_back_to_active() {
    for silent in [20.0, 35.0, 50.0] {
        let mut e = Engine::new(EngineConfig::default(), None);
        for d in 0..30 {
            e.apply(&ev("u", f64::from(d), EventKind::Login)).unwrap();
        }
        e.advance(((29.0 + silent) * DAY_MS as f64) as Millis, &mut Vec::new());
        assert_ne!(stage_of(&e, "u"), Stage::Active);
        e.apply(&ev("u", 29.0 + silent + 0.1, EventKind::Login))
            .unwrap();
        assert_eq!(
            stage_of(&e, "u"),
            Stage::Active,
            "return after {silent} days"
        );
    }
}

#[test]
fn a_sharp_decline_puts_an_engaging_user_at_risk() {
    let mut e = Engine::new(EngineConfig::default(), None);
    // 60 days of 3 logins a day, then one login a week.
    for d in 0..60 {
        for h in 0..3 {
            e.apply(&ev(
                "u",
                f64::from(d) + f64::from(h) * 0.1,
                EventKind::Login,
            ))
            .unwrap();
        }
    }
    assert_eq!(stage_of(&e, "u"), Stage::Active);
    for d in (60..95).step_by(7) {
        e.apply(&ev("u", f64::from(d), EventKind::Login)).unwrap();
    }
    assert_eq!(stage_of(&e, "u"), Stage::AtRisk);
}

#[test]
fn duplicates_change_nothing_and_are_counted() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    let p = ev("u", 10.0, EventKind::Purchase);
    e.apply(&p).unwrap();
    let before = e.state("u").unwrap().clone();
    assert!(matches!(e.apply(&p).unwrap(), Applied::Duplicate));
    assert_eq!(e.state("u").unwrap(), &before);
    assert_eq!(e.counters().duplicates, 1);
}

fn with_windows(text: &str) -> EngineConfig {
    EngineConfig {
        windows: text.parse().unwrap(),
        ..EngineConfig::default()
    }
}

#[test]
fn configured_windows_name_and_count_the_features() {
    let mut e = Engine::new(with_windows("7,30,90,180"), None);
    for day in [10.0, 100.0, 150.0, 165.0] {
        e.apply(&ev("u", day, EventKind::Purchase)).unwrap();
    }
    let f = e.features("u", 170 * DAY_MS).unwrap();
    assert_eq!(f.layout().windows().to_string(), "7,30,90,180");
    // Days 0..=170 hold all four; days 81..=170 three; days 141..=170 two; 164..=170 one.
    assert_eq!(f.get("purchases_180d"), Some(4.0));
    assert_eq!(f.get("purchases_90d"), Some(3.0));
    assert_eq!(f.get("purchases_30d"), Some(2.0));
    assert_eq!(f.get("purchases_7d"), Some(1.0));
    assert_eq!(f.get("spend_180d"), Some(80.0));
    assert_eq!(f.get("active_days_180d"), Some(4.0));
    // Rare counters moved to the longest window; the trend kept its 30/90 definition.
    assert_eq!(f.get("refunds_90d"), None);
    assert_eq!(f.get("refunds_180d"), Some(0.0));
    let fixed = Engine::new(EngineConfig::default(), None);
    let mut fixed = fixed;
    for day in [10.0, 100.0, 150.0, 165.0] {
        fixed.apply(&ev("u", day, EventKind::Purchase)).unwrap();
    }
    let d = fixed.features("u", 170 * DAY_MS).unwrap();
    for name in [
        "activity_trend",
        "spend_trend",
        "purchases_90d",
        "tenure_days",
    ] {
        assert_eq!(f.get(name), d.get(name), "{name}");
    }
    // The default engine pruned day 10; the 180-day one keeps it until day 190.
    assert_eq!(fixed.state("u").unwrap().windows().len(), 3);
    assert_eq!(e.state("u").unwrap().windows().len(), 4);
}

#[test]
fn short_windows_still_keep_the_trend_quarter() {
    let mut e = Engine::new(with_windows("7"), None);
    // Day 2 is older than the 90 days kept at day 95.
    for day in [2.0, 60.0, 95.0] {
        e.apply(&ev("u", day, EventKind::Login)).unwrap();
    }
    let f = e.features("u", 95 * DAY_MS).unwrap();
    assert_eq!(f.get("events_7d"), Some(1.0));
    assert_eq!(f.get("events_30d"), None);
    // 1 event in the last 30 days against 1 in the 60 before: (1 + 1) / (1/2 + 1).
    assert_eq!(f.get("activity_trend"), Some(2.0 / 1.5));
    assert_eq!(e.state("u").unwrap().windows().len(), 2);
}

#[test]
#[should_panic(expected = "was loaded for windows 7,30,90, the engine runs windows 7,30,90,180")]
fn an_engine_refuses_a_model_loaded_for_other_windows() {
    Engine::new(with_windows("7,30,90,180"), Some(silence_model()));
}

#[test]
fn late_events_within_lateness_are_folded_in_and_counted() {
    let mut e = Engine::new(EngineConfig::default(), None);
    e.apply(&ev("u", 10.0, EventKind::Login)).unwrap();
    e.advance(10 * DAY_MS, &mut Vec::new());
    e.apply(&ev("u", 8.0, EventKind::Purchase)).unwrap();
    assert_eq!(e.counters().late_accepted, 1);
    assert_eq!(
        e.features("u", 10 * DAY_MS).unwrap().get("purchases_7d"),
        Some(1.0)
    );
}

#[test]
fn timers_follow_the_purchase_cycle() {
    // A weekly buyer who stops is re-scored when 1.5 cycles overdue even with daily
    // re-scoring disabled (huge interval): the cycle deadline alone must fire.
    let cfg = EngineConfig {
        rescore_interval: 365 * DAY_MS,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, Some(silence_model()));
    for w in 0..6 {
        e.apply(&ev("u", f64::from(w) * 7.0, EventKind::Purchase))
            .unwrap();
    }
    let mut out = Vec::new();
    e.advance(46 * DAY_MS, &mut out); // 35 + 1.5 × 7 = 45.5
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].trigger, Trigger::Timer);
}

/// The default policy with every cap replaced by `cooldown` days and `max` per 30 days.
fn capped(cooldown: u16, max: u8) -> EngineConfig {
    let text: String = crate::policy::DEFAULT_POLICY_TOML
        .lines()
        .map(|l| {
            if l.starts_with("cooldown_days") {
                format!("cooldown_days = {cooldown}")
            } else if l.starts_with("max_per_30d") {
                format!("max_per_30d = {max}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    EngineConfig {
        policy: Arc::new(Policy::parse("test", &text).unwrap()),
        ..EngineConfig::default()
    }
}

#[test]
fn a_cooldown_holds_back_the_next_episode_alert_until_it_ends() {
    let mut e = Engine::new(capped(30, 2), Some(silence_model()));
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    let mut all = run_days(&mut e, 100, 125);
    // A page view opens a new episode (not a return: no login, no purchase).
    e.apply(&ev("u", 125.5, EventKind::PageView)).unwrap();
    all.extend(run_days(&mut e, 126, 200));
    let alerts: Vec<_> = all.iter().filter_map(|s| s.alert.as_ref()).collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let day = |a: &WinbackAlert| {
        chrono::DateTime::parse_from_rfc3339(&a.ts)
            .unwrap()
            .timestamp_millis() as f64
            / DAY_MS as f64
    };
    assert!(
        day(alerts[1]) - day(alerts[0]) >= 30.0,
        "cooldown respected"
    );
    assert!(all
        .iter()
        .any(|s| s.decision == AlertDecision::Suppressed(crate::policy::SuppressReason::Cooldown)));
}

#[test]
fn a_burst_of_risk_gives_one_alert() {
    // Ten users' worth of daily risk on one user: new episodes every day, each crossing
    // the threshold; the 7-day cooldown and 2-per-30-days cap leave at most one a week.
    let mut e = Engine::new(capped(7, 2), Some(silence_model()));
    e.apply(&ev("u", 0.0, EventKind::Login)).unwrap();
    let mut alerts = 0;
    for d in 21..31 {
        alerts += run_days(&mut e, d, d)
            .iter()
            .filter(|s| s.alert.is_some())
            .count();
    }
    assert_eq!(alerts, 1);
}

#[test]
fn outcomes_follow_each_alert_by_arm() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("back", 100.0, EventKind::Login)).unwrap();
    e.apply(&ev("gone", 100.0, EventKind::Login)).unwrap();
    let alerts: Vec<_> = run_days(&mut e, 100, 125)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    assert_eq!(alerts.len(), 2);
    assert_eq!(e.outcomes_pending(), 2);
    e.apply(&ev("back", 126.0, EventKind::Purchase)).unwrap();
    run_days(&mut e, 126, 160);
    let mut out = Vec::new();
    e.drain_outcomes(&mut out);
    out.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        (out[0].user_id.as_str(), out[0].outcome),
        ("back", Outcome::WonBack)
    );
    assert_eq!(out[0].returned_by, Some(ReturnKind::Purchase));
    assert_eq!(
        (out[1].user_id.as_str(), out[1].outcome),
        ("gone", Outcome::NotReturned)
    );
    for o in &out {
        assert!(alerts
            .iter()
            .any(|a| a.alert_id == o.alert_id && a.experiment_arm == o.experiment_arm));
    }
    // "back" went quiet again after returning and was alerted anew (window still open).
    assert_eq!(e.outcomes_pending(), 1);
}

#[test]
fn the_control_share_is_flagged_in_alerts() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    for u in 0..400 {
        e.apply(&ev(&format!("user-{u}"), 100.0, EventKind::Login))
            .unwrap();
    }
    let alerts: Vec<_> = run_days(&mut e, 100, 130)
        .into_iter()
        .filter_map(|s| s.alert)
        .collect();
    assert_eq!(alerts.len(), 400);
    let control = alerts
        .iter()
        .filter(|a| a.experiment_arm == ExperimentArm::Control)
        .count();
    assert!((20..=60).contains(&control), "{control} of 400 in control");
    let policy = Policy::default_embedded();
    assert!(alerts
        .iter()
        .all(|a| a.experiment_arm == policy.experiment_arm(&a.user_id)));
}

proptest::proptest! {
    /// The silent-user bound holds at every instant between its two ends, for the shipped
    /// model and random histories: skipping re-scorings it allows never misses a crossing.
    #[test]
    fn the_silent_bound_holds_in_between(
        history in proptest::collection::vec((0u32..120, 0usize..15, 0u32..20_000), 1..60),
        start_after in 0u32..60,
        span in 1u32..120,
    ) {
        let model = Model::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/churn-lr.json"
        )))
        .unwrap();
        let mut state = UserState::default();
        for (day, kind, cents) in &history {
            let kind = EventKind::ALL[*kind];
            if matches!(kind, EventKind::OptOut | EventKind::Erase) {
                continue;
            }
            state.apply(&Event {
                event_id: String::new(),
                user_id: "u".into(),
                kind,
                ts: i64::from(*day) * DAY_MS + 7_200_000,
                amount: f64::from(*cents) / 100.0,
            });
        }
        let t0 = state.last_activity_ms() + i64::from(start_after) * DAY_MS / 2;
        let t1 = t0 + i64::from(span) * DAY_MS / 2;
        let bound = model
            .silent_logit_bound(
                &state.features(t0, model.layout()),
                &state.features(t1, model.layout()),
            )
            .unwrap();
        for k in 0..=48 {
            let t = t0 + (t1 - t0) * k / 48;
            let z = model.logit(&state.features(t, model.layout()));
            proptest::prop_assert!(z <= bound + 1e-9, "logit {} > bound {} at {}/48", z, bound, k);
        }
    }
}

#[test]
fn users_silent_beyond_retention_are_evicted() {
    let cfg = EngineConfig {
        retention: 30 * DAY_MS,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, Some(silence_model()));
    e.apply(&ev("gone", 0.0, EventKind::Login)).unwrap();
    e.apply(&ev("here", 35.0, EventKind::Login)).unwrap();
    e.advance(40 * DAY_MS, &mut Vec::new());
    assert!(e.state("gone").is_none());
    assert!(e.state("here").is_some());
    assert_eq!(e.counters().evicted, 1);
}
