//! Lookup API benchmark: lookups per second and their latency over real HTTP with bearer
//! authentication, against one instance holding USERS users in memory. No Kafka: the state is
//! an engine filled in-process, as a member's partition engine is, behind the same API server.
//!
//! `cargo bench --bench lookup -- [USERS] [SECONDS] [CLIENTS]` (defaults 1,000,000 users, 10 s,
//! 8 concurrent keep-alive clients). Nine lookups in ten are of tracked users, one of an
//! unknown id (404). Clients and server share the machine: on 2 cores the figure is what one
//! instance answers while the load generator takes a share of the same CPU.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use churnguard::api::{self, Answer, ApiConfig, ApiMetrics, LocalLookup, Tokens};
use churnguard::engine::{Engine, EngineConfig, UserExport, UserView};
use churnguard::event::{Event, EventKind};
use churnguard::features::Windows;
use churnguard::model::Model;
use churnguard::DAY_MS;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TOKEN: &str = "bench-token-0123456789abcdef";

/// One engine standing for one member's state (one partition).
struct OneEngine(Mutex<Engine>);

impl OneEngine {
    fn answer<T>(&self, get: impl Fn(&Engine) -> Option<T>) -> Answer<T> {
        let engine = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match get(&engine) {
            Some(v) => Answer::Found(v),
            None => Answer::NotHere {
                partitions: vec![0],
            },
        }
    }
}

impl LocalLookup for OneEngine {
    fn describe(&self, user_id: &str) -> Answer<UserView> {
        self.answer(|e| e.describe(user_id))
    }
    fn export(&self, user_id: &str) -> Answer<UserExport> {
        self.answer(|e| e.export(user_id))
    }
    fn partition_count(&self) -> Option<usize> {
        Some(1)
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with("--"))
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// USERS users with a few events each over 90 days, the clock at the end.
fn filled_engine(users: u64) -> Engine {
    let model = Model::load_for(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json")),
        Windows::default(),
    )
    .expect("models/churn-lr.json loads");
    let mut engine = Engine::new(EngineConfig::default(), Some(Arc::new(model) as _));
    let end = chrono::Utc::now().timestamp_millis();
    let start = end - 90 * DAY_MS;
    let mut rng = SmallRng::seed_from_u64(7);
    let mut events: Vec<Event> = Vec::with_capacity(users as usize * 3);
    for u in 0..users {
        for k in 0..3 {
            let kind = [EventKind::Login, EventKind::PageView, EventKind::Purchase][k];
            events.push(Event {
                event_id: format!("e{u}-{k}"),
                user_id: format!("u{u:07}"),
                kind,
                ts: rng.gen_range(start..end),
                amount: if kind == EventKind::Purchase {
                    30.0
                } else {
                    0.0
                },
            });
        }
    }
    events.sort_by_key(|e| e.ts);
    let mut out = Vec::new();
    for e in &events {
        engine.advance(e.ts, &mut out);
        out.clear();
        let _ = engine.apply(e);
    }
    engine.advance(end, &mut out);
    engine
}

fn main() {
    let users = arg(1, 1_000_000);
    let seconds = arg(2, 10);
    let clients = arg(3, 8).max(1);
    let t = Instant::now();
    let engine = filled_engine(users);
    eprintln!(
        "filled {} users in {:.1} s",
        engine.users(),
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, format!("bench {TOKEN}\n")).expect("token file");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (lookups, latencies, statuses) = runtime.block_on(async {
        let registry = prometheus::Registry::new();
        let server = api::serve(
            ApiConfig {
                addr: "127.0.0.1:0".parse().expect("address"),
                advertised_url: "http://127.0.0.1".into(),
                max_concurrent: 256,
                request_timeout: Duration::from_secs(2),
                forward_timeout: Duration::from_secs(1),
                max_id_bytes: 256,
            },
            Arc::new(Tokens::load(&token_file).expect("tokens")),
            Arc::new(OneEngine(Mutex::new(engine))),
            None,
            ApiMetrics::register(&registry),
        )
        .expect("serve the API");
        let base = format!("http://{}", server.addr);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut rng = SmallRng::seed_from_u64(c);
                let (mut lat, mut ok, mut missing) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let n = rng.gen_range(0..users + users / 9);
                    let t = Instant::now();
                    let r = client
                        .get(format!("{base}/v1/users/u{n:07}"))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .expect("the API answers");
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    lat.push(t.elapsed().as_micros() as u32);
                    match status {
                        200 => ok += 1,
                        404 => missing += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
                (lat, ok, missing)
            }));
        }
        let (mut all, mut ok, mut missing) = (Vec::new(), 0, 0);
        for t in tasks {
            let (lat, o, m) = t.await.expect("client task");
            all.extend(lat);
            ok += o;
            missing += m;
        }
        server.stop();
        (ok + missing, all, (ok, missing))
    });
    let mut latencies = latencies;
    latencies.sort_unstable();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let rate = lookups as f64 / seconds as f64;
    println!(
        "lookup API, {users} users in memory, {clients} clients, {seconds} s: {rate:.0} lookups/s \
         ({} found, {} unknown); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        statuses.0,
        statuses.1,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "{}",
        serde_json::json!({
            "users": users, "clients": clients, "seconds": seconds, "lookups_per_s": rate.round(),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        })
    );
}
