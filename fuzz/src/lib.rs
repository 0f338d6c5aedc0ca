//! What the fuzz targets share: a fixed clock (so a crash reproduces from its input alone), the
//! shipped model, and a small event script that drives an engine from fuzz bytes.
//!
//! The targets feed untrusted bytes to a parser and then use what it accepted the way the
//! service would (apply it, score with it, restore from it, write it again), because a parser
//! that accepts something the rest of the code cannot hold is as much a bug as a panic in the
//! parser itself.

use std::sync::{Arc, OnceLock};

use churnguard::engine::{Engine, EngineConfig, Scored};
use churnguard::event::{Event, EventKind, END_TS};
use churnguard::features::Windows;
use churnguard::model::Model;
use churnguard::scoring::Scorer;
use churnguard::{Millis, DAY_MS};

/// The wall clock every target decodes against: 2026-05-28T20:26:40Z.
pub const NOW: Millis = 1_780_000_000_000;

/// Future skew allowed, as the service's default (60 minutes).
pub const SKEW: Millis = 3_600_000;

/// The shipped default model, as the service loads it (parsed once per process).
pub fn shipped_model() -> Arc<dyn Scorer> {
    static MODEL: OnceLock<Arc<dyn Scorer>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| {
        let model = Model::from_json_for(
            include_bytes!("../../models/churn-lr.json"),
            "models/churn-lr.json",
            Windows::default(),
        )
        .expect("the shipped model loads");
        Arc::new(model)
    }))
}

/// Events from fuzz bytes, four bytes each: user (one of eight), type, hours since the previous
/// event, amount. Times start 200 days before [`NOW`] and only move forward, as a partition's
/// watermark does; an amount is only set on purchases and refunds.
pub fn script(bytes: &[u8]) -> Vec<Event> {
    let mut ts = NOW - 200 * DAY_MS;
    bytes
        .chunks_exact(4)
        .enumerate()
        .map(|(i, c)| {
            let kind = EventKind::ALL[usize::from(c[1]) % EventKind::ALL.len()];
            ts += i64::from(c[2]) * 3_600_000;
            let amount = match kind {
                EventKind::Purchase | EventKind::Refund => f64::from(c[3]) * 1.25,
                _ => 0.0,
            };
            Event {
                event_id: format!("e{i}"),
                user_id: format!("u{}", c[0] % 8),
                kind,
                ts: ts.min(END_TS - 1),
                amount,
            }
        })
        .collect()
}

/// Applies `events` as the pipeline does (clock first, then the event) and then lets `days`
/// of silence pass, so timers fire too. Returns every scoring.
pub fn drive(engine: &mut Engine, events: &[Event], days: i64) -> Vec<Scored> {
    let mut out = Vec::new();
    for e in events {
        engine.advance(e.ts, &mut out);
        if let Ok(churnguard::engine::Applied::Updated { scored: Some(s) }) = engine.apply(e) {
            out.push(s);
        }
    }
    let end = events.last().map_or(NOW, |e| e.ts) + days * DAY_MS;
    engine.advance(end.min(END_TS - 1), &mut out);
    out
}

/// Checks what a scoring may be whatever the model or policy: a probability, and an alert
/// only when the decision says so.
pub fn check_scored(s: &Scored) {
    assert!(
        (0.0..=1.0).contains(&s.score),
        "score {} is not a probability",
        s.score
    );
    assert_eq!(
        matches!(s.decision, churnguard::alert::AlertDecision::Raise),
        s.alert.is_some(),
        "an alert exactly when the decision raises one"
    );
}

/// A fresh engine with the default configuration and `model`.
pub fn engine(model: Option<Arc<dyn Scorer>>) -> Engine {
    Engine::new(EngineConfig::default(), model)
}
