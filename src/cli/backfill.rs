//! `churnguard backfill`: builds the service's state from history files and writes it to the
//! state changelog, so `churnguard run` starts warm (see [`churnguard::kafka::backfill`]).
//!
//! Its flags ([`super::args::BackfillArgs`]) include `run`'s Kafka and engine flags (and their
//! `CHURNGUARD_*` variables), so the one configuration that runs the service names the same
//! group, topics, changelog, windows and policy here: a state built under other settings would
//! be restored wrongly or refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use churnguard::kafka::backfill::{self, BackfillConfig, BackfillError, BuildReport, Target};
use churnguard::model::locate::resolve_model_path;
use churnguard::model::Model;

use super::args::{BackfillArgs, RefusalArgs};

/// Checks, fixes the positions, loads the history, builds the state, writes and commits it.
pub async fn run(args: BackfillArgs) -> Result<()> {
    let changelog = args
        .kafka
        .changelog_topic()
        .ok_or(BackfillError::NoChangelog)?;
    let windows = args.engine.window.windows;
    let model = Model::load_for(&resolve_model_path(&args.model)?, windows)
        .context("cannot load the model")?;
    let cfg = BackfillConfig {
        brokers: args.kafka.brokers.clone(),
        kafka_options: args.kafka.options().map_err(anyhow::Error::msg)?,
        group: args.kafka.group.clone(),
        input_topic: args.kafka.input_topic.clone(),
        changelog_topic: changelog,
        engine: args.engine.engine_config()?,
        model: Arc::new(model),
        partitioner: args.partitioner.into(),
        force: args.force,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    // Positions first: whatever reaches the topic from here on is consumed live.
    let target = backfill::prepare(&cfg).await?;
    eprintln!(
        "group {} resumes {} at offsets {}",
        cfg.group,
        cfg.input_topic,
        offsets(&target.positions)
    );
    let started = Instant::now();
    let (events, lines, refused_in_files) = load(&args)?;
    let (mut partitions, report) = backfill::build(&cfg, &target, &events);
    drop(events);
    print_build(&report, &target, started.elapsed().as_secs_f64());
    check_engine_refusals(&report, lines, refused_in_files, &args.refusals)?;
    let written = backfill::write(&cfg, &target, &mut partitions, super::shutdown_signal())?;
    eprintln!(
        "wrote {} changelog records to {}; committed group {}'s offsets {}: `churnguard run` \
         restores this state and consumes from there",
        written.records,
        cfg.changelog_topic,
        cfg.group,
        offsets(&target.positions)
    );
    Ok(())
}

/// Every file's valid events, in engine order; records read and refused in all files.
fn load(args: &BackfillArgs) -> Result<(Vec<churnguard::event::Event>, usize, usize)> {
    let now = chrono::Utc::now().timestamp_millis();
    let loaded = super::load_checked(
        &args.events,
        &args.mapping.decoder()?,
        now,
        args.engine.max_future_skew(),
        &args.refusals,
    )?;
    let (records, refused) = (loaded.records() as usize, loaded.refused() as usize);
    Ok((loaded.events, records, refused))
}

fn print_build(report: &BuildReport, target: &Target, secs: f64) {
    eprintln!(
        "built the state of {} users from {} events in {secs:.1} s; {} alerts decided in the \
         history (not published)",
        report.users.iter().sum::<usize>(),
        report.applied,
        report.alerts
    );
    for (p, users) in report.users.iter().enumerate() {
        let end = report.ends[p].map_or("-".to_string(), churnguard::alert::rfc3339);
        eprintln!(
            "  partition {p}: {users} users, history ends {end}, resumes at offset {}",
            target.positions[p]
        );
    }
    for (reason, (count, examples)) in &report.refused {
        eprintln!(
            "  refused by the engine, {reason}: {count} ({})",
            examples.join("; ")
        );
    }
}

/// The engine's refusals count against `--max-refused-fraction` with the files' own.
fn check_engine_refusals(
    report: &BuildReport,
    lines: usize,
    refused_in_files: usize,
    refusals: &RefusalArgs,
) -> Result<()> {
    let refused = refused_in_files as u64 + report.refused_total();
    if refused as f64 > refusals.max_refused_fraction * lines as f64 {
        anyhow::bail!(
            "{refused} of {lines} history lines refused ({} by the engine), more than \
             --max-refused-fraction {} allows; nothing was written",
            report.refused_total(),
            refusals.max_refused_fraction
        );
    }
    Ok(())
}

fn offsets(positions: &[i64]) -> String {
    positions
        .iter()
        .enumerate()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}
