//! `churnguard replay`: drives the engine from history files, prints alerts as JSON lines on
//! stdout and a summary on stderr, optionally every user's final features.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use churnguard::engine::Engine;
use churnguard::replay;
use churnguard::time::parse_instant;

use super::args::ReplayArgs;

/// Replays `--events` through the engine and reports what it decided.
pub fn run(args: &ReplayArgs) -> Result<()> {
    let (model, loaded) = super::model_and_history(
        &args.model,
        &args.events,
        &args.engine,
        &args.mapping,
        &args.refusals,
    )?;
    let until = args
        .until
        .as_deref()
        .map(|text| {
            parse_instant(text).and_then(|t| {
                churnguard::event::check_time(t).map_err(|_| {
                    format!(
                        "--until {text} is outside {}",
                        churnguard::event::time_range()
                    )
                })
            })
        })
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut engine = Engine::new(args.engine.engine_config()?, Some(model));
    let started = std::time::Instant::now();
    let outcome = replay::replay(&mut engine, &loaded.events, until);
    let secs = started.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    for a in &outcome.alerts {
        writeln!(stdout, "{}", serde_json::to_string(a)?)?;
    }
    if let Some(path) = &args.features_out {
        write_features(&engine, path)?;
    }
    eprintln!(
        "replayed {} events ({} refused in the files, {} ignored; {} too late) for {} users in {secs:.2} s ({:.0} events/s); {} alerts",
        outcome.applied,
        loaded.refused(),
        loaded.ignored(),
        outcome.rejected.len(),
        engine.users(),
        outcome.applied as f64 / secs.max(1e-9),
        outcome.alerts.len()
    );
    Ok(())
}

/// Writes every user's features at the engine's clock as JSONL to `path`.
fn write_features(engine: &Engine, path: &Path) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for (user, _, fv) in engine.snapshot(engine.clock()) {
        let features: serde_json::Map<String, serde_json::Value> = fv
            .named()
            .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
            .collect();
        writeln!(
            f,
            "{}",
            serde_json::json!({ "user_id": user, "features": features })
        )?;
    }
    f.flush()?;
    Ok(())
}
