//! Every tracked user's view at one instant, as a table: the batch side of the lookup API
//! (`churnguard score`), for a first audience sync of a CRM or warehouse and for analysts.
//!
//! The history is folded through the same [`Engine`] as the service ([`crate::replay`]), the
//! clock is run on to the table's instant so that timers fire as the service's would have
//! (silent users re-scored, long-silent ones evicted), and each row is [`Engine::describe`],
//! the answer the lookup API gives. Events after the instant are left out, so a table at a past
//! date uses nothing the service could not have known then.

use std::io::Write;

use crate::engine::{Engine, UserView};
use crate::event::Event;
use crate::replay::replay;
use crate::time::rfc3339;
use crate::Millis;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// One [`UserView`] as JSON per line, every field.
    Jsonl,
    /// Flat columns ([`CSV_COLUMNS`]), one row per user after a header.
    Csv,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 16] = [
    "user_id",
    "as_of",
    "score",
    "threshold",
    "risk_band",
    "lifecycle_stage",
    "value_tier",
    "recommended_action",
    "channel",
    "decision",
    "experiment_arm",
    "reasons",
    "last_activity_at",
    "last_purchase_at",
    "opted_out",
    "model_version",
];

/// Why a table cannot be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ScoreTableError {
    #[error("the table's instant {at} ms since the epoch is outside {range}")]
    OutOfRange { at: Millis, range: String },
    #[error(
        "no event at or before {at}: the history starts at {first}, so there is no user to score \
         yet"
    )]
    BeforeHistory { at: String, first: String },
    #[error("cannot write the table: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the table as CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write the view of user {user_id:?} as JSON: {source}")]
    Json {
        user_id: String,
        source: serde_json::Error,
    },
}

/// What folding the history up to the table's instant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// The engine clock the views are computed at.
    pub at: Millis,
    /// Events applied (those at or before `at`).
    pub applied: usize,
    /// Events after `at`, left out.
    pub after_at: usize,
    /// Events the engine refused while folding (duplicates within the dedupe horizon, ...).
    pub rejected: usize,
    /// Alerts the service would have raised on the way (not part of the table).
    pub alerts: usize,
}

/// What writing the table produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows: one per tracked user.
    pub users: usize,
    /// Users scored at or above the model's threshold.
    pub at_or_above_threshold: usize,
}

/// Applies the sorted `events` at or before `at` to `engine` and runs its clock on to `at`.
/// An `at` before the first event is refused (the table would be empty by mistake rather than
/// by design); so is one the engine cannot represent.
pub fn fold_to(
    engine: &mut Engine,
    events: &[Event],
    at: Millis,
) -> Result<Folded, ScoreTableError> {
    crate::event::check_time(at).map_err(|_| ScoreTableError::OutOfRange {
        at,
        range: crate::event::time_range(),
    })?;
    // The events are in `sort_events` order, time first.
    let upto = events.partition_point(|e| e.ts <= at);
    if let (0, Some(first)) = (upto, events.first()) {
        return Err(ScoreTableError::BeforeHistory {
            at: rfc3339(at),
            first: rfc3339(first.ts),
        });
    }
    let outcome = replay(engine, &events[..upto], Some(at));
    Ok(Folded {
        at: engine.clock(),
        applied: outcome.applied,
        after_at: events.len() - upto,
        rejected: outcome.rejected.len(),
        alerts: outcome.alerts.len(),
    })
}

/// Every tracked user's view at the engine clock, sorted by `user_id` (byte order), computed
/// one at a time so a table of millions of users is never held in memory.
pub fn views(engine: &Engine) -> impl Iterator<Item = UserView> + '_ {
    let mut ids: Vec<&str> = engine.user_ids().collect();
    ids.sort_unstable();
    ids.into_iter().filter_map(|id| engine.describe(id))
}

/// Writes every user's view to `out` in `format`, calling `on_row` after each row (progress).
pub fn write_table<W: Write>(
    engine: &Engine,
    format: TableFormat,
    out: W,
    mut on_row: impl FnMut(),
) -> Result<Written, ScoreTableError> {
    let mut written = Written::default();
    let mut count = |view: &UserView| {
        written.users += 1;
        if let (Some(score), Some(threshold)) = (view.score, view.threshold) {
            written.at_or_above_threshold += usize::from(score >= threshold);
        }
        on_row();
    };
    match format {
        TableFormat::Jsonl => {
            let mut out = out;
            for view in views(engine) {
                serde_json::to_writer(&mut out, &view).map_err(|source| ScoreTableError::Json {
                    user_id: view.user_id.clone(),
                    source,
                })?;
                out.write_all(b"\n")?;
                count(&view);
            }
            out.flush()?;
        }
        TableFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(CSV_COLUMNS)?;
            for view in views(engine) {
                csv.write_record(csv_row(&view))?;
                count(&view);
            }
            csv.flush()?;
        }
    }
    Ok(written)
}

/// A view as the flat [`CSV_COLUMNS`]: absent values are empty cells, reasons are
/// `feature:contribution` joined by `;`.
pub fn csv_row(view: &UserView) -> [String; 16] {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let reasons: Vec<String> = view
        .reasons
        .iter()
        .map(|r| format!("{}:{}", r.feature, r.contribution))
        .collect();
    [
        view.user_id.clone(),
        view.as_of.clone(),
        opt(view.score),
        opt(view.threshold),
        view.risk_band
            .map(|b| b.as_str().to_string())
            .unwrap_or_default(),
        view.lifecycle_stage.as_str().to_string(),
        view.value_tier.as_str().to_string(),
        view.recommended_action.clone().unwrap_or_default(),
        view.channel.clone().unwrap_or_default(),
        view.decision.to_string(),
        view.experiment_arm.as_str().to_string(),
        reasons.join(";"),
        view.last_activity_at.clone(),
        view.last_purchase_at.clone().unwrap_or_default(),
        view.opted_out.to_string(),
        view.model_version.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests;
