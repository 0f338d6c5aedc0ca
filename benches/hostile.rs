//! Hostile-producer benchmark: what a broken or malicious producer costs one partition's engine,
//! single thread, no Kafka (the broker and client add their own costs on top, not measured here).
//!
//! `cargo bench --bench hostile -- [EVENTS]` (default 1,000,000). Three floods, each within one
//! second of event time, through the engine the service runs (default configuration, the
//! shipped model):
//! - `one user`: EVENTS events of a single user id (distinct event ids, mixed types);
//! - `distinct users`: EVENTS events of EVENTS different user ids, under the default user cap
//!   and then under a cap of a tenth of them (the rest refused as `user_cap`);
//! - `1 MB messages`: what refusing a 1 MiB payload by size costs, against parsing it.
//!
//! For each: wall time, events per second, the state held afterwards (users, the heap of their
//! windows, the duplicate detector's fingerprints and what it forgot, the largest changelog
//! record the engine would write).

use std::sync::Arc;
use std::time::Instant;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{self, Event, EventKind, DEFAULT_MAX_EVENT_BYTES};
use churnguard::features::Windows;
use churnguard::model::Model;
use churnguard::scoring::Scorer;

const KINDS: [EventKind; 5] = [
    EventKind::PageView,
    EventKind::Login,
    EventKind::Search,
    EventKind::CartAdd,
    EventKind::Purchase,
];

/// 2026-05-28T20:26:40Z.
const T0: i64 = 1_780_000_000_000;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with("--"))
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn model() -> Arc<dyn Scorer> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");
    Arc::new(Model::load_for(std::path::Path::new(path), Windows::default()).expect("model"))
}

fn event(user: String, i: u64, n: u64) -> Event {
    let kind = KINDS[(i % KINDS.len() as u64) as usize];
    Event {
        event_id: format!("e{i}"),
        user_id: user,
        kind,
        // Spread over one second of event time.
        ts: T0 + (i * 1_000 / n.max(1)) as i64,
        amount: if kind == EventKind::Purchase {
            9.99
        } else {
            0.0
        },
    }
}

/// Applies the events (advancing the clock first, as the pipeline does) and prints the figures.
fn flood(name: &str, config: EngineConfig, events: impl Iterator<Item = Event>) {
    let mut engine = Engine::new(config, Some(model()));
    engine.track_changes(true);
    let mut out = Vec::new();
    let (mut n, mut refused) = (0u64, 0u64);
    let t = Instant::now();
    for e in events {
        engine.advance(e.ts, &mut out);
        out.clear();
        if engine.apply(&e).is_err() {
            refused += 1;
        }
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let heap: usize = engine.memory_breakdown().iter().map(|(_, b)| b).sum();
    let mut largest_record = 0;
    let t_changes = Instant::now();
    engine.take_changes(|c| {
        if let churnguard::engine::changelog::Change::Upsert { record, .. } = c {
            largest_record = largest_record.max(record.len());
        }
    });
    println!(
        "{name:<32} {n:>9} events in {secs:>6.2} s = {:>9.0} events/s; refused {refused}; \
         users {}; engine heap {:.1} MiB; dedupe {} held, {} forgotten; largest changelog \
         record {} bytes (all records written in {:.2} s)",
        n as f64 / secs,
        engine.users(),
        heap as f64 / (1 << 20) as f64,
        engine.dedupe_entries(),
        engine.counters().dedupe_forgotten,
        largest_record,
        t_changes.elapsed().as_secs_f64(),
    );
}

fn large_messages() {
    // A valid event whose `props` carries a megabyte: parsing has to read it all.
    let filler = "x".repeat(1 << 20);
    let payload = format!(
        r#"{{"event_id":"e","user_id":"u","type":"login","ts":"2026-05-28T20:26:40Z","props":{{"blob":"{filler}"}}}}"#
    );
    let bytes = payload.as_bytes();
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        assert!(event::check_size(bytes, DEFAULT_MAX_EVENT_BYTES).is_err());
    }
    let refuse = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        assert!(event::decode(bytes, T0 + 1_000, 3_600_000).is_ok());
    }
    let parse = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{:<32} {} bytes: refused by size in {:.3} µs; parsing it (no limit) takes {:.0} µs \
         = {:.0} such messages/s",
        "1 MB messages",
        bytes.len(),
        refuse * 1e6,
        parse * 1e6,
        1.0 / parse
    );
}

fn main() {
    let n = arg(1, 1_000_000);
    flood(
        "one user",
        EngineConfig::default(),
        (0..n).map(|i| event("hostile".into(), i, n)),
    );
    flood(
        "distinct users, default cap",
        EngineConfig::default(),
        (0..n).map(|i| event(format!("u{i}"), i, n)),
    );
    flood(
        "distinct users, cap = a tenth",
        EngineConfig {
            max_users: (n / 10).max(1) as usize,
            ..EngineConfig::default()
        },
        (0..n).map(|i| event(format!("u{i}"), i, n)),
    );
    large_messages();
}
