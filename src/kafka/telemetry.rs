//! What the Kafka adapter reports, as named events.
//!
//! Each struct here is one thing that happened (an event refused, an alert published, a commit
//! attempted…) and knows which metrics and log lines it produces; the pipeline only says what
//! happened. This keeps metric translation out of the data flow and every label a closed set:
//! labels come from enums with `as_str` (see [`crate::metrics`]), never from loose strings.
//! Modelled on Vector's `internal_events`.

use rdkafka::error::KafkaError;

use crate::alert::{AlertDecision, OutcomeEvent, WinbackAlert};
use crate::engine::{EngineCounters, Scored, TableChange};
use crate::event::{EventKind, Rejection};
use crate::features::{StageStats, StageTransitions};
use crate::metrics::{
    ChangelogWrite, CommitResult, Destination, Metrics, RestoreRecord, ScoreTableRecord,
    Suppression,
};
use crate::model::Model;
use crate::Millis;

/// Something that happened, reported to the metrics (and, where useful, the log).
pub trait Emit {
    fn emit(self, metrics: &Metrics);
}

fn wall_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// The model the pipeline scores with: version and kind (`model_info`), threshold, and the
/// validation AUC and data end recorded at training time.
pub struct ModelInUse<'a>(pub &'a Model);

impl Emit for ModelInUse<'_> {
    fn emit(self, metrics: &Metrics) {
        let model = self.0;
        metrics.set_model(
            model.version(),
            model.artifact().kind.as_str(),
            model.threshold(),
        );
        let training = &model.artifact().training;
        if let Some(auc) = training
            .metrics
            .as_ref()
            .and_then(|m| m.validation.as_ref())
            .and_then(|v| v.roc_auc)
        {
            metrics.model_training_auc.set(auc);
        }
        if let Some(end) = training
            .data
            .as_ref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d.last_event).ok())
        {
            metrics
                .model_data_end
                .set(end.timestamp_millis() as f64 / 1000.0);
        }
    }
}

/// A valid event folded into its user's state.
pub struct EventApplied {
    pub kind: EventKind,
    /// The event erased its user.
    pub erased: bool,
    /// The message had no key.
    pub null_key: bool,
}

impl Emit for EventApplied {
    fn emit(self, metrics: &Metrics) {
        metrics
            .events_consumed
            .with_label_values(&[self.kind.as_str()])
            .inc();
        if self.erased {
            metrics.users_erased.inc();
        }
        if self.null_key {
            metrics.events_null_key.inc();
        }
    }
}

/// An input message the event mapping declares as carrying no signal.
pub struct EventIgnored<'a> {
    /// The mapping entry that matched, `unknown` or `anonymous` (bounded by the mapping).
    pub source_type: &'a str,
}

impl Emit for EventIgnored<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .events_ignored
            .with_label_values(&[self.source_type])
            .inc();
    }
}

/// Whether the model was trained on events read through the mapping the service decodes with.
pub struct MappingInUse<'a> {
    pub model: &'a Model,
    /// The service's mapping fingerprint (`None`: the native schema).
    pub service: Option<&'a str>,
}

impl Emit for MappingInUse<'_> {
    fn emit(self, metrics: &Metrics) {
        let trained = self.model.artifact().training.event_mapping.as_deref();
        let matches = trained == self.service;
        metrics.model_mapping_mismatch.set(i64::from(!matches));
        if !matches {
            tracing::warn!(
                model = self.model.version(),
                trained_with = trained.unwrap_or("native schema"),
                serving_with = self.service.unwrap_or("native schema"),
                "the model was trained on events read through another event mapping: its \
                 scores may not mean what they did in training (churnguard_model_mapping_mismatch)"
            );
        }
    }
}

/// Watches the first messages a process reads: when most are refused, the event mapping (or
/// the producer) is likely wrong, and that should be loud at once, not a slow DLQ surprise.
#[derive(Debug, Default)]
pub struct RefusalWatch {
    seen: u64,
    refused: u64,
}

impl RefusalWatch {
    /// Messages looked at before judging.
    pub const FIRST: u64 = 1_000;

    /// Records one message; logs a warning once, when the first [`Self::FIRST`] are in and
    /// more than half of them were refused.
    pub fn record(&mut self, refused: bool, mapping: Option<&str>) {
        if self.seen >= Self::FIRST {
            return;
        }
        self.seen += 1;
        self.refused += u64::from(refused);
        if self.seen == Self::FIRST && self.refused * 2 > self.seen {
            tracing::warn!(
                refused = self.refused,
                of = self.seen,
                event_mapping = mapping.unwrap_or("native schema"),
                "most of the first messages were refused: check the event mapping (field paths, \
                 type names, time format) with `churnguard check-mapping`, and the DLQ's reasons"
            );
        }
    }

    /// Whether the warning condition holds (for tests).
    pub fn warned(&self) -> bool {
        self.seen >= Self::FIRST && self.refused * 2 > self.seen
    }
}

/// An input message refused (it goes to the dead-letter topic).
pub struct EventRejected<'a> {
    pub rejection: &'a Rejection,
    pub partition: i32,
    pub offset: i64,
}

impl Emit for EventRejected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .events_rejected
            .with_label_values(&[self.rejection.reason.as_str()])
            .inc();
        tracing::debug!(
            reason = self.rejection.reason.as_str(), detail = %self.rejection.detail,
            partition = self.partition, offset = self.offset, "event rejected to DLQ"
        );
    }
}

/// How a refused message went to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    Whole,
    /// Too large to copy whole: a prefix went, with the original's size and hash.
    Truncated {
        original_size: usize,
        sha256: String,
    },
}

/// A refused message handed to the producer for the dead-letter topic.
pub struct DeadLettered<'a> {
    pub how: &'a DeadLetter,
    pub partition: i32,
    pub offset: i64,
}

impl Emit for DeadLettered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.dlq_published.inc();
        if let DeadLetter::Truncated {
            original_size,
            sha256,
        } = self.how
        {
            metrics.dlq_truncated.inc();
            tracing::warn!(
                partition = self.partition,
                offset = self.offset,
                original_size,
                sha256 = %sha256,
                "refused message too large to dead-letter whole; its prefix went to the DLQ (reason too_large)"
            );
        }
    }
}

/// A user scored (on an event or a timer), with the alert decision.
pub struct UserScored<'a>(pub &'a Scored);

impl Emit for UserScored<'_> {
    fn emit(self, metrics: &Metrics) {
        let s = self.0;
        metrics
            .scores
            .with_label_values(&[s.trigger.as_str()])
            .inc();
        metrics.score.observe(s.score);
        let suppression = match s.decision {
            AlertDecision::AlreadyAlerted => Some(Suppression::AlreadyAlerted),
            AlertDecision::OptedOut => Some(Suppression::OptedOut),
            AlertDecision::Suppressed(reason) => Some(Suppression::Policy(reason)),
            AlertDecision::Raise | AlertDecision::BelowThreshold => None,
        };
        if let Some(suppression) = suppression {
            metrics
                .alerts_suppressed
                .with_label_values(&[suppression.as_str()])
                .inc();
        }
    }
}

/// A win-back alert handed to the producer.
pub struct AlertPublished<'a> {
    pub scored: &'a Scored,
    pub alert: &'a WinbackAlert,
}

impl Emit for AlertPublished<'_> {
    fn emit(self, metrics: &Metrics) {
        let (a, trigger) = (self.alert, self.scored.trigger);
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&a.ts) {
            let delay = (wall_now() - t.timestamp_millis()).max(0) as f64 / 1000.0;
            metrics.event_to_alert_seconds.observe(delay);
        }
        // The action is a label of the loaded policy, a closed set registered at start
        // (`Metrics::register_policy`).
        metrics
            .alerts_published
            .with_label_values(&[
                trigger.as_str(),
                a.risk_band.as_str(),
                a.value_tier.as_str(),
                &a.recommended_action,
                a.experiment_arm.as_str(),
            ])
            .inc();
        tracing::info!(
            alert_id = %a.alert_id, user_id = %a.user_id, score = a.score,
            trigger = trigger.as_str(), risk_band = a.risk_band.as_str(),
            action = %a.recommended_action, arm = a.experiment_arm.as_str(),
            last_activity_at = %a.last_activity_at, "win-back alert"
        );
    }
}

/// A win-back outcome decided (and published if an outcome topic is set).
pub struct OutcomeDecided<'a>(pub &'a OutcomeEvent);

impl Emit for OutcomeDecided<'_> {
    fn emit(self, metrics: &Metrics) {
        let o = self.0;
        metrics
            .winback_outcomes
            .with_label_values(&[o.experiment_arm.as_str(), o.outcome.as_str()])
            .inc();
        tracing::info!(
            alert_id = %o.alert_id, user_id = %o.user_id, arm = o.experiment_arm.as_str(),
            outcome = o.outcome.as_str(), "win-back outcome"
        );
    }
}

/// A churn-risk table record handed to the producer.
pub struct ScoreTablePublished<'a>(pub &'a TableChange);

impl Emit for ScoreTablePublished<'_> {
    fn emit(self, metrics: &Metrics) {
        let kind = match self.0 {
            TableChange::Row(r) => {
                tracing::debug!(
                    user_id = %r.user_id, risk_band = r.risk_band.as_str(),
                    stage = r.lifecycle_stage.as_str(), value_tier = r.value_tier.as_str(),
                    action = %r.recommended_action, "churn-risk table row"
                );
                ScoreTableRecord::Row
            }
            TableChange::Tombstone { user_id } => {
                tracing::debug!(user_id = %user_id, "churn-risk table tombstone");
                ScoreTableRecord::Tombstone
            }
        };
        metrics
            .score_table_records
            .with_label_values(&[kind.as_str()])
            .inc();
    }
}

/// A message the broker failed to take for good.
pub struct DeliveryFailed<'a> {
    pub destination: Destination,
    pub error: &'a KafkaError,
    /// Purged from the queue of a producer being dropped: logged once for all of them
    /// ([`PurgedAtClose`]), since at exit with the broker down there can be thousands.
    pub purged: bool,
}

impl Emit for DeliveryFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .producer_delivery_errors
            .with_label_values(&[self.destination.as_str()])
            .inc();
        if !self.purged {
            tracing::error!(error = %self.error, destination = self.destination.as_str(), "message delivery failed");
        }
    }
}

/// The producers closed with this many messages still waiting for the broker (purged
/// undelivered; each was already counted as a [`DeliveryFailed`]).
pub struct PurgedAtClose(pub u64);

impl Emit for PurgedAtClose {
    fn emit(self, _metrics: &Metrics) {
        let purged = self.0;
        if purged > 0 {
            tracing::error!(
                purged,
                "{purged} message(s) were still waiting for the broker when the producers closed and were purged undelivered; no offset past them was committed, so a restart reprocesses their input"
            );
        }
    }
}

/// An offset commit attempted, skipped or failed.
pub struct Commit(pub CommitResult);

impl Emit for Commit {
    fn emit(self, metrics: &Metrics) {
        metrics.commits.with_label_values(&[self.0.as_str()]).inc();
    }
}

/// Changelog records enqueued by a checkpoint.
pub struct ChangelogWritten {
    pub upserts: u64,
    pub deletes: u64,
}

impl Emit for ChangelogWritten {
    fn emit(self, metrics: &Metrics) {
        for (kind, n) in [
            (ChangelogWrite::Upsert, self.upserts),
            (ChangelogWrite::Delete, self.deletes),
        ] {
            metrics
                .changelog_records
                .with_label_values(&[kind.as_str()])
                .inc_by(n);
        }
    }
}

/// A checkpoint finished (whatever its outcome).
pub struct CheckpointTimed(pub std::time::Duration);

impl Emit for CheckpointTimed {
    fn emit(self, metrics: &Metrics) {
        metrics.checkpoint_seconds.observe(self.0.as_secs_f64());
    }
}

/// A partition's restore read its changelog to the end.
pub struct RestoreRead {
    pub applied: u64,
    pub deleted: u64,
    pub ignored: u64,
    pub corrupt: u64,
    pub seconds: f64,
}

impl Emit for RestoreRead {
    fn emit(self, metrics: &Metrics) {
        for (result, n) in [
            (RestoreRecord::Applied, self.applied),
            (RestoreRecord::Deleted, self.deleted),
            (RestoreRecord::Ignored, self.ignored),
            (RestoreRecord::Corrupt, self.corrupt),
        ] {
            metrics
                .restore_records
                .with_label_values(&[result.as_str()])
                .inc_by(n);
        }
        metrics.restore_seconds.observe(self.seconds);
    }
}

/// One input partition's lag behind its high watermark.
pub struct PartitionLag {
    pub partition: i32,
    pub lag: i64,
}

impl Emit for PartitionLag {
    fn emit(self, metrics: &Metrics) {
        metrics
            .consumer_lag
            .with_label_values(&[&self.partition.to_string()])
            .set(self.lag.max(0));
    }
}

/// This member left and rejoined its group: it owned no partition while input waited that
/// nobody consumed.
pub struct GroupRejoin {
    pub stalled_partitions: usize,
}

impl Emit for GroupRejoin {
    fn emit(self, metrics: &Metrics) {
        metrics.group_rejoins.inc();
        tracing::warn!(
            partitions = self.stalled_partitions,
            "no partition assigned while input waits that nobody consumes; rejoining the group"
        );
    }
}

/// Readiness and assignment as the pipeline sees them.
pub struct Readiness {
    pub ready: bool,
    pub assigned: usize,
}

impl Emit for Readiness {
    fn emit(self, metrics: &Metrics) {
        metrics.ready.set(i64::from(self.ready));
        metrics.assigned_partitions.set(self.assigned as i64);
    }
}

/// Exports the engines' own totals (evictions, duplicates, lifecycle) as deltas since the last
/// export, so counters never go backwards when partitions come and go.
#[derive(Default)]
pub struct EngineStatsExport {
    exported: EngineCounters,
    exported_transitions: StageTransitions,
}

/// The engines' totals at one moment, as the partitions report them: a plain value, so this
/// module depends on no other part of the adapter.
pub struct EngineTotals {
    pub counters: EngineCounters,
    pub stages: StageStats,
    pub users: usize,
    /// Users of the fullest partition, and the most one may hold.
    pub largest_partition_users: usize,
    pub user_cap: usize,
    pub outcomes_pending: usize,
    /// The latest engine clock (`Millis::MIN` before anything happened).
    pub clock: Millis,
    pub producer_queue: i32,
}

impl EngineStatsExport {
    /// Reports `totals` as deltas since the previous report (counters) or as they are (gauges).
    pub fn emit(&mut self, metrics: &Metrics, totals: EngineTotals) {
        let c = totals.counters;
        let before = std::mem::replace(&mut self.exported, c);
        metrics.users_evicted.inc_by(c.evicted - before.evicted);
        metrics
            .events_duplicate
            .inc_by(c.duplicates - before.duplicates);
        metrics
            .events_late
            .inc_by(c.late_accepted - before.late_accepted);
        metrics
            .dedupe_forgotten
            .inc_by(c.dedupe_forgotten - before.dedupe_forgotten);
        let stages = totals.stages;
        for (from, to, delta) in stages
            .transitions
            .delta_since(&self.exported_transitions)
            .iter()
        {
            if delta > 0 {
                metrics
                    .lifecycle_transitions
                    .with_label_values(&[from.as_str(), to.as_str()])
                    .inc_by(delta);
            }
        }
        self.exported_transitions = stages.transitions;
        for (stage, n) in stages.users.iter() {
            metrics
                .users_by_stage
                .with_label_values(&[stage.as_str()])
                .set(n as i64);
        }
        metrics.users_tracked.set(totals.users as i64);
        metrics
            .partition_users_max
            .set(totals.largest_partition_users as i64);
        metrics.partition_user_cap.set(totals.user_cap as i64);
        metrics.outcomes_pending.set(totals.outcomes_pending as i64);
        let clock = totals.clock;
        if clock != Millis::MIN {
            metrics.watermark_seconds.set(clock as f64 / 1000.0);
        }
        metrics.producer_queue.set(i64::from(totals.producer_queue));
    }
}
