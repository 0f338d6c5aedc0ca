//! `churnguard demo`: the flags of the embedded demo and its run until Ctrl-C.

use std::time::Duration;

use anyhow::{Context, Result};
use churnguard::demo::{self, DemoConfig};

use super::args::DemoArgs;

/// The demo these flags describe.
pub fn config(args: &DemoArgs) -> DemoConfig {
    DemoConfig {
        metrics_addr: args.metrics_addr,
        model: args.model.clone(),
        users: args.users,
        days: args.days,
        live_rate: args.live_rate,
        stop_after: (args.duration_secs > 0).then(|| Duration::from_secs(args.duration_secs)),
        print_alerts: args.print_alerts,
        seed: args.seed,
        windows: args.window.windows,
    }
}

/// Runs the demo until SIGINT/SIGTERM or `--duration-secs`.
pub async fn run(args: &DemoArgs) -> Result<()> {
    demo::run(config(args), super::shutdown_signal())
        .await
        .context("demo failed")
}
