//! The engine's flags, shared by every command that runs the engine (`run`, `replay`, `score`,
//! `backfill`, ...) and by the offline tools' refusal limit. Kept apart from `args` so that a
//! command defining its own flags in its own module can flatten these without importing `args`,
//! which lists every command.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::Args;

use churnguard::engine::EngineConfig;
use churnguard::features::lifecycle::{LifecycleConfig, LifecycleConfigError};
use churnguard::features::Windows;
use churnguard::policy::{Policy, PolicyError};
use churnguard::{Millis, DAY_MS};

/// Why the engine flags cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The sliding windows, shared by every command that runs the engine: a model only scores
/// under the windows it was trained with, so train, evaluate, replay and run take the same flag.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Sliding-window horizons in days, ascending: 1 to 4 distinct values in 1..=365. Feature
    /// names follow them (e.g. 180 adds purchases_180d), so a model runs only under the windows
    /// it was trained with; per-user memory grows with the longest (at least 90 days are kept
    /// for the fixed 30-vs-60-day trends).
    #[arg(
        long,
        env = "CHURNGUARD_WINDOWS",
        default_value = "7,30,90",
        value_parser = parse_windows
    )]
    pub windows: Windows,
}

/// Parses `--windows` (clap shows the message after the offending value).
pub fn parse_windows(text: &str) -> Result<Windows, String> {
    text.parse::<Windows>().map_err(|e| e.to_string())
}

/// Engine tunables (event time).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// How far behind the watermark an event is still accepted (hours).
    #[arg(
        long,
        env = "CHURNGUARD_ALLOWED_LATENESS_HOURS",
        default_value_t = 72.0
    )]
    pub allowed_lateness_hours: f64,
    /// How far ahead of the wall clock an event timestamp may be (minutes).
    #[arg(
        long,
        env = "CHURNGUARD_MAX_FUTURE_SKEW_MINUTES",
        default_value_t = 60.0
    )]
    pub max_future_skew_minutes: f64,
    /// How often a silent user is re-scored (hours of event time).
    #[arg(
        long,
        env = "CHURNGUARD_RESCORE_INTERVAL_HOURS",
        default_value_t = 24.0
    )]
    pub rescore_interval_hours: f64,
    /// Silence (days) after which a silent user starts being re-scored periodically; lifecycle
    /// thresholds and an overdue purchase cycle re-score them regardless.
    #[arg(long, env = "CHURNGUARD_RESCORE_AFTER_DAYS", default_value_t = 7.0)]
    pub rescore_after_days: f64,
    /// Users silent for longer than this are dropped from memory (days).
    #[arg(long, env = "CHURNGUARD_RETENTION_DAYS", default_value_t = 400.0)]
    pub retention_days: f64,
    /// How long an event_id is remembered to drop duplicates (minutes of event time; 0 = off).
    /// Memory is ~16 bytes per event within this horizon.
    #[arg(
        long,
        env = "CHURNGUARD_DEDUPE_HORIZON_MINUTES",
        default_value_t = 60.0
    )]
    pub dedupe_horizon_minutes: f64,
    /// Longest user_id or event_id accepted (bytes); longer ones are refused as `invalid_id`.
    #[arg(long, env = "CHURNGUARD_MAX_ID_BYTES", default_value_t = churnguard::event::DEFAULT_MAX_ID_BYTES,
          value_parser = max_id_bytes)]
    pub max_id_bytes: usize,
    /// Most users one input partition holds. At the cap, an event of a new user is refused as
    /// `user_cap` (dead-lettered, so it can be replayed after raising the cap) and the users
    /// held keep their state.
    #[arg(long, env = "CHURNGUARD_MAX_USERS_PER_PARTITION",
          default_value_t = churnguard::engine::DEFAULT_MAX_USERS,
          value_parser = clap::value_parser!(u64).range(1..=4_000_000_000).map(|n| n as usize))]
    pub max_users_per_partition: usize,
    /// Most event fingerprints the duplicate detector of one partition holds (~16 bytes each);
    /// when full it forgets its oldest first, shortening the dedupe horizon.
    #[arg(long, env = "CHURNGUARD_MAX_DEDUPE_ENTRIES",
          default_value_t = churnguard::dedupe::DEFAULT_MAX_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub max_dedupe_entries: usize,
    /// Users first seen less than this many days ago are `new`.
    #[arg(long, env = "CHURNGUARD_NEW_USER_DAYS", default_value_t = 14.0)]
    pub new_user_days: f64,
    /// Days without login or purchase after which a user is `at_risk`.
    #[arg(long, env = "CHURNGUARD_AT_RISK_DAYS", default_value_t = 14.0)]
    pub at_risk_days: f64,
    /// Days without login or purchase after which the grace window opens.
    #[arg(long, env = "CHURNGUARD_GRACE_START_DAYS", default_value_t = 30.0)]
    pub grace_start_days: f64,
    /// Length of the grace window (days); after it the user is `dormant`.
    #[arg(long, env = "CHURNGUARD_GRACE_DAYS", default_value_t = 14.0)]
    pub grace_days: f64,
    /// Days without login or purchase after which a user is `churned`.
    #[arg(long, env = "CHURNGUARD_CHURN_DAYS", default_value_t = 90.0)]
    pub churn_days: f64,
    /// Win-back policy file (TOML: risk bands, value tiers, actions, caps, control group,
    /// outcome window). Default: the embedded `deploy/policy/default.toml`.
    #[arg(long, env = "CHURNGUARD_POLICY")]
    pub policy: Option<PathBuf>,
}

impl EngineArgs {
    /// The engine configuration these flags describe, or why they are inconsistent.
    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let lifecycle = LifecycleConfig {
            new_user_days: self.new_user_days,
            at_risk_days: self.at_risk_days,
            grace_start_days: self.grace_start_days,
            grace_days: self.grace_days,
            churn_days: self.churn_days,
            ..LifecycleConfig::default()
        };
        lifecycle.validate()?;
        let policy = match &self.policy {
            Some(path) => Policy::load(path)?,
            None => Policy::default_embedded(),
        };
        Ok(EngineConfig {
            policy: std::sync::Arc::new(policy),
            allowed_lateness: hours(self.allowed_lateness_hours),
            rescore_interval: hours(self.rescore_interval_hours).max(60_000),
            rescore_after: (self.rescore_after_days.max(0.0) * DAY_MS as f64) as Millis,
            retention: (self.retention_days * DAY_MS as f64) as Millis,
            dedupe_horizon: (self.dedupe_horizon_minutes.max(0.0) * 60_000.0) as Millis,
            lifecycle,
            windows: self.window.windows,
            max_id_bytes: self.max_id_bytes,
            max_users: self.max_users_per_partition,
            max_dedupe_entries: self.max_dedupe_entries,
            ..EngineConfig::default()
        })
    }

    /// Maximum future skew in milliseconds.
    pub fn max_future_skew(&self) -> Millis {
        (self.max_future_skew_minutes * 60_000.0) as Millis
    }
}

fn hours(h: f64) -> Millis {
    (h * 3_600_000.0) as Millis
}

/// How many refused lines the offline tools accept before stopping.
#[derive(Debug, Clone, Args)]
pub struct RefusalArgs {
    /// Stop with an error when more than this fraction (0 to 1) of the history's records
    /// (non-blank lines, rows) is refused; a history without a single valid event always stops.
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction)]
    pub max_refused_fraction: f64,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{text:?} is not a fraction between 0 and 1"))
}

/// `--max-id-bytes`: at least one byte, at most 64 KiB (a changelog key must stay far below a
/// broker's message size).
fn max_id_bytes(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| format!("{text:?} is not a whole number of bytes from 1 to 65536"))
}
