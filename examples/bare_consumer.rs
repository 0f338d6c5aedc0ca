//! The ceiling of the end-to-end benchmark: a bare rdkafka consumer that only counts messages.
//!
//! It joins a fresh consumer group on `--topic`, reads from the beginning, and stops once it has
//! seen `--messages` messages; whatever churnguard does per message comes on top of what this
//! does, so its rate is what the broker and the client library can deliver on this machine.
//! Prints one JSON object: `{messages, seconds, events_per_s, seconds_total, events_per_s_total,
//! cpu_seconds, errors}` (`seconds` from the first message, `_total` from start-up, group join
//! included). `fetch.queue.backoff.ms` is 100: librdkafka's default (1000) throttles against Tansu.
//!
//! `cargo run --release --example bare_consumer -- --brokers HOST:PORT --topic activity --messages 1000000`

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to count.
    #[arg(long, default_value = "activity")]
    topic: String,
    /// Stop after this many messages.
    #[arg(long)]
    messages: u64,
    /// Consumer group (default: a fresh one, so the topic is read from the beginning).
    #[arg(long)]
    group: Option<String>,
    /// Give up after this long (seconds).
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Extra librdkafka settings as key=value (repeatable).
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
}

/// CPU seconds (user + system) of this process so far, from /proc (USER_HZ = 100).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let group = args.group.clone().unwrap_or_else(|| {
        format!(
            "bare-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        )
    });
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("fetch.queue.backoff.ms", "100")
        .set("enable.partition.eof", "false");
    for o in &args.kafka_options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("kafka option {o:?} is not key=value"))?;
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create().context("cannot create the consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("cannot subscribe to {}", args.topic))?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let (mut n, mut errors) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while n < args.messages {
        if Instant::now() > deadline {
            bail!(
                "timed out after {}s with {n} of {} messages",
                args.timeout_secs,
                args.messages
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                n += 1;
                first.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("consumer error: {e}");
                }
            }
            None => {}
        }
    }
    let total = started.elapsed().as_secs_f64();
    let seconds = first.map_or(total, |f| f.elapsed().as_secs_f64());
    let out = serde_json::json!({
        "messages": n,
        "seconds": seconds,
        "events_per_s": n as f64 / seconds.max(1e-9),
        "seconds_total": total,
        "events_per_s_total": n as f64 / total.max(1e-9),
        "cpu_seconds": cpu_seconds(),
        "errors": errors,
        "group": group,
    });
    println!("{out}");
    Ok(())
}
