//! `churnguard loadgen`: produces a generated activity stream to Kafka and prints a JSON
//! summary on stdout (read by `scripts/bench.sh`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use churnguard::kafka::parse_kafka_options;
use churnguard::loadgen::{self, DuePlan, Generator, LoadConfig, ProduceConfig};
use churnguard::model::Model;
use churnguard::{Millis, DAY_MS};

use super::args::LoadgenArgs;

/// The stream these flags describe; its history ends at `started_ms`.
pub fn load_config(args: &LoadgenArgs, started_ms: Millis) -> LoadConfig {
    LoadConfig {
        users: args.users,
        events: args.events,
        days: args.days,
        end: started_ms,
        silent_share: args.silent_share,
        late_share: args.late_share,
        jitter: args.jitter_ms,
        bad_share: args.bad_share,
        seed: args.seed,
        run_id: format!("lg{}", started_ms % 1_000_000_000),
    }
}

/// Where and how fast to produce, or why a `--kafka-option` is malformed.
pub fn produce_config(args: &LoadgenArgs) -> Result<ProduceConfig> {
    Ok(ProduceConfig {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        rate: args.rate,
        live: Duration::from_secs_f64(args.live_secs.max(0.0)),
        live_rate: args.live_rate,
        kafka_options: parse_kafka_options(&args.kafka_options).map_err(anyhow::Error::msg)?,
    })
}

/// The due users to plant (`--due-users` > 0), relative to the start at `started_ms`.
pub fn due_plan(args: &LoadgenArgs, started_ms: Millis) -> Option<DuePlan> {
    (args.due_users > 0).then(|| DuePlan {
        users: args.due_users,
        first_alert_at: started_ms + (args.due_after_secs * 1000.0) as Millis,
        window: (args.due_window_secs * 1000.0) as Millis,
    })
}

/// Generates and produces the stream, then prints the report as one JSON object.
pub fn run(args: &LoadgenArgs) -> Result<()> {
    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut gen = Generator::new(load_config(args, started_ms))?;
    let plan = due_plan(args, started_ms);
    let mut due_offset_ms = None;
    if let Some(plan) = &plan {
        let model = Arc::new(
            Model::load(&churnguard::model::locate::resolve_model_path(&args.model)?)
                .context("cannot load the model")?,
        );
        let (events, offset) = loadgen::plan_due_users(model, plan)?;
        gen.plant(events);
        due_offset_ms = Some(offset);
        tracing::info!(
            users = plan.users,
            silence_days = offset as f64 / DAY_MS as f64,
            "planted due users"
        );
    }
    let report = loadgen::produce(&mut gen, &produce_config(args)?)?;
    eprintln!(
        "produced {} events ({} history, {} live; {} bad, {} late, {} planted) in {:.2} s: {:.0} events/s (history {:.0} events/s)",
        report.events,
        report.history_events,
        report.live_events,
        report.bad,
        report.late,
        report.planted,
        report.seconds,
        report.events_per_s,
        report.history_events_per_s
    );
    let mut summary = serde_json::to_value(&report)?;
    summary["started_ms"] = serde_json::json!(started_ms);
    if let (Some(plan), Some(offset)) = (plan, due_offset_ms) {
        summary["due_users"] = serde_json::json!(plan.users);
        summary["due_silence_ms"] = serde_json::json!(offset);
        summary["due_first_ms"] = serde_json::json!(plan.first_alert_at);
        summary["due_last_ms"] = serde_json::json!(plan.first_alert_at + plan.window);
    }
    println!("{summary}");
    Ok(())
}
