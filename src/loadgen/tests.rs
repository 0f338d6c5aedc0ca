//! Tests of the parent module, kept in their own file so the module itself stays short.

use super::*;
use crate::event::{decode, RejectReason};

const END: Millis = 20_000 * DAY_MS;

fn cfg() -> LoadConfig {
    LoadConfig {
        users: 2_000,
        events: 200_000,
        days: 60,
        end: END,
        silent_share: 0.25,
        late_share: 0.05,
        jitter: 600_000,
        bad_share: 0.01,
        seed: 3,
        run_id: "t".into(),
    }
}

fn history(cfg: LoadConfig) -> (Generator, Vec<Generated>) {
    let mut g = Generator::new(cfg.clone()).unwrap();
    let out = (0..cfg.events)
        .map(|i| {
            let slot = g.history_slot(i);
            g.next(slot, false)
        })
        .collect();
    (g, out)
}

#[test]
fn rfc3339_matches_chrono() {
    for ts in [
        0,
        1,
        951_782_400_000,
        END + 12_345,
        1_700_000_000_999,
        -86_400_001,
    ] {
        let mut out = Vec::new();
        write_rfc3339(&mut out, ts);
        assert_eq!(String::from_utf8(out).unwrap(), crate::alert::rfc3339(ts));
    }
}

#[test]
fn type_mix_follows_the_session_script() {
    let (g, _) = history(cfg());
    let s = g.stats();
    let n = |k: EventKind| s.by_kind[EventKind::ALL.iter().position(|x| *x == k).unwrap()] as f64;
    let sessions = n(EventKind::Login);
    // Each session: one login, 1–5 page views or searches (mean 3, a quarter searches),
    // a cart add in 35%, a purchase with the persona's probability (12–25%), one end.
    assert!((n(EventKind::SessionEnd) / sessions - 1.0).abs() < 0.02);
    let ratio = |k| n(k) / sessions;
    assert!(
        (ratio(EventKind::PageView) - 2.25).abs() < 0.1,
        "{}",
        ratio(EventKind::PageView)
    );
    assert!(
        (ratio(EventKind::Search) - 0.75).abs() < 0.05,
        "{}",
        ratio(EventKind::Search)
    );
    assert!((ratio(EventKind::CartAdd) - 0.35).abs() < 0.03);
    let p = ratio(EventKind::Purchase);
    assert!((0.12..0.25).contains(&p), "{p}");
    assert_eq!(n(EventKind::OptOut) + n(EventKind::Erase), 0.0);
}

#[test]
fn late_events_stay_within_the_jitter_and_keep_their_share() {
    let c = cfg();
    let (g, out) = history(c.clone());
    for e in &out {
        assert!(e.ts <= e.slot_ts && e.ts >= e.slot_ts - c.jitter, "{e:?}");
    }
    let share = g.stats().late as f64 / out.len() as f64;
    assert!((share - c.late_share).abs() < 0.005, "{share}");
    // On-time events come in slot order: the stream is in event-time order but for the late.
    let on_time: Vec<Millis> = out
        .iter()
        .filter(|e| e.ts == e.slot_ts)
        .map(|e| e.ts)
        .collect();
    assert!(on_time.windows(2).all(|w| w[0] <= w[1]));
    assert!(on_time.first().unwrap() >= &(END - 60 * DAY_MS) && on_time.last().unwrap() <= &END);
}

#[test]
fn bad_messages_keep_their_share_and_are_refused_for_their_reason() {
    let c = cfg();
    let (mut g, out) = history(c.clone());
    let share = g.stats().bad as f64 / out.len() as f64;
    assert!((share - c.bad_share).abs() < 0.002, "{share}");
    let (mut key, mut payload) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for e in &out {
        g.encode(e, 42, &mut key, &mut payload);
        match (e.bad, decode(&payload, END, 3_600_000)) {
            (None, Ok(ev)) => {
                assert_eq!(ev.ts, e.ts);
                assert_eq!(ev.kind, e.kind);
                assert_eq!(ev.user_id.as_bytes(), &key[..]);
            }
            (Some(b), Err(r)) => {
                assert_eq!(r.reason.as_str(), b.expected_reason());
                seen.insert(b);
            }
            (b, r) => panic!("{b:?} gave {r:?}: {}", String::from_utf8_lossy(&payload)),
        }
    }
    assert_eq!(seen.len(), BadKind::ALL.len());
    let _ = RejectReason::ALL;
}

#[test]
fn payload_carries_the_produce_time_in_props() {
    let mut g = Generator::new(cfg()).unwrap();
    let e = g.next(END, true);
    let (mut key, mut payload) = (Vec::new(), Vec::new());
    g.encode(
        &Generated { bad: None, ..e },
        1_234_567,
        &mut key,
        &mut payload,
    );
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["props"]["sent_ms"], 1_234_567);
}

#[test]
fn silent_users_stop_and_the_live_phase_skips_them() {
    let c = LoadConfig {
        late_share: 0.0,
        bad_share: 0.0,
        ..cfg()
    };
    let (g, out) = history(c.clone());
    let silenced: Vec<usize> = (0..c.users)
        .filter(|&u| g.users[u].silent_at.is_some())
        .collect();
    let share = silenced.len() as f64 / c.users as f64;
    assert!((share - c.silent_share).abs() < 0.04, "{share}");
    for e in &out {
        if let UserRef::Synthetic(u) = e.user {
            let plan = &g.users[u as usize];
            assert!(e.ts >= plan.start);
            // A session already open may finish just after its user went silent.
            assert!(
                plan.silent_at.is_none_or(|s| e.ts < s + DAY_MS),
                "{e:?} {plan:?}"
            );
        }
    }
    let mut g = g;
    let opened_live: Vec<u32> = (0..5_000).map(|_| g.draw_user(END, true)).collect();
    assert!(opened_live
        .iter()
        .all(|&u| g.users[u as usize].silent_at.is_none()));
}

#[test]
fn planted_events_merge_in_time_order() {
    let mut g = Generator::new(LoadConfig {
        late_share: 0.0,
        ..cfg()
    })
    .unwrap();
    let planted = due_users(3, END - DAY_MS, 60_000, 13 * DAY_MS);
    let n = planted.len();
    g.plant(planted);
    let mut out: Vec<Generated> = (0..200_000)
        .map(|i| {
            let s = g.history_slot(i);
            g.next(s, false)
        })
        .collect();
    while g.planted_left() > 0 {
        out.push(g.next(Millis::MAX, false));
    }
    assert_eq!(out.iter().filter(|e| e.planted).count(), n);
    assert!(out.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn due_users_alert_after_the_offset_the_engine_finds() {
    let model = Arc::new(
        Model::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/churn-lr.json"
        )))
        .unwrap(),
    );
    let anchor = END + 3 * 3_600_000;
    let offset = alert_offset(Arc::clone(&model), EngineConfig::default(), anchor).unwrap();
    assert!(offset > 7 * DAY_MS && offset < 60 * DAY_MS, "{offset}");
    // Replaying planted users shows their alerts within seconds of the planned instants.
    let first = anchor + offset;
    let mut events = due_users(5, first, 50_000, offset);
    events.sort_by_key(|e| e.ts);
    let mut engine = Engine::new(EngineConfig::default(), Some(model));
    let mut out = Vec::new();
    for e in &events {
        engine.advance(e.ts, &mut out);
        let _ = engine.apply(e);
    }
    let mut alerts = Vec::new();
    let mut now = anchor;
    while now < first + 120_000 {
        now += 1_000;
        out.clear();
        engine.advance(now, &mut out);
        alerts.extend(out.iter().filter_map(|s| s.alert.as_ref()).map(|a| {
            chrono::DateTime::parse_from_rfc3339(&a.ts)
                .unwrap()
                .timestamp_millis()
        }));
    }
    assert_eq!(alerts.len(), 5);
    for (i, t) in alerts.iter().enumerate() {
        let planned = first + 10_000 * i as i64;
        assert!(
            (t - planned).abs() < 30_000,
            "alert {i} at {t}, planned {planned}"
        );
    }
}
