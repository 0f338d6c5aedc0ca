//! The latency probe of the end-to-end benchmark: a subscriber on the alert topic that notes,
//! for each alert, how long after its cause it arrived.
//!
//! **Attribution.** A win-back alert is decided when the engine clock passes the user's
//! deadline (almost all alerts are timer alerts: a silent user has no event to react to) or,
//! rarely, when the user's own event is scored; the alert's `ts` is the engine clock at that
//! decision. In a live stream (`churnguard loadgen --live-secs`) an on-time event's `ts` is its
//! produce time, and the engine clock is either the event-time watermark, i.e. the `ts` — the
//! produce time — of an event that has been consumed, or the wall clock once every partition is
//! caught up. So `received − alert.ts` is the time from the produce of the event that let the
//! clock reach the decision to the alert in a subscriber's hands (consume lag, decode, engine,
//! producer linger, broker, fetch). With several partitions the watermark is the *slowest*
//! partition's latest event, produced no later than the event that moved it, so the figure is an
//! upper bound; in wall-clock mode it starts at the decision. The service, the load generator and
//! this probe share one machine, hence one clock.
//!
//! Alerts with `ts` before `--from-ms` (decided while the history backlog was consumed) are
//! counted but not measured. The probe stops at `--until-ms` (wall clock) and prints one JSON
//! object: `{alerts, measured, by_trigger, p50_ms, p90_ms, p99_ms, max_ms, mean_ms}`.
//!
//! `cargo run --release --example alert_latency -- --brokers HOST:PORT --topic winback-alerts --from-ms T0 --until-ms T1`

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Alert topic.
    #[arg(long, default_value = "winback-alerts")]
    topic: String,
    /// Measure alerts whose `ts` is at or after this instant (Unix ms).
    #[arg(long, default_value_t = 0)]
    from_ms: i64,
    /// Stop at this wall-clock instant (Unix ms).
    #[arg(long)]
    until_ms: i64,
    /// The consumer's `fetch.wait.max.ms`: a subscriber that wants alerts promptly keeps it short.
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u64,
    /// Write every measured alert (`user_id`, `trigger`, `ts_ms`, `latency_ms`) as JSONL here.
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("alert-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .set("fetch.queue.backoff.ms", "10")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg.create().context("cannot create the consumer")?;
    // Manual assignment from the beginning: no group join, nothing missed however early the
    // first alert comes.
    let md = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .context("cannot read metadata")?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(partitions > 0, "topic {} has no partitions", args.topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut samples = Vec::new();
    let mut lines = Vec::new();
    let mut by_trigger: BTreeMap<String, u64> = BTreeMap::new();
    let (mut alerts, mut unreadable) = (0u64, 0u64);
    while chrono::Utc::now().timestamp_millis() < args.until_ms {
        let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let received = chrono::Utc::now().timestamp_millis();
        let Ok(m) = msg else { continue };
        alerts += 1;
        let parsed = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
        let Some(v) = parsed else {
            unreadable += 1;
            continue;
        };
        let Some(ts) = v["ts"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
        else {
            unreadable += 1;
            continue;
        };
        if ts < args.from_ms {
            continue;
        }
        let trigger = v["trigger"].as_str().unwrap_or("?").to_string();
        *by_trigger.entry(trigger.clone()).or_default() += 1;
        samples.push(received - ts);
        if args.samples.is_some() {
            lines.push(serde_json::json!({
                "user_id": v["user_id"], "trigger": trigger, "ts_ms": ts, "latency_ms": received - ts,
            }));
        }
    }
    if let Some(path) = &args.samples {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mean =
        (!samples.is_empty()).then(|| samples.iter().sum::<i64>() as f64 / samples.len() as f64);
    samples.sort_unstable();
    let out = serde_json::json!({
        "alerts": alerts,
        "measured": samples.len(),
        "unreadable": unreadable,
        "by_trigger": by_trigger,
        "p50_ms": percentile(&samples, 50.0),
        "p90_ms": percentile(&samples, 90.0),
        "p99_ms": percentile(&samples, 99.0),
        "max_ms": samples.last(),
        "min_ms": samples.first(),
        "mean_ms": mean,
    });
    println!("{out}");
    Ok(())
}
