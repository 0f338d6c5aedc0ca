//! Labelled snapshots of a history: the rows both training and evaluation learn from and
//! measure on.
//!
//! Rows come from replaying events in event-time order through the same [`Engine`] the service
//! runs and snapshotting every user's features at each cutoff; the label is "no purchase and no
//! login within the horizon after the cutoff" ([`RETURN_KINDS`] are the returns). Also here:
//! the span of the data (labels are known to the end of its last day), the check that a
//! cutoff's labels are known, and the fingerprint that names a data set in a model card.

use ahash::AHashMap;
use sha2::{Digest, Sha256};

use crate::engine::{Engine, EngineConfig};
use crate::event::{Event, EventKind};
use crate::features::{FeatureVector, Windows};
use crate::{Millis, DAY_MS};

/// The event types that count as a user coming back: any of them within the horizon after a
/// cutoff makes the row a non-churner.
pub const RETURN_KINDS: [EventKind; 2] = [EventKind::Purchase, EventKind::Login];

/// One labelled snapshot.
#[derive(Debug, Clone)]
pub struct Row {
    pub cutoff: Millis,
    /// Label horizon of this row.
    pub horizon: Millis,
    pub user_id: String,
    pub features: FeatureVector,
    /// `true` = churned (no purchase and no login within the horizon).
    pub churned: bool,
}

/// Where to snapshot: at `cutoff`, users active within `active_within` before it, labelled
/// over `horizon` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSpec {
    pub cutoff: Millis,
    pub horizon: Millis,
    pub active_within: Millis,
}

/// Replays `events` (sorted by time) and snapshots every user active within the horizon before
/// each cutoff, labelled by what they did in the horizon after it.
pub fn labelled_snapshots(events: &[Event], cutoffs: &[Millis], horizon: Millis) -> Vec<Row> {
    let specs: Vec<SnapshotSpec> = cutoffs
        .iter()
        .map(|&cutoff| SnapshotSpec {
            cutoff,
            horizon,
            active_within: horizon,
        })
        .collect();
    snapshots(events, &specs, false)
}

/// A progress bar on stderr, drawn only when asked for and stderr is a terminal.
pub fn progress_bar(len: u64, enabled: bool, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !(enabled && std::io::stderr().is_terminal()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Replays `events` (sorted by time) through one engine and takes every snapshot in `specs`
/// (any order; the same cutoff may appear with several horizons). Rows come out grouped by
/// spec, in the order of `specs` sorted by (cutoff, horizon). Default windows; see
/// [`snapshots_for`].
pub fn snapshots(events: &[Event], specs: &[SnapshotSpec], progress: bool) -> Vec<Row> {
    snapshots_for(events, specs, progress, Windows::default())
}

/// [`snapshots`] with the features of `windows`.
pub fn snapshots_for(
    events: &[Event],
    specs: &[SnapshotSpec],
    progress: bool,
    windows: Windows,
) -> Vec<Row> {
    let mut specs = specs.to_vec();
    specs.sort_by_key(|s| (s.cutoff, s.horizon));
    specs.dedup();
    let mut engine = Engine::new(
        EngineConfig {
            allowed_lateness: Millis::MAX / 4,
            windows,
            ..EngineConfig::default()
        },
        None,
    );
    let mut rows: Vec<Row> = Vec::new();
    // Per spec: first row index, and the users who returned within its horizon.
    let mut taken: Vec<(SnapshotSpec, usize)> = Vec::new();
    // Latest purchase-or-login time per user among events after the earliest snapshot: a user
    // returned within spec s iff some such event lies in (cutoff, cutoff + horizon]. Kept as the
    // sorted list of return times per user (purchases and logins only).
    let mut returns: AHashMap<String, Vec<Millis>> = AHashMap::new();
    let mut next = 0;
    let bar = progress_bar(events.len() as u64, progress, "replaying");
    for (k, e) in events.iter().enumerate() {
        while next < specs.len() && specs[next].cutoff < e.ts {
            let spec = specs[next];
            taken.push((spec, rows.len()));
            for (user, state, fv) in engine.snapshot(spec.cutoff) {
                if spec.cutoff - state.last_activity_ms() <= spec.active_within {
                    rows.push(Row {
                        cutoff: spec.cutoff,
                        horizon: spec.horizon,
                        user_id: user.to_string(),
                        features: fv,
                        churned: true,
                    });
                }
            }
            next += 1;
        }
        if !taken.is_empty() && RETURN_KINDS.contains(&e.kind) {
            returns.entry(e.user_id.clone()).or_default().push(e.ts);
        }
        engine.advance(e.ts, &mut Vec::new());
        // Sorted input cannot be too late; erase requests simply drop the user.
        let _ = engine.apply(e);
        if k % 8192 == 0 {
            bar.set_position(k as u64);
        }
    }
    bar.finish_and_clear();
    for (i, (spec, start)) in taken.iter().enumerate() {
        let end = taken.get(i + 1).map_or(rows.len(), |p| p.1);
        for row in &mut rows[*start..end] {
            let came_back = returns.get(&row.user_id).is_some_and(|ts| {
                // `ts` is sorted (events are): the first return after the cutoff decides.
                let j = ts.partition_point(|&t| t <= spec.cutoff);
                <[Millis]>::get(ts, j).is_some_and(|&t| t <= spec.cutoff + spec.horizon)
            });
            row.churned = !came_back;
        }
    }
    rows
}

/// Fingerprint of a training set: event count and a hash of ids, users and times, so the card
/// can say exactly which data a model saw.
pub fn fingerprint(events: &[Event]) -> String {
    let mut h = Sha256::new();
    for e in events {
        h.update(e.event_id.as_bytes());
        h.update(e.user_id.as_bytes());
        h.update(e.ts.to_be_bytes());
        h.update(e.kind.as_str().as_bytes());
    }
    format!("sha256:{}", crate::hex_prefix(&h.finalize(), 8))
}

/// The end of the data's label coverage: the end of the UTC day of the last event (sources with
/// day resolution, like CDNOW, cover the whole of their last day).
pub fn data_end(last: Millis) -> Millis {
    (last.div_euclid(DAY_MS) + 1) * DAY_MS
}

/// The time span of a non-empty, time-sorted event list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSpan {
    pub first: Millis,
    pub last: Millis,
    /// Labels are known up to here: [`data_end`] of the last event.
    pub end: Millis,
}

impl DataSpan {
    /// The span of `events` (sorted by time), `None` when there are none.
    pub fn of(events: &[Event]) -> Option<DataSpan> {
        let (first, last) = (events.first()?.ts, events.last()?.ts);
        Some(DataSpan {
            first,
            last,
            end: data_end(last),
        })
    }

    /// Whether the labels of `cutoff` over `horizon` are known (the horizon ends by [`Self::end`]).
    pub fn covers(&self, cutoff: Millis, horizon: Millis) -> bool {
        cutoff.saturating_add(horizon) <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_horizon() {
        let ev = |u: &str, d: i64, k| Event {
            event_id: format!("{u}{d}"),
            user_id: u.into(),
            kind: k,
            ts: d * DAY_MS,
            amount: 1.0,
        };
        let events = vec![
            ev("stays", 0, EventKind::Login),
            ev("leaves", 1, EventKind::Purchase),
            ev("stays", 15, EventKind::Purchase),
            ev("late", 2, EventKind::Login),
            ev("late", 40, EventKind::Login),
        ];
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.ts);
        let rows = labelled_snapshots(&sorted, &[10 * DAY_MS], 20 * DAY_MS);
        let label = |u: &str| rows.iter().find(|r| r.user_id == u).unwrap().churned;
        assert!(!label("stays"));
        assert!(label("leaves"));
        assert!(label("late"), "a return after the horizon does not count");
    }
}
