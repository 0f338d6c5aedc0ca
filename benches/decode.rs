//! Decode benchmark, single thread: what an event mapping costs over the native decoder.
//!
//! `cargo bench --bench decode -- [EVENTS]` (default 1,000,000). Three runs over pre-encoded
//! payloads (encoding is not timed; each measurement decodes them 4 times over), each repeated
//! 3 times, the best CPU time kept:
//! - `native`: churnguard's JSON through the native decoder;
//! - `mapped, same payloads`: the same JSON through a mapping that names the native fields
//!   (the cost of the mapping machinery alone, the figure the 25% goal is about);
//! - `segment`: Segment track/page calls (with the `context` and `properties` a real source
//!   sends, so ~3x the bytes) through `deploy/mappings/segment.toml`.

use std::time::{Duration, Instant};

use churnguard::event::{encode, Event, EventKind};
use churnguard::mapping::{parse, Decoded, EventDecoder};

const KINDS: [EventKind; 6] = [
    EventKind::PageView,
    EventKind::Login,
    EventKind::Search,
    EventKind::CartAdd,
    EventKind::Purchase,
    EventKind::SessionEnd,
];

const NATIVE_AS_MAPPING: &str = r#"
[fields]
user_id = "user_id"
event_id = "event_id"
type = "type"
ts = "ts"
amount = "amount"
[types.map]
login = "login"
page_view = "page_view"
search = "search"
cart_add = "cart_add"
purchase = "purchase"
session_end = "session_end"
"#;

/// Passes over the payloads per measurement: enough CPU time that the 10 ms tick of the
/// thread's CPU clock is under 1% of it.
const PASSES: usize = 4;

fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn segment(e: &Event) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(e.ts)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let name = match e.kind {
        EventKind::Purchase => "Order Completed",
        EventKind::Login => "Signed In",
        EventKind::Search => "Products Searched",
        EventKind::CartAdd => "Product Added",
        EventKind::SessionEnd => "Signed Out",
        _ => "Product Viewed",
    };
    serde_json::json!({
        "anonymousId": format!("anon-{}", e.user_id),
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"},
                    "page": {"path": "/p/1", "url": "https://shop.example/p/1"},
                    "ip": "108.0.78.21", "userAgent": "Mozilla/5.0 (Macintosh)"},
        "event": name, "integrations": {}, "messageId": e.event_id,
        "properties": {"product_id": "507f1f77bcf86cd799439011", "revenue": e.amount,
                       "currency": "USD"},
        "receivedAt": ts, "sentAt": ts, "timestamp": ts, "type": "track",
        "userId": e.user_id, "originalTimestamp": ts,
    })
    .to_string()
}

/// Best of three: events per CPU-second and per wall-second.
fn measure(name: &str, decoder: &EventDecoder, payloads: &[String]) -> f64 {
    let mut best = f64::MAX;
    let mut wall_best = f64::MAX;
    for _ in 0..3 {
        let (c0, t0) = (thread_cpu(), Instant::now());
        let mut events = 0usize;
        for _ in 0..PASSES {
            for p in payloads {
                if let Ok(Decoded::Event(e)) = decoder.decode(p.as_bytes(), i64::MAX / 4, 0) {
                    events += std::hint::black_box(e.user_id.len()).min(1);
                }
            }
        }
        assert_eq!(
            events,
            PASSES * payloads.len(),
            "{name}: every payload decodes"
        );
        let wall = t0.elapsed().as_secs_f64();
        let cpu = match (c0, thread_cpu()) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => wall,
        };
        best = best.min(cpu);
        wall_best = wall_best.min(wall);
    }
    let bytes: usize = payloads.iter().map(String::len).sum();
    let decoded = (PASSES * payloads.len()) as f64;
    let per_cpu_s = decoded / best.max(1e-9);
    println!(
        "{name:<24} {:>12.0} events per CPU-second ({:>10.0}/s wall), {:>4} bytes/event",
        per_cpu_s,
        decoded / wall_best.max(1e-9),
        bytes / payloads.len().max(1)
    );
    per_cpu_s
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let start = 1_764_547_200_000i64;
    let events: Vec<Event> = (0..n)
        .map(|i| Event {
            event_id: format!("evt-{i:010}"),
            user_id: format!("user-{:07}", (i * 7919) % 1_000_000),
            kind: KINDS[i % KINDS.len()],
            ts: start + (i as i64) * 1_000,
            amount: if i % KINDS.len() == 4 { 42.5 } else { 0.0 },
        })
        .collect();
    let native: Vec<String> = events.iter().map(encode).collect();
    let segment: Vec<String> = events.iter().map(segment).collect();
    let mapped = EventDecoder::mapped(parse("native-as-mapping", NATIVE_AS_MAPPING).unwrap());
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mappings/segment.toml");
    let segment_decoder =
        EventDecoder::mapped(churnguard::mapping::load(std::path::Path::new(preset)).unwrap());
    println!("decode, one thread, {n} events, best of 3");
    let base = measure("native", &EventDecoder::native(), &native);
    let same = measure("mapped, same payloads", &mapped, &native);
    let seg = measure("segment preset", &segment_decoder, &segment);
    println!(
        "mapping cost on the same payloads: {:+.1}% CPU per event; Segment calls: {:+.1}%",
        (base / same - 1.0) * 100.0,
        (base / seg - 1.0) * 100.0
    );
}
