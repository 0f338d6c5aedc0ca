//! `churnguard demo`: the flags of the embedded demo and its run until Ctrl-C.

use std::time::Duration;

use anyhow::{Context, Result};
use std::path::PathBuf;

use churnguard::api::auth::generate_token;
use churnguard::demo::{self, DemoApi, DemoConfig};

use std::net::SocketAddr;

use clap::Args;

use super::engine_args::WindowArgs;

/// `churnguard demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "CHURNGUARD_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: SocketAddr,
    /// Model artifact to score with.
    #[arg(long, env = "CHURNGUARD_MODEL", default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    /// Synthetic users in the generated history.
    #[arg(long, default_value_t = 3_000)]
    pub users: usize,
    /// Days of history generated before now.
    #[arg(long, default_value_t = 180)]
    pub days: u32,
    /// Live events per second produced after the history (0 = none).
    #[arg(long, default_value_t = 50)]
    pub live_rate: u32,
    /// Stop after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_secs: u64,
    /// Serve the lookup API here (`GET /v1/users/{id}`); `off` = not at all.
    #[arg(long, env = "CHURNGUARD_API_ADDR", default_value = "127.0.0.1:9465")]
    pub api_addr: String,
    /// Bearer tokens for the API (as `run --api-token-file`). Default: a new token in a file
    /// the demo names with a ready-to-paste `curl` line.
    #[arg(long, env = "CHURNGUARD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Alerts printed in full; the rest are summarised.
    #[arg(long, default_value_t = 10)]
    pub print_alerts: usize,
    /// Random seed of the synthetic stream.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[command(flatten)]
    pub window: WindowArgs,
}

/// The demo these flags describe.
pub fn config(args: &DemoArgs) -> Result<DemoConfig> {
    Ok(DemoConfig {
        metrics_addr: args.metrics_addr,
        model: args.model.clone(),
        users: args.users,
        days: args.days,
        live_rate: args.live_rate,
        stop_after: (args.duration_secs > 0).then(|| Duration::from_secs(args.duration_secs)),
        print_alerts: args.print_alerts,
        seed: args.seed,
        windows: args.window.windows,
        api: api(args)?,
    })
}

/// The demo's API: the given token file, or a new token in a private file.
fn api(args: &DemoArgs) -> Result<Option<DemoApi>> {
    if args.api_addr == "off" {
        return Ok(None);
    }
    let addr = args.api_addr.parse().with_context(|| {
        format!(
            "--api-addr {:?} is neither host:port nor `off`",
            args.api_addr
        )
    })?;
    let token_file = match &args.api_token_file {
        Some(path) => path.clone(),
        None => write_new_token()?,
    };
    let tokens = super::api::load_tokens(Some(&token_file))?;
    Ok(Some(DemoApi {
        addr,
        tokens,
        token_file,
    }))
}

/// Writes a new random token to `churnguard-demo-api-token` in the temporary directory,
/// readable by this user only.
fn write_new_token() -> Result<PathBuf> {
    let path = std::env::temp_dir().join("churnguard-demo-api-token");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write the demo's API token to {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", generate_token()).as_bytes())
        .with_context(|| format!("cannot write the demo's API token to {}", path.display()))?;
    Ok(path)
}

/// Runs the demo until SIGINT/SIGTERM or `--duration-secs`.
pub async fn run(args: &DemoArgs) -> Result<()> {
    demo::run(config(args)?, super::shutdown_signal())
        .await
        .context("demo failed")
}
