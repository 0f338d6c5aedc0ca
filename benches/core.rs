//! Core benchmark, single thread, no Kafka: decode + window update + lifecycle + scoring.
//!
//! `cargo bench --bench core -- [USERS] [EVENTS] [SESSION_LEN]` (defaults 1,000,000 users,
//! 20,000,000 events, session length 1). Events are pre-encoded as JSON in batches (encoding is
//! not timed), spread over 90 days of event time with a realistic type mix and a skewed user
//! popularity, and driven exactly as the pipeline drives the engine: decode, advance the clock,
//! apply. With SESSION_LEN > 1 a user's events come in sessions of that mean length (256
//! sessions interleaved), as apps and sites emit them; with 1 every event is a lone visit, the
//! worst case for scoring (events score a user at most once a day, so sessions share one).
//! CPU time is reported beside wall time because the machine may be shared. Heap bytes are measured with a
//! counting allocator: live bytes held by the engine after the run, divided by tracked users.
//! `CHURNGUARD_WINDOWS` (default `7,30,90`) sets the engine's windows, to measure what more
//! windows cost; `models/churn-lr.json` must load under them (e.g. `7,30,60,90`).
//! `CHURNGUARD_BENCH_SCORE_TABLE=1` keeps the churn-risk table (`--scores-topic`), to measure
//! what it costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{decode, encode, Event, EventKind};
use churnguard::model::Model;
use churnguard::DAY_MS;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The one place the package needs `unsafe`: a global allocator must implement the unsafe
// `GlobalAlloc` trait; it only counts bytes and forwards every call to the system allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Type mix of a typical shop stream (weights per 100 events).
const MIX: [(EventKind, u32); 12] = [
    (EventKind::PageView, 45),
    (EventKind::Login, 10),
    (EventKind::SessionEnd, 10),
    (EventKind::Search, 12),
    (EventKind::CartAdd, 8),
    (EventKind::CartRemove, 2),
    (EventKind::Purchase, 5),
    (EventKind::CampaignOpen, 4),
    (EventKind::CouponRedeem, 1),
    (EventKind::Review, 1),
    (EventKind::Share, 1),
    (EventKind::Refund, 1),
];

fn kind(rng: &mut SmallRng) -> EventKind {
    let mut r = rng.gen_range(0..100);
    for (k, w) in MIX {
        if r < w {
            return k;
        }
        r -= w;
    }
    EventKind::PageView
}

/// CPU time of this thread (user + system), from /proc: wall time is meaningless on a shared
/// machine, CPU time is what a core spends. `None` where /proc is absent.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let users = args.first().copied().unwrap_or(1_000_000);
    let events = args.get(1).copied().unwrap_or(20_000_000);
    let model_path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");
    let windows: churnguard::features::Windows = std::env::var("CHURNGUARD_WINDOWS")
        .map_or(Ok(Default::default()), |w| w.parse())
        .expect("CHURNGUARD_WINDOWS");
    let model = Arc::new(
        Model::load_for(std::path::Path::new(model_path), windows)
            .expect("the model loads under CHURNGUARD_WINDOWS"),
    );

    let span = 90 * DAY_MS;
    let start = chrono::Utc::now().timestamp_millis() - span - DAY_MS;
    let now = start + span + DAY_MS;
    let mut rng = SmallRng::seed_from_u64(1);
    let batch = 1_000_000usize;
    let session_len = args.get(2).copied().unwrap_or(1).max(1) as f64;
    let mut open: Vec<(usize, usize)> = vec![(0, 0); 256];

    let heap_before = LIVE.load(Ordering::Relaxed);
    // CHURNGUARD_BENCH_SCORE_TABLE=1 keeps the churn-risk table, drained as the pipeline does.
    let score_table = std::env::var("CHURNGUARD_BENCH_SCORE_TABLE").is_ok_and(|v| v == "1");
    let mut engine = Engine::new(
        EngineConfig {
            windows,
            score_table,
            ..EngineConfig::default()
        },
        Some(model),
    );
    let (mut table, mut table_records) = (Vec::new(), 0usize);
    let mut busy = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let (mut alerts, mut rejected, mut done) = (0usize, 0usize, 0usize);
    let (mut timer_scorings, mut event_scorings) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    while done < events {
        let n = batch.min(events - done);
        let payloads: Vec<String> = (0..n)
            .map(|i| {
                let seq = done + i;
                // Sessions interleave: each event continues one of the open sessions at random;
                // an ended session is replaced by a new one of a user drawn with skewed
                // popularity (squaring a uniform draw favours low ids: a few heavy users).
                let slot = rng.gen_range(0..open.len());
                if open[slot].1 == 0 {
                    let u = ((rng.gen::<f64>().powi(2)) * users as f64) as usize;
                    let len = if session_len <= 1.0 {
                        1
                    } else {
                        // Geometric length with the requested mean.
                        1 + (rng.gen::<f64>().ln() / (1.0 - 1.0 / session_len).ln()) as usize
                    };
                    open[slot] = (u, len);
                }
                open[slot].1 -= 1;
                let u = open[slot].0;
                let k = kind(&mut rng);
                let e = Event {
                    event_id: format!("e{seq}"),
                    user_id: format!("user-{u:08}"),
                    kind: k,
                    ts: start + (seq as i64 * span) / events as i64 + rng.gen_range(0..60_000),
                    amount: if matches!(k, EventKind::Purchase | EventKind::Refund) {
                        42.5
                    } else {
                        0.0
                    },
                };
                encode(&e)
            })
            .collect();
        let t = Instant::now();
        let c = thread_cpu();
        for p in &payloads {
            match decode(p.as_bytes(), now, 3_600_000) {
                Ok(e) => {
                    out.clear();
                    engine.advance(e.ts, &mut out);
                    timer_scorings += out.len();
                    alerts += out.iter().filter(|s| s.alert.is_some()).count();
                    match engine.apply(&e) {
                        Ok(churnguard::engine::Applied::Updated { scored: Some(s) }) => {
                            event_scorings += 1;
                            alerts += usize::from(s.alert.is_some())
                        }
                        Ok(_) => {}
                        Err(_) => rejected += 1,
                    }
                    // The pipeline publishes outcome events as they come; so does the bench.
                    engine.drain_outcomes(&mut outcomes);
                    outcomes.clear();
                    engine.drain_table(&mut table);
                    table_records += table.len();
                    table.clear();
                }
                Err(_) => rejected += 1,
            }
        }
        busy += t.elapsed();
        if let (Some(before), Some(after)) = (c, thread_cpu()) {
            cpu += after.saturating_sub(before);
        }
        done += n;
        drop(payloads);
    }
    let heap = LIVE.load(Ordering::Relaxed) - heap_before;
    let tracked = engine.users();
    let timers = engine.timers_queued();
    println!(
        "core benchmark: {events} events, {users} user ids, mean session length {session_len}, single thread, windows {windows}"
    );
    println!(
        "  decode + advance + apply (features, lifecycle, scoring): {:.2} s",
        busy.as_secs_f64()
    );
    println!(
        "  throughput: {:.0} events/s wall, {:.0} events per CPU-second ({:.2} CPU s)",
        events as f64 / busy.as_secs_f64(),
        events as f64 / cpu.as_secs_f64().max(1e-9),
        cpu.as_secs_f64()
    );
    println!("  users tracked: {tracked}; alerts raised: {alerts}; rejected: {rejected}");
    if score_table {
        println!("  churn-risk table records (rows and tombstones): {table_records}");
    }
    println!(
        "  scorings: {event_scorings} on events, {timer_scorings} on timers; timer entries queued: {timers}"
    );
    println!(
        "  engine heap: {:.1} MiB = {:.0} bytes per tracked user (index, slots, day buckets, timers, dedupe)",
        heap as f64 / (1024.0 * 1024.0),
        heap as f64 / tracked.max(1) as f64
    );
    let parts: Vec<String> = engine
        .memory_breakdown()
        .iter()
        .map(|(part, bytes)| format!("{part} {:.0}", *bytes as f64 / tracked.max(1) as f64))
        .collect();
    println!(
        "  of which, bytes per user: {}; pending outcomes: {}",
        parts.join(", "),
        engine.outcomes_pending()
    );
    let s = std::mem::size_of::<churnguard::features::UserState>();
    println!("  size_of UserState: {s} bytes");
}
