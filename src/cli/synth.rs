//! `churnguard synth`: writes a reproducible synthetic activity stream as JSONL.

use std::io::Write;

use anyhow::{bail, Context, Result};
use churnguard::synth::{self, SynthConfig};
use churnguard::time::parse_instant;

use super::args::SynthArgs;

/// The stream these flags describe, or which flag is out of range.
pub fn config(args: &SynthArgs) -> Result<SynthConfig> {
    let end = parse_instant(&args.end).map_err(anyhow::Error::msg)?;
    if !(0.0..=1.0).contains(&args.churn_share) {
        bail!("--churn-share must lie in [0, 1]");
    }
    Ok(SynthConfig {
        users: args.users,
        days: args.days,
        end,
        churn_share: args.churn_share,
        seed: args.seed,
    })
}

/// Generates the stream and writes it to `--out`.
pub fn run(args: &SynthArgs) -> Result<()> {
    let (users, events) = synth::generate(&config(args)?);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?,
    );
    for e in &events {
        writeln!(f, "{}", churnguard::event::encode(e))?;
    }
    f.flush()?;
    eprintln!(
        "wrote {} events of {} users to {}",
        events.len(),
        users.len(),
        args.out.display()
    );
    Ok(())
}
