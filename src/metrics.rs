//! Every metric churnguard exports, in one place (as Vector keeps its internal events), so names,
//! labels and help texts never drift between code, README catalogue and dashboards.
//!
//! Naming follows Prometheus practice: `churnguard_` prefix, base units (`_seconds`),
//! `_total` counters, bounded label sets; user ids never appear in labels.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alert::{Outcome, Trigger};
use crate::event::{EventKind, RejectReason};
use crate::policy::{ExperimentArm, Policy, RiskBand, SuppressReason, ValueTier};

/// The service's metrics, registered in their own registry.
pub struct Metrics {
    pub registry: Registry,
    pub build_info: IntGaugeVec,
    pub model_info: IntGaugeVec,
    pub model_threshold: Gauge,
    /// Hot reloads of the model file (SIGHUP or file change), by result (ok, error).
    pub model_reloads: IntCounterVec,
    pub events_consumed: IntCounterVec,
    pub events_rejected: IntCounterVec,
    /// Valid events that arrived without a message key.
    pub events_null_key: IntCounter,
    pub events_ignored: IntCounterVec,
    pub model_mapping_mismatch: IntGauge,
    pub dlq_published: IntCounter,
    /// Refused messages too large to dead-letter whole, sent as a prefix with size and hash.
    pub dlq_truncated: IntCounter,
    pub alerts_published: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub winback_outcomes: IntCounterVec,
    pub outcomes_pending: IntGauge,
    /// Churn-risk table records handed to the producer, by kind (row, tombstone).
    pub score_table_records: IntCounterVec,
    pub scores: IntCounterVec,
    pub score: Histogram,
    pub scoring_seconds: Histogram,
    pub event_processing_seconds: Histogram,
    pub users_tracked: IntGauge,
    pub users_evicted: IntCounter,
    pub users_erased: IntCounter,
    pub users_by_stage: IntGaugeVec,
    pub lifecycle_transitions: IntCounterVec,
    pub events_duplicate: IntCounter,
    pub dedupe_forgotten: IntCounter,
    pub partition_users_max: IntGauge,
    pub partition_user_cap: IntGauge,
    pub events_late: IntCounter,
    pub event_to_alert_seconds: Histogram,
    pub producer_queue: IntGauge,
    pub model_training_auc: Gauge,
    /// When the loaded model's training data ends: the age of what it learned from.
    pub model_data_end: Gauge,
    pub watermark_seconds: Gauge,
    pub producer_delivery_errors: IntCounterVec,
    pub commits: IntCounterVec,
    pub ready: IntGauge,
    pub assigned_partitions: IntGauge,
    pub consumer_lag: IntGaugeVec,
    /// Changelog records read while restoring, by what became of them (applied, deleted,
    /// ignored past the committed offset, corrupt).
    pub restore_records: IntCounterVec,
    /// Changelog records still to read in the restores under way (restore lag).
    pub restore_remaining: IntGauge,
    /// Input partitions whose state is being restored (the service is not ready meanwhile).
    pub restoring_partitions: IntGauge,
    pub restore_seconds: Histogram,
    /// Changelog records written at checkpoints, by kind (upsert, delete).
    pub changelog_records: IntCounterVec,
    pub checkpoint_seconds: Histogram,
    /// Pipelines replaced after a transient failure (the process stays up).
    pub pipeline_restarts: IntCounter,
    /// Times this member left and rejoined its group because it owned nothing while input
    /// waited unconsumed.
    pub group_rejoins: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric, pre-populating label values so dashboards show zeros
    /// rather than "no data" before the first occurrence.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("metric registered once");
            h
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g =
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let latency = vec![
            0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05,
            0.1,
        ];

        let m = Metrics {
            build_info: gauge_vec("churnguard_build_info", "Build information; always 1.", &["version"]),
            model_info: gauge_vec(
                "churnguard_model_info",
                "The model in use; always 1 for the loaded version.",
                &["model_version", "kind"],
            ),
            model_threshold: gauge("churnguard_model_threshold", "Alert threshold of the loaded model (probability)."),
            model_reloads: counter_vec(
                "churnguard_model_reloads_total",
                "Model file reloads (SIGHUP or file change), by result; on error the loaded model stays.",
                &["result"],
            ),
            events_consumed: counter_vec(
                "churnguard_events_consumed_total",
                "Valid events folded into user state, by event type.",
                &["type"],
            ),
            events_rejected: counter_vec(
                "churnguard_events_rejected_total",
                "Input messages refused and sent to the dead-letter topic, by reason.",
                &["reason"],
            ),
            events_ignored: counter_vec(
                "churnguard_events_ignored_total",
                "Input messages the event mapping declares as carrying no signal (counted, not dead-lettered), by the mapping entry that matched, `unknown` or `anonymous`.",
                &["source_type"],
            ),
            model_mapping_mismatch: int_gauge(
                "churnguard_model_mapping_mismatch",
                "1 when the model was trained on events read through another event mapping than the one this service decodes with (its scores may not mean what they did in training).",
            ),
            events_null_key: counter(
                "churnguard_events_null_key_total",
                "Valid events that arrived without a message key (accepted; a producer spreads keyless messages over partitions, so one user's events may be tracked apart).",
            ),
            dlq_published: counter("churnguard_dlq_published_total", "Messages handed to the dead-letter topic producer."),
            dlq_truncated: counter(
                "churnguard_dlq_truncated_total",
                "Refused messages whose copy exceeded the producer's message.max.bytes, dead-lettered as a prefix with their size and SHA-256 (reason too_large).",
            ),
            alerts_published: counter_vec(
                "churnguard_alerts_published_total",
                "Win-back alerts handed to the producer, by what triggered the scoring, risk band, value tier, recommended action and experiment arm (control alerts included: they measure the uplift).",
                &["trigger", "risk_band", "value_tier", "action", "arm"],
            ),
            winback_outcomes: counter_vec(
                "churnguard_winback_outcomes_total",
                "Alerts whose outcome window closed, by experiment arm and outcome (won_back = a login or purchase inside the window).",
                &["arm", "outcome"],
            ),
            outcomes_pending: int_gauge(
                "churnguard_outcomes_pending",
                "Alerts whose outcome window is still open.",
            ),
            score_table_records: counter_vec(
                "churnguard_score_table_records_total",
                "Churn-risk table records handed to the producer (--scores-topic), by kind (row = a user's band, stage, tier or action changed at a scoring; tombstone = the user was erased or evicted).",
                &["kind"],
            ),
            alerts_suppressed: counter_vec(
                "churnguard_alerts_suppressed_total",
                "Scores at or above threshold that raised no alert, by reason.",
                &["reason"],
            ),
            scores: counter_vec(
                "churnguard_scores_total",
                "Users scored, by trigger (event = an event arrived, timer = inactivity deadline).",
                &["trigger"],
            ),
            score: histogram(
                "churnguard_churn_score",
                "Distribution of churn probabilities computed.",
                                // Most users are far from churning: resolve the low end and the usual threshold
                // region rather than ten equal slices.
                vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0],
            ),
            scoring_seconds: histogram(
                "churnguard_scoring_duration_seconds",
                "Time to fold one event into its user's state and score the user.",
                latency.clone(),
            ),
            event_processing_seconds: histogram(
                "churnguard_event_processing_duration_seconds",
                "Time from receiving a message to handing its effects to the producer.",
                latency,
            ),
            users_tracked: int_gauge("churnguard_users_tracked", "Users whose state is held in memory."),
            users_evicted: counter("churnguard_users_evicted_total", "Users dropped after the retention horizon."),
                        users_erased: counter("churnguard_users_erased_total", "Users whose state was deleted on an erase request."),
            users_by_stage: gauge_vec(
                "churnguard_users_by_lifecycle_state",
                "Users in memory per lifecycle stage.",
                &["state"],
            ),
            lifecycle_transitions: counter_vec(
                "churnguard_lifecycle_transitions_total",
                "Users moving from one lifecycle stage to another.",
                &["from", "to"],
            ),
            events_duplicate: counter(
                "churnguard_events_duplicate_total",
                "Events whose event_id was already applied within the dedupe horizon; they change nothing.",
            ),
            dedupe_forgotten: counter(
                "churnguard_dedupe_forgotten_total",
                "Event fingerprints the duplicate detector forgot before their horizon because it held --max-dedupe-entries: redeliveries of those events are no longer recognised.",
            ),
            partition_users_max: int_gauge(
                "churnguard_partition_users_max",
                "Users held by the fullest input partition of this instance.",
            ),
            partition_user_cap: int_gauge(
                "churnguard_partition_user_cap",
                "Most users one input partition may hold (--max-users-per-partition); events of new users beyond it are refused as user_cap.",
            ),
            events_late: counter(
                "churnguard_events_late_total",
                "Events accepted although older than the event-time clock (within the allowed lateness).",
            ),
            event_to_alert_seconds: histogram(
                "churnguard_event_to_alert_seconds",
                "Wall time from the event time of the decision to handing the alert to the producer.",
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0],
            ),
            producer_queue: int_gauge(
                "churnguard_producer_queue_messages",
                "Messages enqueued in the producer and not yet acknowledged by the broker.",
            ),
            model_training_auc: gauge(
                "churnguard_model_training_auc",
                "Validation ROC AUC recorded in the loaded model artifact at training time.",
            ),
            model_data_end: gauge(
                "churnguard_model_data_end_timestamp_seconds",
                "Event time of the last event in the loaded model's training data (Unix seconds); time() minus this is how stale the model is.",
            ),
            watermark_seconds: gauge(
                "churnguard_event_time_watermark_seconds",
                "The event-time clock of the slowest assigned partition, as Unix seconds (each partition keeps its own).",
            ),
            producer_delivery_errors: counter_vec(
                "churnguard_producer_delivery_errors_total",
                "Messages the producer failed to deliver, by destination.",
                &["destination"],
            ),
            commits: counter_vec(
                "churnguard_offset_commits_total",
                "Offset commits after a producer flush, by result.",
                &["result"],
            ),
            ready: int_gauge("churnguard_ready", "1 when the service is consuming with partitions assigned."),
            assigned_partitions: int_gauge("churnguard_assigned_partitions", "Input partitions assigned to this instance."),
            consumer_lag: gauge_vec(
                "churnguard_consumer_lag_messages",
                "Messages between this instance's position and the high watermark, per input partition.",
                &["partition"],
            ),
            restore_records: counter_vec(
                "churnguard_restore_records_total",
                "Changelog records read while restoring partition state, by result (applied, deleted, ignored = past the committed input offset, corrupt).",
                &["result"],
            ),
            restore_remaining: int_gauge(
                "churnguard_restore_remaining_records",
                "Changelog records still to read by the partition restores under way (0 when none).",
            ),
            restoring_partitions: int_gauge(
                "churnguard_restoring_partitions",
                "Input partitions whose state is being restored from the changelog.",
            ),
            restore_seconds: histogram(
                "churnguard_restore_duration_seconds",
                "Time to restore one input partition's state from the changelog.",
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            changelog_records: counter_vec(
                "churnguard_changelog_records_total",
                "State changelog records written at checkpoints, by kind (upsert = a user's new state, delete = tombstone of an erased or evicted user).",
                &["kind"],
            ),
            checkpoint_seconds: histogram(
                "churnguard_checkpoint_duration_seconds",
                "Checkpoint time: changelog records written, producer flushed, offsets committed.",
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0],
            ),
            pipeline_restarts: counter(
                "churnguard_pipeline_restarts_total",
                "Pipelines replaced by a fresh one (new clients, state restored from the last checkpoint) after a transient failure such as a delivery the broker failed.",
            ),
            group_rejoins: counter(
                "churnguard_group_rejoins_total",
                "Times this instance left and rejoined the consumer group because it owned no partition while input waited that nobody consumed.",
            ),
            registry,
        };
        for r in RestoreRecord::ALL {
            m.restore_records.with_label_values(&[r.as_str()]);
        }
        for k in ChangelogWrite::ALL {
            m.changelog_records.with_label_values(&[k.as_str()]);
        }
        for k in ScoreTableRecord::ALL {
            m.score_table_records.with_label_values(&[k.as_str()]);
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for k in EventKind::ALL {
            m.events_consumed.with_label_values(&[k.as_str()]);
        }
        for r in RejectReason::ALL {
            m.events_rejected.with_label_values(&[r.as_str()]);
        }
        for t in [Trigger::Event, Trigger::Timer] {
            m.scores.with_label_values(&[t.as_str()]);
        }
        m.register_policy(&Policy::default_embedded());
        for r in [Suppression::AlreadyAlerted, Suppression::OptedOut]
            .into_iter()
            .chain(SuppressReason::ALL.iter().map(|r| Suppression::Policy(*r)))
        {
            m.alerts_suppressed.with_label_values(&[r.as_str()]);
        }
        for arm in ExperimentArm::ALL {
            for o in [Outcome::WonBack, Outcome::NotReturned] {
                m.winback_outcomes
                    .with_label_values(&[arm.as_str(), o.as_str()]);
            }
        }
        for d in Destination::ALL {
            m.producer_delivery_errors.with_label_values(&[d.as_str()]);
        }
        for r in CommitResult::ALL {
            m.commits.with_label_values(&[r.as_str()]);
        }
        for r in ["ok", "error"] {
            m.model_reloads.with_label_values(&[r]);
        }
        for s in crate::features::Stage::ALL {
            m.users_by_stage.with_label_values(&[s.as_str()]).set(0);
            for t in crate::features::Stage::ALL.iter().filter(|t| **t != s) {
                m.lifecycle_transitions
                    .with_label_values(&[s.as_str(), t.as_str()]);
            }
        }
        m
    }

    /// Pre-creates the alert series of every (trigger, band, tier, action, arm) the policy can
    /// produce, so dashboards show zeros instead of gaps (at most 2 × 4 × 4 × rules × 2 series).
    pub fn register_policy(&self, policy: &Policy) {
        for t in [Trigger::Event, Trigger::Timer] {
            for band in RiskBand::ALL {
                for tier in ValueTier::ALL {
                    for rule in policy.rules() {
                        for arm in ExperimentArm::ALL {
                            self.alerts_published.with_label_values(&[
                                t.as_str(),
                                band.as_str(),
                                tier.as_str(),
                                &rule.action,
                                arm.as_str(),
                            ]);
                        }
                    }
                }
            }
        }
    }

    /// Marks `version` as the loaded model (and clears the previous one).
    pub fn set_model(&self, version: &str, kind: &str, threshold: f64) {
        self.model_info.reset();
        self.model_info.with_label_values(&[version, kind]).set(1);
        self.model_threshold.set(threshold);
    }

    /// Input messages handled so far: consumed plus rejected (demo progress, tests).
    pub fn messages_handled(&self) -> u64 {
        let sum = |v: &IntCounterVec| -> u64 {
            v.collect()
                .iter()
                .flat_map(|mf| mf.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        sum(&self.events_consumed) + sum(&self.events_rejected)
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Where a produced message was going (`producer_delivery_errors` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Alert,
    DeadLetter,
    Outcome,
    Changelog,
    /// The churn-risk table (`--scores-topic`).
    Score,
}

impl Destination {
    pub const ALL: [Destination; 5] = [
        Destination::Alert,
        Destination::DeadLetter,
        Destination::Outcome,
        Destination::Changelog,
        Destination::Score,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Alert => "alert",
            Destination::DeadLetter => "dlq",
            Destination::Outcome => "outcome",
            Destination::Changelog => "changelog",
            Destination::Score => "score",
        }
    }
}

/// What became of an offset commit (`offset_commits` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitResult {
    /// Offsets handed to the group coordinator.
    Ok,
    /// The commit call failed; the next checkpoint retries.
    Error,
    /// Not attempted: something the offsets would cover is not (known to be) delivered.
    Skipped,
}

impl CommitResult {
    pub const ALL: [CommitResult; 3] =
        [CommitResult::Ok, CommitResult::Error, CommitResult::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            CommitResult::Ok => "ok",
            CommitResult::Error => "error",
            CommitResult::Skipped => "skipped",
        }
    }
}

/// A changelog record written at a checkpoint (`changelog_records` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangelogWrite {
    Upsert,
    Delete,
}

impl ChangelogWrite {
    pub const ALL: [ChangelogWrite; 2] = [ChangelogWrite::Upsert, ChangelogWrite::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangelogWrite::Upsert => "upsert",
            ChangelogWrite::Delete => "delete",
        }
    }
}

/// A churn-risk table record published (`score_table_records` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreTableRecord {
    Row,
    Tombstone,
}

impl ScoreTableRecord {
    pub const ALL: [ScoreTableRecord; 2] = [ScoreTableRecord::Row, ScoreTableRecord::Tombstone];

    pub fn as_str(self) -> &'static str {
        match self {
            ScoreTableRecord::Row => "row",
            ScoreTableRecord::Tombstone => "tombstone",
        }
    }
}

/// What became of a changelog record read by a restore (`restore_records` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreRecord {
    Applied,
    Deleted,
    /// Past the committed input offset: its events are consumed again.
    Ignored,
    Corrupt,
}

impl RestoreRecord {
    pub const ALL: [RestoreRecord; 4] = [
        RestoreRecord::Applied,
        RestoreRecord::Deleted,
        RestoreRecord::Ignored,
        RestoreRecord::Corrupt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestoreRecord::Applied => "applied",
            RestoreRecord::Deleted => "deleted",
            RestoreRecord::Ignored => "ignored",
            RestoreRecord::Corrupt => "corrupt",
        }
    }
}

/// Why a score above the threshold raised no alert (`alerts_suppressed` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    AlreadyAlerted,
    OptedOut,
    Policy(SuppressReason),
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::AlreadyAlerted => "already_alerted",
            Suppression::OptedOut => "opted_out",
            Suppression::Policy(reason) => reason.as_str(),
        }
    }
}

/// The lookup API's metrics, registered in the service's registry when the API is on.
#[derive(Clone)]
pub struct ApiMetrics {
    /// Requests by route (`user`, `export`, `other`) and HTTP status.
    pub requests: IntCounterVec,
    /// Time to answer, by route.
    pub request_seconds: HistogramVec,
    /// Lookups asked of another member, by result (`found`, `not_here`, `unavailable`,
    /// `error`).
    pub forwards: IntCounterVec,
    /// Right-of-access exports, by token id and HTTP status.
    pub exports: IntCounterVec,
}

impl ApiMetrics {
    pub fn register(registry: &Registry) -> ApiMetrics {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let c =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "churnguard_api_request_seconds",
                "Time to answer a lookup API request, forwarding included",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("metric registered once");
        ApiMetrics {
            requests: vec(
                "churnguard_api_requests_total",
                "Lookup API requests by route and HTTP status",
                &["route", "status"],
            ),
            request_seconds,
            forwards: vec(
                "churnguard_api_forwards_total",
                "Lookups asked of another member of the group, by result",
                &["result"],
            ),
            exports: vec(
                "churnguard_api_exports_total",
                "Right-of-access exports of a user's data, by token id and HTTP status",
                &["token_id", "status"],
            ),
        }
    }

    /// Counts and times one answered request.
    pub fn observe(&self, route: &str, status: u16, took: std::time::Duration) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// Counts one export.
    pub fn export(&self, token_id: &str, status: u16) {
        self.exports
            .with_label_values(&[token_id, &status.to_string()])
            .inc();
    }

    /// Counts one lookup asked of another member.
    pub fn forward(&self, result: &str) {
        self.forwards.with_label_values(&[result]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_the_prefix_and_zeroed_labels() {
        let m = Metrics::new();
        let text = m.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("churnguard_"), "{line}");
        }
        assert!(text.contains(r#"churnguard_events_rejected_total{reason="too_late"} 0"#));
        assert!(text.contains(r#"churnguard_events_consumed_total{type="purchase"} 0"#));
    }
}
