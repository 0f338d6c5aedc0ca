//! Command-line and environment configuration.
//!
//! Every `run` option is also an environment variable (`CHURNGUARD_*`), so the same binary is
//! configured by flags on a laptop and by a ConfigMap on Kubernetes. `deploy/churnguard.env.example`
//! lists them with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::EngineConfig;
use crate::{Millis, DAY_MS};

/// churnguard: streaming churn-risk scoring and win-back alerts over Kafka.
#[derive(Debug, Parser)]
#[command(name = "churnguard", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands: the service, its embedded demo, and the offline tools that share its engine.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service against a Kafka cluster.
    Run(RunArgs),
    /// Run the whole service in-process on an embedded broker with a synthetic activity stream.
    Demo(DemoArgs),
    /// Drive the engine from a JSONL file of events in event-time order; print alerts.
    Replay(ReplayArgs),
    /// Train a churn model from a JSONL file of events (same feature code as serving).
    Train(TrainArgs),
    /// Write a synthetic activity stream as JSONL (demo data, training data, load tests).
    Synth(SynthArgs),
}

/// Log output options.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, env = "CHURNGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Kafka connection and topics.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "CHURNGUARD_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Consumer group id; instances sharing it split the input partitions.
    #[arg(long, env = "CHURNGUARD_GROUP", default_value = "churnguard")]
    pub group: String,
    /// Topic of activity events (JSON, keyed by user id).
    #[arg(long, env = "CHURNGUARD_INPUT_TOPIC", default_value = "activity")]
    pub input_topic: String,
    /// Topic win-back alerts are published to (JSON, keyed by user id).
    #[arg(long, env = "CHURNGUARD_ALERT_TOPIC", default_value = "winback-alerts")]
    pub alert_topic: String,
    /// Dead-letter topic for refused input (original bytes, reason in headers).
    #[arg(long, env = "CHURNGUARD_DLQ_TOPIC", default_value = "activity-dlq")]
    pub dlq_topic: String,
    /// Flush the producer and commit consumed offsets this often (milliseconds).
    #[arg(long, env = "CHURNGUARD_COMMIT_INTERVAL_MS", default_value_t = 2_000)]
    pub commit_interval_ms: u64,
    /// Consumer group session timeout (milliseconds).
    #[arg(long, env = "CHURNGUARD_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Extra librdkafka settings as key=value (repeatable), e.g. security.protocol=ssl.
    #[arg(
        long = "kafka-option",
        env = "CHURNGUARD_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
}

/// Engine tunables (event time).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
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
    /// Users silent for longer than this are dropped from memory (days).
    #[arg(long, env = "CHURNGUARD_RETENTION_DAYS", default_value_t = 400.0)]
    pub retention_days: f64,
}

impl EngineArgs {
    /// The engine configuration these flags describe.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            allowed_lateness: hours(self.allowed_lateness_hours),
            rescore_interval: hours(self.rescore_interval_hours).max(60_000),
            retention: (self.retention_days * DAY_MS as f64) as Millis,
            ..EngineConfig::default()
        }
    }

    /// Maximum future skew in milliseconds.
    pub fn max_future_skew(&self) -> Millis {
        (self.max_future_skew_minutes * 60_000.0) as Millis
    }
}

fn hours(h: f64) -> Millis {
    (h * 3_600_000.0) as Millis
}

/// `churnguard run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "CHURNGUARD_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: SocketAddr,
    /// Model artifact to score with.
    #[arg(long, env = "CHURNGUARD_MODEL", default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    /// On SIGTERM/SIGINT, give up flushing and committing after this many seconds.
    #[arg(long, env = "CHURNGUARD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
}

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
    /// Alerts printed in full; the rest are summarised.
    #[arg(long, default_value_t = 10)]
    pub print_alerts: usize,
    /// Random seed of the synthetic stream.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// `churnguard replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// JSONL file of events (one event per line, any order).
    #[arg(long)]
    pub events: PathBuf,
    /// Model artifact to score with.
    #[arg(long, default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Keep the clock running to this RFC 3339 instant after the last event, so silent users
    /// at the end of the file are scored too (default: the last event's time).
    #[arg(long)]
    pub until: Option<String>,
    /// Write every user's features at the end as JSONL to this file.
    #[arg(long)]
    pub features_out: Option<PathBuf>,
}

/// `churnguard train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// JSONL file of events.
    #[arg(long)]
    pub events: PathBuf,
    /// Label horizon in days: churned = no purchase and no login within it.
    #[arg(long, default_value_t = 90)]
    pub horizon_days: i64,
    /// Training cutoffs (RFC 3339 dates or instants, comma-separated); default: monthly.
    #[arg(long, value_delimiter = ',')]
    pub cutoffs: Vec<String>,
    /// Validation cutoff; default: the last one the data's horizon covers.
    #[arg(long)]
    pub validate_at: Option<String>,
    /// L2 regularisation strength.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Where to write the model artifact (a model card is written beside it as .md).
    #[arg(long)]
    pub out: PathBuf,
}

/// `churnguard synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// End of the history, RFC 3339 (default: a fixed date, so output is reproducible).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub end: String,
    #[arg(long, default_value_t = 0.3)]
    pub churn_share: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output file (JSONL).
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses an RFC 3339 instant or a plain `YYYY-MM-DD` date (midnight UTC).
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp_millis())
        })
        .map_err(|_| format!("{text:?} is neither an RFC 3339 instant nor a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn instants_and_dates_parse() {
        assert_eq!(parse_instant("1970-01-02"), Ok(DAY_MS));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Ok(1_000));
        assert!(parse_instant("soon").is_err());
    }
}
