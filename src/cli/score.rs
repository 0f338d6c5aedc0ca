//! `churnguard score`: every user's view at a date from history files, as JSONL or CSV, through
//! the same engine, model and policy as the service (a first audience sync, an analyst's
//! snapshot). The flags live here rather than in `args` because no other command shares them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use churnguard::engine::Engine;
use churnguard::score_table::{self, TableFormat};
use churnguard::time::{parse_instant, rfc3339};
use clap::{Args, ValueEnum};

use super::engine_args::{EngineArgs, RefusalArgs};
use super::input::MappingArgs;

/// `churnguard score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// History files of events, any order, mixed formats: .jsonl, .json, .jsonl.gz, .csv, .csv.gz,
    /// .parquet (several after one flag, or the flag repeated).
    #[arg(long, num_args = 1.., required = true)]
    pub events: Vec<PathBuf>,
    /// The instant of the table: RFC 3339 or `YYYY-MM-DD` (midnight UTC). Events after it are
    /// left out; one before the first event is refused.
    #[arg(long)]
    pub at: String,
    /// Row format: one full view as JSON per line, or flat CSV columns.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    pub format: FormatArg,
    /// Where the table goes: a file (written whole or not at all) or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Model artifact to score with.
    #[arg(long, default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub refusals: RefusalArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// `--format` of `churnguard score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

impl From<FormatArg> for TableFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Jsonl => TableFormat::Jsonl,
            FormatArg::Csv => TableFormat::Csv,
        }
    }
}

/// Folds `--events` into an engine up to `--at` and writes every user's view.
pub fn run(args: &ScoreArgs) -> Result<()> {
    // Checked before anything is read: a typo should not cost a long load.
    let at = parse_instant(&args.at).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    churnguard::event::check_time(at).map_err(|_| {
        anyhow::anyhow!(
            "--at {} is outside {}",
            args.at,
            churnguard::event::time_range()
        )
    })?;
    let (model, loaded) = super::model_and_history(
        &args.model,
        &args.events,
        &args.engine,
        &args.mapping,
        &args.refusals,
    )?;
    let mut engine = Engine::new(args.engine.engine_config()?, Some(model));
    let started = std::time::Instant::now();
    let folded = score_table::fold_to(&mut engine, &loaded.events, at)
        .with_context(|| format!("--at {}", args.at))?;
    let bar = users_bar(engine.users() as u64);
    let written = if args.output == Path::new("-") {
        let stdout = std::io::BufWriter::new(std::io::stdout().lock());
        score_table::write_table(&engine, args.format.into(), stdout, || bar.inc(1))?
    } else {
        write_file(&args.output, |f| {
            Ok(score_table::write_table(
                &engine,
                args.format.into(),
                f,
                || bar.inc(1),
            )?)
        })?
    };
    bar.finish_and_clear();
    eprintln!(
        "scored {} users at {} from {} events ({} after --at left out, {} refused by the engine, \
         {} alerts on the way) in {:.2} s; {} at or above the threshold",
        written.users,
        rfc3339(folded.at),
        folded.applied,
        folded.after_at,
        folded.rejected,
        folded.alerts,
        started.elapsed().as_secs_f64(),
        written.at_or_above_threshold,
    );
    Ok(())
}

/// Writes through `write` into a temporary file beside `path` and renames it into place, so
/// a failed run never leaves a partial table that looks complete.
fn write_file<T>(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<T>,
) -> Result<T> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let result = write(&mut out).and_then(|t| {
        out.flush()?;
        Ok(t)
    });
    match result {
        Ok(t) => {
            std::fs::rename(&partial, path).with_context(|| {
                format!("cannot rename {} to {}", partial.display(), path.display())
            })?;
            Ok(t)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!("cannot write {}", path.display())))
        }
    }
}

/// A bar over the users written, on stderr when it is a terminal (tables of millions of users
/// take a while).
fn users_bar(users: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(users);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "writing views [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} users ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar
}
