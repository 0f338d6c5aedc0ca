//! Command-line and environment configuration: the clap definitions of every flag and the
//! conversions into the plain configuration types the library defines.
//!
//! Only the binary depends on clap; the library takes typed configurations (`DemoConfig`,
//! `EngineConfig`, `PipelineConfig`, ...), so tests and other programs build them directly.
//! Every `run` option is also an environment variable (`CHURNGUARD_*`), so the same binary is
//! configured by flags on a laptop and by a ConfigMap on Kubernetes. `deploy/churnguard.env.example`
//! lists them with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use super::demo::DemoArgs;
pub use super::engine_args::{EngineArgs, RefusalArgs, WindowArgs};
pub use super::input::{CheckMappingArgs, MappingArgs};
pub use super::score::ScoreArgs;

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
    /// Drive the engine from history files of events in event-time order; print alerts.
    Replay(ReplayArgs),
    /// Train a churn model from history files of events (same feature code as serving).
    Train(TrainArgs),
    /// Evaluate a model at cutoffs of history files of events: metrics table/JSON, plots.
    Evaluate(EvaluateArgs),
    /// Write every user's score, band, stage, tier, action and reasons at a date (JSONL/CSV).
    Score(ScoreArgs),
    /// Write a synthetic activity stream as JSONL (demo data, training data, load tests).
    Synth(SynthArgs),
    /// Produce a realistic activity stream to a Kafka topic (benchmarks, load tests).
    Loadgen(LoadgenArgs),
    /// Show what an event mapping makes of a sample of source events: each record's outcome
    /// and a histogram of events, ignored and refused records (exit 1 if most are refused).
    CheckMapping(CheckMappingArgs),
    /// Build the service's state from history files into the state changelog, so `run` starts
    /// warm and continues from the input topic's current end.
    Backfill(BackfillArgs),
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
    /// Topic for one outcome event per alert (won back or not within the policy's outcome
    /// window); empty = not published (the win-back metrics are kept either way).
    #[arg(long, env = "CHURNGUARD_OUTCOME_TOPIC", default_value = "")]
    pub outcome_topic: String,
    /// Compacted topic of the churn-risk table: each user's score, risk band, lifecycle stage,
    /// value tier and recommended action, written when one of them changes (key = user id; a
    /// tombstone when the user is erased or evicted). Created (compacted, the input's partition
    /// count) if missing. Empty = not kept.
    #[arg(long, env = "CHURNGUARD_SCORES_TOPIC", default_value = "")]
    pub scores_topic: String,
    /// Compacted topic holding each user's state, so a restarted instance or the instance that
    /// takes over a partition carries on where the last checkpoint left off. Created (with the
    /// input's partition count, `cleanup.policy=compact`) if missing. Empty = `<group>-state-changelog`;
    /// `off` = state in memory only (lost on restart).
    #[arg(long, env = "CHURNGUARD_CHANGELOG_TOPIC", default_value = "")]
    pub changelog_topic: String,
    /// Checkpoint this often (milliseconds): write changed users to the changelog, flush the
    /// producer, commit consumed offsets.
    #[arg(long, env = "CHURNGUARD_COMMIT_INTERVAL_MS", default_value_t = 2_000)]
    pub commit_interval_ms: u64,
    /// Consumer group session timeout (milliseconds).
    #[arg(long, env = "CHURNGUARD_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Longest time the broker may hold a fetch that has no new data (milliseconds).
    ///
    /// Apache Kafka answers a fetch as soon as data arrives, so there this only bounds idle
    /// polling. Some Kafka-compatible brokers hold every fetch for (half of) this time even when
    /// data is waiting (Tansu 0.6 does), which makes it a floor on alert latency there: the
    /// default (librdkafka's 500) costs ~250 ms per hop on Tansu, 10 costs ~10 ms. Lower is not
    /// free there either: with several group members at 50 ms, Tansu's SQLite engine fell behind
    /// on group requests (sessions timed out) in our fault tests.
    #[arg(long, env = "CHURNGUARD_FETCH_WAIT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub fetch_wait_ms: u64,
    /// Extra librdkafka settings as key=value (repeatable), e.g. security.protocol=ssl.
    #[arg(
        long = "kafka-option",
        env = "CHURNGUARD_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
    /// File of extra librdkafka settings, one key=value per line (`#` starts a comment): the
    /// place for secrets such as `sasl.password`, e.g. a mounted Kubernetes Secret, so they
    /// are neither on the command line (visible in `ps`) nor in the environment. Read once at
    /// start; `--kafka-option` wins over it. Values are never logged.
    #[arg(long, env = "CHURNGUARD_KAFKA_OPTION_FILE")]
    pub kafka_option_file: Option<PathBuf>,
}

impl KafkaArgs {
    /// The extra librdkafka settings: the option file's, then `--kafka-option`s (which win).
    /// Errors name the file, the line or the option's key, never a value.
    pub fn options(&self) -> Result<Vec<(String, String)>, String> {
        let mut options = match &self.kafka_option_file {
            Some(path) => churnguard::kafka::read_kafka_option_file(path)?,
            None => Vec::new(),
        };
        options.extend(churnguard::kafka::parse_kafka_options(&self.kafka_options)?);
        Ok(options)
    }

    /// The changelog topic to use, or `None` when durable state is off.
    pub fn changelog_topic(&self) -> Option<String> {
        match self.changelog_topic.trim() {
            "" => Some(format!("{}-state-changelog", self.group)),
            "off" | "none" => None,
            name => Some(name.to_string()),
        }
    }
}

/// `churnguard run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
    #[command(flatten)]
    pub api: super::api::ApiArgs,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "CHURNGUARD_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: SocketAddr,
    /// Model artifact to score with.
    #[arg(long, env = "CHURNGUARD_MODEL", default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    /// Check the model file for changes this often and reload it (seconds; 0 = only on
    /// SIGHUP). A changed time, size or content hash triggers a reload; an invalid artifact is
    /// refused and the loaded model stays.
    #[arg(long, env = "CHURNGUARD_MODEL_POLL_SECS", default_value_t = 10)]
    pub model_poll_secs: u64,
    /// On SIGTERM/SIGINT, give up flushing and committing after this many seconds.
    #[arg(long, env = "CHURNGUARD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// /healthz fails once this instance has owned no input partition for this many seconds
    /// while input waits that nobody consumes, so an orchestrator restarts it (0 = never).
    #[arg(
        long,
        env = "CHURNGUARD_UNASSIGNED_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub unassigned_timeout_secs: u64,
    /// Largest input message accepted (payload bytes); larger ones are refused as `too_large`
    /// before they are parsed, and dead-lettered (truncated, with size and hash, when even the
    /// copy is too large for the producer's message.max.bytes).
    #[arg(long, env = "CHURNGUARD_MAX_EVENT_BYTES",
          default_value_t = churnguard::event::DEFAULT_MAX_EVENT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824).map(|n| n as usize))]
    pub max_event_bytes: usize,
}

/// `churnguard replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// History files of events, any order, mixed formats: .jsonl, .json, .jsonl.gz, .csv, .csv.gz,
    /// .parquet (several after one flag, or the flag repeated).
    #[arg(long, num_args = 1.., required = true)]
    pub events: Vec<PathBuf>,
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
    #[command(flatten)]
    pub refusals: RefusalArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// `--kind` of `churnguard train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Logistic regression.
    Lr,
    /// Random-forest regressor on 0/1 labels.
    Forest,
    /// Gradient-boosted trees on logistic loss (churnguard's own fit and tree format).
    Gbm,
}

impl From<KindArg> for churnguard::model::Kind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Lr => churnguard::model::Kind::LogisticRegression,
            KindArg::Forest => churnguard::model::Kind::RandomForestRegressor,
            KindArg::Gbm => churnguard::model::Kind::GradientBoostedTrees,
        }
    }
}

/// `churnguard train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// History files of events, any order, mixed formats: .jsonl, .json, .jsonl.gz, .csv, .csv.gz,
    /// .parquet (several after one flag, or the flag repeated).
    #[arg(long, num_args = 1.., required = true)]
    pub events: Vec<PathBuf>,
    /// Label horizon in days: churned = no purchase and no login within it.
    #[arg(long, default_value_t = 90)]
    pub horizon_days: i64,
    /// Label horizon as a duration (`90d`, `13w`); overrides --horizon-days.
    #[arg(long, conflicts_with = "horizon_days")]
    pub horizon: Option<String>,
    /// Training cutoffs (RFC 3339 dates or instants, comma-separated); default: monthly.
    #[arg(long, value_delimiter = ',')]
    pub cutoffs: Vec<String>,
    /// Validation cutoff, then further out-of-time evaluation cutoffs, comma-separated, each
    /// `DATE` or `DATE@DURATION` (its label horizon); default: the last one the data covers.
    #[arg(long, value_delimiter = ',')]
    pub validate_at: Vec<String>,
    /// Label horizon of validation cutoffs given without `@DURATION` (default: --horizon).
    #[arg(long)]
    pub validation_horizon: Option<String>,
    /// Rows at a cutoff: users active within this duration before it, or `all` (default: the
    /// cutoff's horizon).
    #[arg(long)]
    pub active_within: Option<String>,
    /// Only these features (comma-separated names); default: all the engine computes.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Model kind.
    #[arg(long, value_enum, default_value_t = KindArg::Lr)]
    pub kind: KindArg,
    /// L2 regularisation strength (lr).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Spline knots per feature (lr; 0 = linear): hinge terms at training quantiles, stored
    /// in the artifact so serving applies the same curve.
    #[arg(long, default_value_t = 0)]
    pub spline_knots: usize,
    /// Fit BG/NBD (Fader, Hardie & Lee 2005) and add its P(alive) and expected purchases as
    /// model inputs (`bgnbd_p_alive`, `bgnbd_expected_purchases`); its parameters are stored in
    /// the artifact. Naming either input in --features turns this on too.
    #[arg(long)]
    pub bgnbd: bool,
    /// Horizon of `bgnbd_expected_purchases` (`13w`, `273d`; default: the label horizon).
    #[arg(long)]
    pub bgnbd_horizon: Option<String>,
    /// Fit BG/NBD on every user's features at this cutoff (no labels, so any cutoff up to the
    /// validation cutoff is honest; default: on the training rows).
    #[arg(long)]
    pub bgnbd_fit_at: Option<String>,
    /// Trees in the forest or the boosted ensemble (default: 100 for forest, 200 for gbm).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Maximum tree depth (default: 6 for forest, 3 for gbm).
    #[arg(long)]
    pub max_depth: Option<u16>,
    /// Minimum training rows in a leaf (forest, gbm).
    #[arg(long, default_value_t = 50)]
    pub min_samples_leaf: usize,
    /// Shrinkage of every boosted tree (gbm).
    #[arg(long, default_value_t = 0.1)]
    pub learning_rate: f64,
    /// L2 regularisation λ of the boosted leaf values (gbm).
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// Most histogram bins per input when searching splits (gbm, 2..=256).
    #[arg(long, default_value_t = 256)]
    pub max_bins: usize,
    /// Features tried per split (forest; default ⌊√features⌋).
    #[arg(long)]
    pub max_features: Option<usize>,
    /// Random seed (forest).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Choose the threshold for an alert budget: alert the top PCT % of users by risk (default:
    /// the threshold with the best F1 on the training rows).
    #[arg(long)]
    pub alert_budget: Option<f64>,
    /// Markdown appended to the model card (e.g. a comparison with published baselines).
    #[arg(long)]
    pub card_notes: Option<PathBuf>,
    /// Where to write the model artifact (a model card is written beside it as .md).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub refusals: RefusalArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// `churnguard evaluate`.
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// History files of events, any order, mixed formats: .jsonl, .json, .jsonl.gz, .csv, .csv.gz,
    /// .parquet (several after one flag, or the flag repeated).
    #[arg(long, num_args = 1.., required = true)]
    pub events: Vec<PathBuf>,
    /// Model artifact to evaluate.
    #[arg(long)]
    pub model: PathBuf,
    /// Cutoffs, comma-separated, each `DATE` or `DATE@DURATION` (its label horizon).
    #[arg(long, value_delimiter = ',', required = true)]
    pub cutoff: Vec<String>,
    /// Label horizon of cutoffs given without `@DURATION` (default: the model's validation
    /// horizon).
    #[arg(long)]
    pub horizon: Option<String>,
    /// Rows at a cutoff: users active within this before it, or `all` (default: as in training).
    #[arg(long)]
    pub active_within: Option<String>,
    /// Report precision and lift for these top-k % budgets.
    #[arg(long, value_delimiter = ',', default_values_t = [5.0, 10.0, 20.0, 30.0])]
    pub top_k: Vec<f64>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write ROC, PR, calibration, gains/lift and score-histogram SVGs into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub refusals: RefusalArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
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

/// `churnguard loadgen`: what to produce, where and how fast (see [`churnguard::loadgen`]).
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "CHURNGUARD_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to produce to (must exist).
    #[arg(long, default_value = "activity")]
    pub topic: String,
    /// Distinct users.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Events of the history phase (spread over --days of event time ending now).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Event-time span of the history phase.
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// History phase rate in events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Share of users who go silent for good partway through the history.
    #[arg(long, default_value_t = 0.25)]
    pub silent_share: f64,
    /// Share of events that arrive out of order (late by up to --jitter-ms).
    #[arg(long, default_value_t = 0.02)]
    pub late_share: f64,
    /// Largest lateness of an out-of-order event (milliseconds).
    #[arg(long, default_value_t = 600_000)]
    pub jitter_ms: i64,
    /// Share of deliberately broken messages (malformed JSON, missing user_id, unknown type).
    #[arg(long, default_value_t = 0.001)]
    pub bad_share: f64,
    /// Random seed (the same seed gives the same users and stream).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// After the history, produce live events (event time = produce time) for this long.
    #[arg(long, default_value_t = 0.0)]
    pub live_secs: f64,
    /// Live phase rate in events/s.
    #[arg(long, default_value_t = 20_000.0)]
    pub live_rate: f64,
    /// Plant this many due users (latency runs): silent users whose first alert comes due
    /// during the live phase.
    #[arg(long, default_value_t = 0)]
    pub due_users: usize,
    /// The due users' alerts start this long after the loadgen starts (seconds).
    #[arg(long, default_value_t = 20.0)]
    pub due_after_secs: f64,
    /// The due users' alerts are spread over this long (seconds).
    #[arg(long, default_value_t = 30.0)]
    pub due_window_secs: f64,
    /// Model used to find when a due user alerts (the one the service runs).
    #[arg(long, default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    /// Extra librdkafka producer settings as key=value (repeatable).
    #[arg(long = "kafka-option", value_delimiter = ',')]
    pub kafka_options: Vec<String>,
}

/// `churnguard backfill`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// History files of events, in any order. Together they must hold the input topic's events
    /// up to now: the service resumes at the topic's current end, so anything the topic holds
    /// but the files do not is never counted.
    #[arg(long, required = true, num_args = 1..)]
    pub events: Vec<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Model artifact the service scores with (what it decides in the history is state).
    #[arg(long, env = "CHURNGUARD_MODEL", default_value = "models/churn-lr.json")]
    pub model: PathBuf,
    /// How the input topic's producers choose a partition for a record keyed by user id:
    /// `murmur2` is the Java client's default (and librdkafka's `murmur2_random`),
    /// `consistent_random` is librdkafka's default (CRC-32; also `consistent`), `fnv1a` is
    /// librdkafka's `fnv1a`/`fnv1a_random` and Sarama's hash partitioner.
    #[arg(long, env = "CHURNGUARD_PARTITIONER", value_enum, default_value_t = PartitionerArg::Murmur2)]
    pub partitioner: PartitionerArg,
    /// Go on although the group has committed offsets (the state is rebuilt at them), the
    /// changelog topic has records (they are written over, not removed), or messages at the end
    /// of the input topic are not where --partitioner puts their keys.
    #[arg(long)]
    pub force: bool,
    /// Bound on each broker request and on the wait for the changelog's acknowledgements
    /// (seconds).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub refusals: RefusalArgs,
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// `--partitioner`, named as the producer's `partitioner` setting names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartitionerArg {
    #[value(name = "murmur2", alias = "murmur2_random")]
    Murmur2,
    #[value(name = "consistent_random", aliases = ["consistent", "crc32"])]
    ConsistentRandom,
    #[value(name = "fnv1a", alias = "fnv1a_random")]
    Fnv1a,
}

impl From<PartitionerArg> for churnguard::kafka::partitioner::Partitioner {
    fn from(arg: PartitionerArg) -> Self {
        use churnguard::kafka::partitioner::Partitioner;
        match arg {
            PartitionerArg::Murmur2 => Partitioner::Murmur2,
            PartitionerArg::ConsistentRandom => Partitioner::Crc32,
            PartitionerArg::Fnv1a => Partitioner::Fnv1a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use churnguard::features::Windows;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn windows_of(args: &[&str]) -> Result<Windows, clap::Error> {
        let cli = Cli::try_parse_from(
            ["churnguard", "replay", "--events", "e.jsonl"]
                .iter()
                .chain(args),
        )?;
        match cli.command {
            Command::Replay(r) => Ok(r.engine.window.windows),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn windows_parse_and_bad_ones_are_refused_with_the_rule() {
        assert_eq!(windows_of(&[]).unwrap(), Windows::default());
        assert_eq!(
            windows_of(&["--windows", "7,30,90,180"]).unwrap().days(),
            [7, 30, 90, 180]
        );
        assert_eq!(windows_of(&["--windows", "365"]).unwrap().days(), [365]);
        for (bad, says) in [
            ("", "no window"),
            ("7,30,90,180,365", "at most 4"),
            ("7,30,x", "\"x\" is not a whole number"),
            ("7,-30", "\"-30\" is not a whole number"),
            ("0,30", "0 days is outside 1..=365"),
            ("7,366", "366 days is outside"),
            ("30,7", "ascending and distinct: 30 is followed by 7"),
            ("7,7", "7 is followed by 7"),
        ] {
            let err = windows_of(&["--windows", bad]).unwrap_err().to_string();
            assert!(err.contains(says), "--windows {bad:?}: {err}");
        }
    }

    #[test]
    fn every_engine_command_takes_windows() {
        for args in [
            &["run", "--windows", "14,60"][..],
            &["replay", "--events", "e", "--windows", "14,60"],
            &["demo", "--windows", "14,60"],
            &[
                "train",
                "--events",
                "e",
                "--out",
                "m.json",
                "--windows",
                "14,60",
            ],
            &[
                "evaluate",
                "--events",
                "e",
                "--model",
                "m",
                "--cutoff",
                "2020-01-01",
                "--windows",
                "14,60",
            ],
            &["backfill", "--events", "e", "--windows", "14,60"],
            &[
                "score",
                "--events",
                "e",
                "--at",
                "2020-01-01",
                "--windows",
                "14,60",
            ],
        ] {
            let cli = Cli::try_parse_from(std::iter::once(&"churnguard").chain(args));
            let windows = match cli.map(|c| c.command) {
                Ok(Command::Run(a)) => a.engine.window.windows,
                Ok(Command::Replay(a)) => a.engine.window.windows,
                Ok(Command::Demo(a)) => a.window.windows,
                Ok(Command::Train(a)) => a.window.windows,
                Ok(Command::Evaluate(a)) => a.window.windows,
                Ok(Command::Backfill(a)) => a.engine.window.windows,
                Ok(Command::Score(a)) => a.engine.window.windows,
                other => panic!("{args:?}: {other:?}"),
            };
            assert_eq!(windows.days(), [14, 60], "{args:?}");
        }
    }

    /// `--partitioner` takes the names producers' `partitioner` setting uses; murmur2 by
    /// default; several history files.
    #[test]
    fn backfill_partitioner_names_and_files() {
        use churnguard::kafka::partitioner::Partitioner;
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(
                ["churnguard", "backfill", "--events", "a.jsonl", "b.jsonl"]
                    .iter()
                    .chain(extra),
            )?;
            match cli.command {
                Command::Backfill(b) => {
                    assert_eq!(b.events.len(), 2);
                    Ok::<_, clap::Error>(Partitioner::from(b.partitioner))
                }
                other => panic!("parsed as {other:?}"),
            }
        };
        assert_eq!(parse(&[]).unwrap(), Partitioner::Murmur2);
        for (name, expected) in [
            ("murmur2", Partitioner::Murmur2),
            ("murmur2_random", Partitioner::Murmur2),
            ("consistent_random", Partitioner::Crc32),
            ("consistent", Partitioner::Crc32),
            ("crc32", Partitioner::Crc32),
            ("fnv1a", Partitioner::Fnv1a),
            ("fnv1a_random", Partitioner::Fnv1a),
        ] {
            assert_eq!(parse(&["--partitioner", name]).unwrap(), expected, "{name}");
        }
        for arg in PartitionerArg::value_variants() {
            let value = arg.to_possible_value().expect("not skipped");
            assert_eq!(Partitioner::from(*arg).name(), value.get_name());
        }
        let err = parse(&["--partitioner", "random"]).unwrap_err().to_string();
        assert!(err.contains("murmur2"), "{err}");
    }
}
