//! The `churnguard` binary: parses flags and environment, sets up logging and the async
//! runtime, and runs one command (each lives in `cli/`).

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

use cli::args::{Cli, Command};

fn main() -> Result<()> {
    let cli = Cli::parse();
    cli::init_logging(cli.log.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(cli::run::run(args)),
        Command::Demo(args) => runtime.block_on(cli::demo::run(&args)),
        Command::Replay(args) => cli::replay::run(&args),
        Command::Train(args) => cli::train::run(&args),
        Command::Evaluate(args) => cli::evaluate::run(&args),
        Command::Score(args) => cli::score::run(&args),
        Command::Synth(args) => cli::synth::run(&args),
        Command::Loadgen(args) => cli::loadgen::run(&args),
        Command::CheckMapping(args) => cli::check_mapping::run(&args),
        Command::Backfill(args) => runtime.block_on(cli::backfill::run(args)),
    }
}
