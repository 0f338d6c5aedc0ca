//! A steady load on the lookup API, for measuring what it costs the pipeline: `--rate`
//! lookups per second (open loop: requests go out on schedule whether or not earlier ones have
//! answered) of random users `u0000000`..`u{users-1}` (the ids `churnguard loadgen` writes),
//! until `--seconds` pass or SIGINT. Prints one JSON object with what was sent
//! and the latency percentiles.
//!
//! `cargo run --release --example api_load -- --api-url http://127.0.0.1:9465 --token-file T \
//!  --rate 1000 --users 100000 --seconds 60`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of a member's lookup API.
    #[arg(long, default_value = "http://127.0.0.1:9465")]
    api_url: String,
    /// File holding a bearer token (the first word of its first line that is not a comment
    /// is an id when a second word follows).
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// Lookups per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Users to draw from.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Stop after this long.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

fn token(path: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .context("no token in the token file")?;
    Ok(line.split_whitespace().last().unwrap_or(line).to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = token(&args.token_file)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let latencies = Arc::new(Mutex::new(Vec::<(u16, u32)>::new()));
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rng = SmallRng::seed_from_u64(11);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    let mut inflight = Vec::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        let url = format!(
            "{}/v1/users/u{:07}",
            args.api_url,
            rng.gen_range(0..args.users)
        );
        let (client, token, latencies) = (client.clone(), token.clone(), Arc::clone(&latencies));
        sent += 1;
        inflight.push(tokio::spawn(async move {
            let t = Instant::now();
            let status = match client.get(url).bearer_auth(token).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            latencies
                .lock()
                .await
                .push((status, t.elapsed().as_micros() as u32));
        }));
        inflight.retain(|h| !h.is_finished());
    }
    for h in inflight {
        let _ = h.await;
    }
    let mut all = latencies.lock().await.clone();
    let by_status = |code: u16| all.iter().filter(|(s, _)| *s == code).count();
    let (ok, missing, busy, failed) =
        (by_status(200), by_status(404), by_status(503), by_status(0));
    all.sort_unstable_by_key(|(_, l)| *l);
    let pct = |q: f64| {
        all.get(((all.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |(_, l)| f64::from(*l) / 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "sent": sent, "seconds": args.seconds, "rate": args.rate,
            "ok": ok, "not_found": missing, "unavailable": busy, "failed": failed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        })
    );
    Ok(())
}
