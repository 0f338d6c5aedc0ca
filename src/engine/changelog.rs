//! The engine's side of durable state: which users changed since the last checkpoint, their
//! records, and restoring users from records.
//!
//! A record is everything needed to carry a user on elsewhere: the state (see
//! [`crate::features::codec`]) and the win-back outcome still being watched, if any. Timers are
//! not in it: they follow from the state and are re-derived on restore. Nothing here knows about
//! Kafka: the service writes these records to a compacted changelog topic keyed by user id, and
//! the benchmarks and tests drive them directly.

use std::sync::Arc;

use super::{Engine, PendingOutcome, Trigger};
use crate::alert::AlertId;
use crate::features::codec::{self, CodecError};
use crate::policy::ExperimentArm;
use crate::Millis;

/// Layout version of a record (first byte); the state inside carries its own.
pub const RECORD_FORMAT: u8 = 1;

/// Why a changelog record could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error(
        "changelog record format {0} is not known to this build (it writes format {RECORD_FORMAT})"
    )]
    UnknownFormat(u8),
    #[error("changelog record is truncated")]
    Truncated,
    #[error("changelog record is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    State(#[from] CodecError),
    #[error(
        "changelog record keeps {kept} days of the user's history, but windows {windows} need \
         {needed}: it was written with shorter windows and its longest windows would be \
         undercounted; run with the windows it was written with, or start from an empty \
         changelog"
    )]
    WindowsMismatch {
        kept: u32,
        needed: u32,
        windows: crate::features::Windows,
    },
}

/// One change to publish: a user's latest record, or the user's removal (erased or evicted).
#[derive(Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Upsert { user_id: &'a str, record: &'a [u8] },
    Delete { user_id: &'a str },
}

/// Which users changed since the last [`Engine::take_changes`]: one bit per slot, so marking is
/// a store and the set costs an eighth of a byte per user; removed ids are kept until taken.
#[derive(Debug, Default)]
pub(super) struct ChangeSet {
    bits: Vec<u64>,
    marked: usize,
    removed: Vec<Box<str>>,
}

impl ChangeSet {
    pub(super) fn mark(&mut self, idx: u32) {
        let (word, bit) = (idx as usize / 64, idx % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.marked += 1;
        }
    }

    pub(super) fn removed(&mut self, user_id: Box<str>) {
        self.removed.push(user_id);
    }

    fn len(&self) -> usize {
        self.marked + self.removed.len()
    }
}

fn encode_record(
    state: &crate::features::UserState,
    kept_days: u32,
    deadline: u32,
    outcome: Option<&PendingOutcome>,
    out: &mut Vec<u8>,
) {
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&deadline.to_le_bytes());
    match outcome {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.alert_id.to_bytes());
            out.push(match p.arm {
                ExperimentArm::Treatment => 0,
                ExperimentArm::Control => 1,
            });
            out.extend_from_slice(&p.alerted_at.to_le_bytes());
            out.extend_from_slice(&p.window_end.to_le_bytes());
            let version = p.model_version.as_bytes();
            let len = u16::try_from(version.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&version[..usize::from(len)]);
        }
    }
    codec::encode(state, kept_days, out);
}

fn split<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], RecordError> {
    if bytes.len() < n {
        return Err(RecordError::Truncated);
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

fn le_i64(bytes: &[u8]) -> Millis {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    i64::from_le_bytes(b)
}

/// A user as carried by a changelog record.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub state: crate::features::UserState,
    /// Days of buckets the writer kept (see [`codec::Decoded::kept_days`]).
    pub kept_days: u32,
    /// The user's next check when the record was written (whole seconds; 0 = none), so a
    /// restored user is checked exactly when the original would have been.
    pub deadline: u32,
    /// The win-back alert still being watched, if any.
    pub outcome: Option<RestoredOutcome>,
}

/// Decodes a record written by [`Engine::take_changes`].
pub fn decode_record(mut bytes: &[u8]) -> Result<UserRecord, RecordError> {
    let format = split(&mut bytes, 1)?[0];
    if format != RECORD_FORMAT {
        return Err(RecordError::UnknownFormat(format));
    }
    let d = split(&mut bytes, 4)?;
    let deadline = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let outcome = match split(&mut bytes, 1)?[0] {
        0 => None,
        1 => {
            let mut id = [0u8; 16];
            id.copy_from_slice(split(&mut bytes, 16)?);
            let alert_id = AlertId::from_bytes(id);
            let arm = match split(&mut bytes, 1)?[0] {
                0 => ExperimentArm::Treatment,
                1 => ExperimentArm::Control,
                a => return Err(RecordError::Corrupt(format!("experiment arm {a}"))),
            };
            let alerted_at = le_i64(split(&mut bytes, 8)?);
            let window_end = le_i64(split(&mut bytes, 8)?);
            let len = split(&mut bytes, 2)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let version = std::str::from_utf8(split(&mut bytes, len)?)
                .map_err(|_| RecordError::Corrupt("model version is not UTF-8".into()))?;
            Some(RestoredOutcome {
                alert_id,
                arm,
                alerted_at,
                window_end,
                model_version: version.into(),
            })
        }
        f => return Err(RecordError::Corrupt(format!("outcome flag {f}"))),
    };
    let codec::Decoded { state, kept_days } = codec::decode(bytes)?;
    Ok(UserRecord {
        state,
        kept_days,
        deadline,
        outcome,
    })
}

/// A win-back outcome window carried in a record (see [`decode_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredOutcome {
    pub alert_id: AlertId,
    pub arm: ExperimentArm,
    pub alerted_at: Millis,
    pub window_end: Millis,
    pub model_version: Arc<str>,
}

impl Engine {
    /// Starts (or stops) remembering which users change, for [`Engine::take_changes`]. Off by
    /// default: replay, training and benchmarks of the pure core do not pay for it.
    pub fn track_changes(&mut self, on: bool) {
        self.changes = on.then(ChangeSet::default);
    }

    /// Users changed (or removed) since the last call.
    pub fn changes_pending(&self) -> usize {
        self.changes.as_ref().map_or(0, ChangeSet::len)
    }

    /// Hands every change since the last call to `emit` (removals first, then the latest record
    /// of each changed user) and forgets them. Returns how many were emitted.
    pub fn take_changes(&mut self, mut emit: impl FnMut(Change<'_>)) -> usize {
        let written = self.write_changes(|change| {
            emit(change);
            Ok::<(), std::convert::Infallible>(())
        });
        match written {
            Ok(n) => n,
            Err(never) => match never {},
        }
    }

    /// Like [`Engine::take_changes`], for a `write` that can fail: a change is forgotten only
    /// once `write` took it. When `write` fails, the change it refused and every change not
    /// handed over yet stay pending for the next call, so a failed write never loses a change
    /// (the caller must not commit past them). Returns how many were written.
    pub fn write_changes<E>(
        &mut self,
        mut write: impl FnMut(Change<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let Some(mut set) = self.changes.take() else {
            return Ok(0);
        };
        let result = self.write_set(&mut set, &mut write);
        self.changes = Some(set);
        result
    }

    fn write_set<E>(
        &self,
        set: &mut ChangeSet,
        write: &mut impl FnMut(Change<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut written = 0;
        for i in 0..set.removed.len() {
            if let Err(e) = write(Change::Delete {
                user_id: &set.removed[i],
            }) {
                set.removed.drain(..i);
                return Err(e);
            }
            written += 1;
        }
        set.removed.clear();
        let mut record = Vec::with_capacity(256);
        for word_idx in 0..set.bits.len() {
            let mut w = set.bits[word_idx];
            while w != 0 {
                let bit = w.trailing_zeros();
                w &= w - 1;
                let idx = word_idx * 64 + bit as usize;
                // A slot freed since it was marked has its removal above; a reused one is the
                // new user's, who is changed anyway.
                if let Some(slot) = self.slots.get(idx).and_then(Option::as_ref) {
                    record.clear();
                    encode_record(
                        &slot.state,
                        self.config.windows.kept_days(),
                        slot.deadline,
                        self.outcomes.get(&(idx as u32)),
                        &mut record,
                    );
                    write(Change::Upsert {
                        user_id: &slot.user_id,
                        record: &record,
                    })?;
                    written += 1;
                }
                set.bits[word_idx] &= !(1u64 << bit);
                set.marked -= 1;
            }
        }
        Ok(written)
    }

    /// Sets a user's state from a changelog record (replacing what the engine holds), and
    /// re-derives their timers. Restored users are not marked changed: the changelog already
    /// has them.
    ///
    /// The clock moves up to the user's last activity, without firing anything: the engine
    /// that wrote the record had its clock there at least, so a restored partition refuses as
    /// `too_late` what its writer would have (an engine starting from nothing would accept any
    /// event until its first one), and a state built offline resumes at the end of its history.
    /// Timers due by then fire at the next [`Engine::advance`], each at its own deadline.
    ///
    /// Refuses a record whose writer kept fewer days of history than this engine's windows read
    /// (written under shorter windows): restoring it would undercount them silently. A record
    /// that kept more is fine: the surplus days are pruned on the user's next change.
    pub fn restore(&mut self, user_id: &str, record: &[u8]) -> Result<(), RecordError> {
        let UserRecord {
            state,
            kept_days,
            deadline,
            outcome,
        } = decode_record(record)?;
        let needed = self.config.windows.kept_days();
        if kept_days < needed {
            return Err(RecordError::WindowsMismatch {
                kept: kept_days,
                needed,
                windows: self.config.windows,
            });
        }
        let (idx, fresh) = self.slot_for(user_id);
        let slot = self.slots[idx as usize]
            .as_mut()
            .expect("slot_for returns a live slot");
        if !fresh && slot.state.has_activity() {
            self.stages.users.leave(slot.state.stage());
        }
        slot.state = state;
        if slot.state.has_activity() {
            self.stages.users.enter(slot.state.stage());
        }
        let now = self.clock.max(slot.state.last_activity_ms());
        match outcome {
            Some(o) => {
                self.outcomes.insert(
                    idx,
                    PendingOutcome {
                        alert_id: o.alert_id,
                        arm: o.arm,
                        alerted_at: o.alerted_at,
                        window_end: o.window_end,
                        model_version: o.model_version,
                    },
                );
            }
            None => {
                self.outcomes.remove(&idx);
            }
        }
        if deadline != 0 {
            let slot = self.slots[idx as usize].as_mut().expect("live slot");
            slot.deadline = deadline;
            if slot.queued == 0 || deadline < slot.queued {
                slot.queued = deadline;
                self.timers.push(deadline, idx);
            }
        } else {
            // No deadline recorded: derive it as after an event; advancing the clock then fires
            // whatever fell due while the user was elsewhere.
            let totals = self.slots[idx as usize]
                .as_ref()
                .map(|s| s.state.window_totals(now, self.layout));
            if let Some(totals) = totals {
                self.schedule(idx, now, &totals, None, Trigger::Event);
            }
        }
        self.clock = self.clock.max(now);
        Ok(())
    }

    /// Drops a user on a changelog tombstone (erased or evicted elsewhere); not counted as an
    /// erasure or eviction here, where it already was counted.
    pub fn forget(&mut self, user_id: &str) -> bool {
        match self.find(user_id) {
            Some(idx) => {
                self.remove_untracked(idx);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertDecision;
    use crate::engine::tests::{ev, run_days, silence_model};
    use crate::engine::{EngineConfig, Scored};
    use crate::event::EventKind;
    use crate::DAY_MS;

    fn tracked() -> Engine {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        e.track_changes(true);
        e
    }

    fn records(e: &mut Engine) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        e.take_changes(|c| match c {
            Change::Upsert { user_id, record } => {
                out.push((user_id.to_string(), Some(record.to_vec())))
            }
            Change::Delete { user_id } => out.push((user_id.to_string(), None)),
        });
        out
    }

    fn restore_all(into: &mut Engine, recs: &[(String, Option<Vec<u8>>)]) {
        for (user, rec) in recs {
            match rec {
                Some(r) => into.restore(user, r).unwrap(),
                None => {
                    into.forget(user);
                }
            }
        }
    }

    fn decisions(out: Vec<Scored>) -> Vec<(String, AlertId, AlertDecision)> {
        out.into_iter()
            .filter_map(|s| s.alert.map(|a| (a.user_id, a.alert_id, s.decision)))
            .collect()
    }

    /// A write that fails keeps the change it refused and every later one pending: the next
    /// call hands them over again, and nothing is lost or handed over twice.
    #[test]
    fn a_failed_write_keeps_the_refused_and_the_remaining_changes() {
        let mut e = tracked();
        for (i, user) in ["a", "b", "c", "d"].iter().enumerate() {
            e.apply(&ev(user, 1.0 + i as f64, EventKind::Login))
                .unwrap();
        }
        let mut first = Vec::new();
        let failed = e.write_changes(|c| match c {
            Change::Upsert { user_id: "c", .. } => Err("refused"),
            Change::Upsert { user_id, .. } | Change::Delete { user_id } => {
                first.push(user_id.to_string());
                Ok(())
            }
        });
        assert_eq!(failed, Err("refused"));
        assert_eq!(first, ["a", "b"]);
        assert_eq!(e.changes_pending(), 2, "c and d are still pending");
        let rest: Vec<String> = records(&mut e).into_iter().map(|(u, _)| u).collect();
        assert_eq!(rest, ["c", "d"]);
        assert_eq!(e.changes_pending(), 0);
    }

    /// A record kept under shorter windows would undercount longer ones: refused, naming both.
    /// One kept under longer windows holds everything shorter ones read: accepted.
    #[test]
    fn restores_refuse_records_kept_for_shorter_windows() {
        let engine_with = |text: &str| {
            let mut e = Engine::new(
                EngineConfig {
                    windows: text.parse().unwrap(),
                    ..EngineConfig::default()
                },
                None,
            );
            e.track_changes(true);
            for day in [1.0, 100.0, 170.0] {
                e.apply(&ev("u", day, EventKind::Purchase)).unwrap();
            }
            e
        };
        let mut short = engine_with("7,30,90");
        let mut long = engine_with("7,30,90,180");
        let short_recs = records(&mut short);
        let long_recs = records(&mut long);

        let mut into_long = engine_with("7,30,90,180");
        let err = into_long
            .restore("v", short_recs[0].1.as_deref().unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            RecordError::WindowsMismatch {
                kept: 90,
                needed: 180,
                windows: "7,30,90,180".parse().unwrap()
            }
        );
        assert!(
            err.to_string().contains("windows 7,30,90,180 need 180"),
            "{err}"
        );
        assert!(into_long.state("v").is_none());

        let mut into_short = engine_with("14");
        into_short
            .restore("v", long_recs[0].1.as_deref().unwrap())
            .unwrap();
        let at = 175 * DAY_MS;
        assert_eq!(
            into_short.features("v", at).unwrap().get("purchases_14d"),
            short.features("u", at).unwrap().get("purchases_7d")
        );
    }

    /// A restored engine carries on exactly as the original: same features, same stages, the
    /// same alerts and outcomes from then on.
    #[test]
    fn a_restored_engine_continues_like_the_original() {
        let mut original = tracked();
        for (i, user) in ["a", "b", "c", "d"].iter().enumerate() {
            for d in 0..10 {
                let kind = if d % 3 == 0 {
                    EventKind::Purchase
                } else {
                    EventKind::Login
                };
                original
                    .apply(&ev(user, 100.0 + f64::from(d) + i as f64 * 5.0, kind))
                    .unwrap();
            }
        }
        // "a" is alerted and its outcome window is open when the state moves.
        let before = run_days(&mut original, 100, 140);
        assert!(!decisions(before).is_empty());
        assert!(original.outcomes_pending() > 0);
        let recs = records(&mut original);
        assert_eq!(recs.len(), 4);

        let mut restored = tracked();
        restore_all(&mut restored, &recs);
        restored.advance(original.clock(), &mut Vec::new());
        assert_eq!(restored.users(), 4);
        assert_eq!(restored.stage_stats().users, original.stage_stats().users);
        assert_eq!(restored.outcomes_pending(), original.outcomes_pending());
        for user in ["a", "b", "c", "d"] {
            assert_eq!(restored.state(user), original.state(user), "{user}");
            assert_eq!(
                restored.features(user, 150 * DAY_MS),
                original.features(user, 150 * DAY_MS)
            );
        }
        assert_eq!(restored.changes_pending(), 0, "restoring is not a change");

        // From here both see the same events and the same clock.
        for e in [&mut original, &mut restored] {
            e.apply(&ev("b", 141.0, EventKind::Purchase)).unwrap();
        }
        let a = decisions(run_days(&mut original, 141, 260));
        let b = decisions(run_days(&mut restored, 141, 260));
        assert_eq!(a, b);
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        original.drain_outcomes(&mut oa);
        restored.drain_outcomes(&mut ob);
        assert!(!oa.is_empty());
        assert_eq!(oa, ob);
    }

    /// A restored engine's clock stands where its writer's stood at least (the latest activity
    /// it restored): an event too late for the writer is too late after the restore, and a
    /// timer due by then is not lost but fires at the next advance, at its own deadline.
    #[test]
    fn a_restore_resumes_the_clock_at_the_latest_activity_without_firing() {
        let mut original = tracked();
        for d in 0..30 {
            original.advance(d * DAY_MS, &mut Vec::new());
            original
                .apply(&ev("buyer", d as f64, EventKind::Purchase))
                .unwrap();
        }
        original.advance(60 * DAY_MS, &mut Vec::new());
        original.apply(&ev("late", 60.0, EventKind::Login)).unwrap();
        let recs = records(&mut original);

        let mut restored = tracked();
        restore_all(&mut restored, &recs);
        assert_eq!(
            restored.clock(),
            60 * DAY_MS,
            "the latest activity restored"
        );
        let too_late = restored
            .apply(&ev("buyer", 56.0, EventKind::Login))
            .unwrap_err();
        assert_eq!(too_late.reason, crate::event::RejectReason::TooLate);
        assert!(restored.apply(&ev("buyer", 58.0, EventKind::Login)).is_ok());

        // The silent buyer's checks fell due long before day 60 in a writer that never moved
        // its clock between: restoring fires none of them; the next advance fires them, at
        // their deadlines, as the writer's next advance would have.
        let mut writer = tracked();
        for d in 0..30 {
            writer
                .apply(&ev("buyer", d as f64, EventKind::Purchase))
                .unwrap();
        }
        writer.apply(&ev("late", 60.0, EventKind::Login)).unwrap();
        let mut restored = tracked();
        restore_all(&mut restored, &records(&mut writer));
        let (mut from_writer, mut from_restored) = (Vec::new(), Vec::new());
        writer.advance(61 * DAY_MS, &mut from_writer);
        restored.advance(61 * DAY_MS, &mut from_restored);
        assert!(!from_writer.is_empty(), "the silent buyer's timers fire");
        assert_eq!(decisions(from_restored), decisions(from_writer));
    }

    #[test]
    fn only_changed_users_are_emitted_and_removals_come_first() {
        let mut e = tracked();
        e.apply(&ev("a", 1.0, EventKind::Login)).unwrap();
        e.apply(&ev("b", 1.0, EventKind::Login)).unwrap();
        assert_eq!(e.changes_pending(), 2);
        assert_eq!(records(&mut e).len(), 2);
        assert!(records(&mut e).is_empty(), "nothing changed since");
        e.apply(&ev("b", 2.0, EventKind::Login)).unwrap();
        e.apply(&ev("a", 2.0, EventKind::Erase)).unwrap();
        let recs = records(&mut e);
        assert_eq!(recs[0], ("a".to_string(), None));
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].0, "b");
    }

    #[test]
    fn evicted_users_become_tombstones_and_forget_drops_them() {
        let mut e = tracked();
        e.apply(&ev("old", 1.0, EventKind::Login)).unwrap();
        let recs = records(&mut e);
        e.advance(1000 * DAY_MS, &mut Vec::new());
        assert_eq!(e.counters().evicted, 1);
        assert_eq!(records(&mut e), vec![("old".to_string(), None)]);

        let mut other = tracked();
        restore_all(&mut other, &recs);
        assert_eq!(other.users(), 1);
        assert!(other.forget("old"));
        assert_eq!(other.users(), 0);
        assert_eq!(other.stage_stats().users.total(), 0);
        assert_eq!(other.counters().evicted + other.counters().erased, 0);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut e = tracked();
        for d in 0..30 {
            e.apply(&ev("u", f64::from(d), EventKind::Purchase))
                .unwrap();
        }
        let mut day = 30;
        while e.outcomes_pending() == 0 {
            assert!(day < 200, "the silent buyer is alerted");
            e.advance(day * DAY_MS, &mut Vec::new());
            day += 1;
        }
        let recs = records(&mut e);
        let bytes = recs[0].1.clone().unwrap();
        assert!(
            decode_record(&bytes).unwrap().outcome.is_some(),
            "the record carries an open outcome"
        );
        let mut target = tracked();
        for cut in 0..bytes.len() {
            assert!(target.restore("u", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = bytes.clone();
        wrong[0] = 7;
        assert_eq!(
            target.restore("u", &wrong),
            Err(RecordError::UnknownFormat(7))
        );
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x80;
            let _ = target.restore("u", &flipped);
        }
    }
}
