//! The churn-risk table: one row per user with their current score, risk band, lifecycle stage,
//! value tier and recommended action, so a warehouse or CRM can keep every user's risk without
//! asking. Upsert semantics: a row replaces the user's previous one, a tombstone deletes it.
//!
//! A row is queued when a scoring (event or timer) finds the user's band, stage, tier or
//! recommended action (with its channel) different from what this engine last queued for them;
//! a tombstone when the user is erased or evicted. What the policy makes of the user comes from
//! `alerting::advise`, the code an alert and [`super::Engine::describe`] use, so a row
//! never disagrees with a lookup at the same instant.
//!
//! The per-user cost is a 16-bit marker of the last row queued in the user's slot. The marker is
//! not part of the changelog record: a restored (or newly created) user has none, so their first
//! scoring after a restore queues a row even when nothing changed. For an upsert table that is a
//! harmless rewrite of the same content; persisting the marker instead would risk the opposite,
//! a change decided after the last checkpoint and lost with the process, then never re-sent
//! because the restored marker already claims it.

use serde::Serialize;

use super::alerting::Advice;
use super::Engine;
use crate::features::Stage;
use crate::policy::{Policy, RiskBand, ValueTier};
use crate::Millis;

/// Version of the row layout (`deploy/schemas/score.schema.json`), also sent as a Kafka header.
pub const SCORE_SCHEMA_VERSION: u32 = 1;

/// One user's row of the churn-risk table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    pub schema_version: u32,
    pub user_id: String,
    /// Churn probability of the scoring that wrote the row, rounded to 4 decimals.
    pub score: f64,
    pub risk_band: RiskBand,
    pub lifecycle_stage: Stage,
    pub value_tier: ValueTier,
    pub recommended_action: String,
    pub channel: String,
    pub model_version: String,
    /// Event time of the scoring (RFC 3339).
    pub as_of: String,
}

/// A change to the table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableChange {
    /// The user's row, replacing any earlier one.
    Row(ScoreRow),
    /// The user was erased or evicted: their row is deleted.
    Tombstone { user_id: String },
}

impl TableChange {
    pub fn user_id(&self) -> &str {
        match self {
            TableChange::Row(r) => &r.user_id,
            TableChange::Tombstone { user_id } => user_id,
        }
    }
}

/// A slot's marker before anything was queued for it (also after a restore), and the marker of
/// a row that does not fit 16 bits: either way the next row is queued.
pub(super) const UNPUBLISHED: u16 = 0;

/// The marker of what a row says that makes it worth rewriting: band, stage, tier, and the first
/// rule with the same action and channel (two rules recommending the same thing the same way
/// are the same row). [`UNPUBLISHED`] past 682 rules, where the packing would overflow.
pub(super) fn marker(policy: &Policy, stage: Stage, advice: &Advice<'_>) -> u16 {
    let rule = advice.rule;
    let action = policy
        .rules()
        .iter()
        .position(|r| r.action == rule.action && r.channel == rule.channel)
        .unwrap_or(0);
    let packed = (((action * Stage::ALL.len() + stage as usize) * RiskBand::ALL.len()
        + advice.band as usize)
        * ValueTier::ALL.len())
        + advice.tier as usize
        + 1;
    u16::try_from(packed).unwrap_or(UNPUBLISHED)
}

/// What one scoring found, for the table.
pub(super) struct Scoring<'a> {
    pub(super) user_id: &'a str,
    pub(super) score: f64,
    pub(super) stage: Stage,
    pub(super) advice: &'a Advice<'a>,
    pub(super) model_version: &'a str,
    pub(super) now: Millis,
}

/// Queues the user's row into `out` when it differs from the one `published` marks, and marks
/// it.
pub(super) fn note(
    out: &mut Vec<TableChange>,
    published: &mut u16,
    policy: &Policy,
    s: &Scoring<'_>,
) {
    let mark = marker(policy, s.stage, s.advice);
    if mark != UNPUBLISHED && mark == *published {
        return;
    }
    *published = mark;
    out.push(TableChange::Row(ScoreRow {
        schema_version: SCORE_SCHEMA_VERSION,
        user_id: s.user_id.to_string(),
        score: crate::alert::round4(s.score),
        risk_band: s.advice.band,
        lifecycle_stage: s.stage,
        value_tier: s.advice.tier,
        recommended_action: s.advice.rule.action.clone(),
        channel: s.advice.rule.channel.clone(),
        model_version: s.model_version.to_string(),
        as_of: crate::time::rfc3339(s.now),
    }));
}

impl Engine {
    /// Moves the table changes decided so far (rows and tombstones, in the order decided) into
    /// `out`. Always empty unless [`super::EngineConfig::score_table`] is on.
    pub fn drain_table(&mut self, out: &mut Vec<TableChange>) {
        out.append(&mut self.table);
    }

    /// Queues a tombstone for `user_id` (erased or evicted), when the table is kept.
    pub(super) fn table_tombstone(&mut self, user_id: &str) {
        if self.config.score_table {
            self.table.push(TableChange::Tombstone {
                user_id: user_id.to_string(),
            });
        }
    }
}
