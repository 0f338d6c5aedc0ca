//! The pure core: events in, decisions out; the clock in, decisions for silent users out.
//!
//! The engine owns every user's state and their inactivity deadlines, and knows nothing of
//! Kafka, files or HTTP. The service, `replay`, `train`, the tests and the benchmarks all drive
//! this one type, so a feature computed in training is the feature served.
//!
//! Time is event time. The caller moves the clock with [`Engine::advance`]: while catching up on
//! a backlog that is the event-time watermark; once caught up, wall-clock time, so silent users
//! are still re-scored when nothing arrives. Timers are derived from state (each user's next
//! check follows from their last activity), so a restored state re-creates them.

use std::sync::Arc;

use ahash::AHashMap;
use hashbrown::HashTable;

use crate::alert::{self, AlertDecision, OutcomeEvent, ReturnKind, Trigger, WinbackAlert};
use crate::dedupe::Deduper;
use crate::event::{Event, EventKind, RejectReason, Rejection};
use crate::features::{
    FeatureLayout, FeatureVector, LifecycleConfig, Stage, StageStats, Totals, UserState, Windows,
};
use crate::policy::Policy;
use crate::scoring::Scorer;
use crate::{Millis, DAY_MS};

mod accounting;
mod alerting;
mod lookup;
#[cfg(test)]
mod lookup_tests;
mod outcome;
mod schedule;
pub mod table;
#[cfg(test)]
mod table_tests;
use alerting::{advise, build_alert, AlertInputs};
pub use lookup::{CapsView, DayRecord, OpenAlert, UserExport, UserView};
pub mod changelog;
#[cfg(test)]
mod limits_tests;
mod timers;
mod user_id;
use changelog::ChangeSet;
use outcome::PendingOutcome;
pub use table::{ScoreRow, TableChange};
use timers::TimerQueue;
use user_id::UserId;

/// Default [`EngineConfig::max_users`]: at ~200 bytes per user (README, "Benchmarks") about a
/// gigabyte of state for one partition.
pub const DEFAULT_MAX_USERS: usize = 5_000_000;

/// Tunables of the core, independent of where events come from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far behind the watermark an event may be and still be folded into state.
    pub allowed_lateness: Millis,
    /// Shortest gap between re-scorings of a silent user (event time). Later gaps grow with the
    /// silence (see `rescore_growth`).
    pub rescore_interval: Millis,
    /// A silent user is re-scored again after this share of their silence so far (at least
    /// `rescore_interval`): daily in the first week, every ~4.5 days at 30 days of silence. An
    /// alert can thus come at most this share of the silence late, at ~25 scorings per 90 days
    /// instead of 90.
    pub rescore_growth: f64,
    /// Periodic re-scoring of a silent user starts after this much silence. Before it, the
    /// user's last event has just scored them, lifecycle thresholds and an overdue purchase cycle
    /// still fire, and over churn horizons of months a few days of silence say little: starting
    /// at once would re-score every user between ordinary visits (five timer scorings per event
    /// on a typical stream, measured with the core benchmark).
    pub rescore_after: Millis,
    /// Users silent for longer than this are evicted from memory.
    pub retention: Millis,
    /// Number of top reasons carried in an alert.
    pub top_reasons: usize,
    /// Lifecycle thresholds.
    pub lifecycle: LifecycleConfig,
    /// How long (event time) an `event_id` is remembered to recognise duplicates; 0 disables.
    pub dedupe_horizon: Millis,
    /// A user is re-scored when silent for this many times their own purchase cycle.
    pub cycle_overdue_factor: f64,
    /// Win-back policy: bands, tiers, actions, caps, control group, outcome window.
    pub policy: Arc<Policy>,
    /// Sliding-window horizons: which windowed features exist (see
    /// [`crate::features::layout`]) and how many days of buckets each user keeps.
    pub windows: Windows,
    /// Longest `user_id` or `event_id` accepted, in bytes: ids are kept in memory and become
    /// changelog keys, so an unbounded id is an unbounded cost.
    pub max_id_bytes: usize,
    /// Most users one engine (one partition) holds. At the cap an event of a new user is
    /// refused (`user_cap`) and the users held keep their state: evicting someone to make room
    /// would let a flood of made-up ids push every real user out. Per partition rather than per
    /// instance, so what a partition holds never depends on which instance owns it.
    pub max_users: usize,
    /// Most event fingerprints the duplicate detector holds (see [`crate::dedupe`]); at the cap
    /// it forgets its oldest ones first.
    pub max_dedupe_entries: usize,
    /// Keep the churn-risk table: queue a row when a scoring changes what a user's row says, a
    /// tombstone when a user goes (see [`table`]). Off, scorings skip that work.
    pub score_table: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: 3 * DAY_MS,
            rescore_interval: DAY_MS,
            rescore_growth: 0.15,
            rescore_after: 7 * DAY_MS,
            retention: 400 * DAY_MS,
            top_reasons: 3,
            lifecycle: LifecycleConfig::default(),
            dedupe_horizon: 3_600_000,
            cycle_overdue_factor: 1.5,
            policy: Arc::new(Policy::default_embedded()),
            windows: Windows::default(),
            max_id_bytes: crate::event::DEFAULT_MAX_ID_BYTES,
            max_users: DEFAULT_MAX_USERS,
            max_dedupe_entries: crate::dedupe::DEFAULT_MAX_ENTRIES,
            score_table: false,
        }
    }
}

/// What became of one scoring.
#[derive(Debug, Clone)]
pub struct Scored {
    pub trigger: Trigger,
    /// Lifecycle stage at the time of scoring.
    pub stage: Stage,
    pub score: f64,
    pub decision: AlertDecision,
    /// Present when `decision` is [`AlertDecision::Raise`]; boxed because most scorings raise
    /// none, so a scoring stays small while an alert (which allocates anyway) costs one more.
    pub alert: Option<Box<WinbackAlert>>,
}

/// What became of one accepted event.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Folded into state; `scored` is `None` when the engine runs without a model.
    Updated { scored: Option<Scored> },
    /// An `erase` request: the user's state is gone.
    Erased,
    /// The same `event_id` was already applied within the dedupe horizon: nothing changed.
    Duplicate,
}

/// Running totals the engine keeps about itself (exported as metrics by the service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub evicted: u64,
    pub erased: u64,
    pub duplicates: u64,
    /// Events accepted although older than the clock (folded into their own day).
    pub late_accepted: u64,
    /// Duplicate-detector fingerprints forgotten before their horizon to stay within
    /// [`EngineConfig::max_dedupe_entries`].
    pub dedupe_forgotten: u64,
}

/// One tracked user. The id lives here only; the index holds slot numbers and hashes ids
/// through the slots, so each id is stored once.
struct Slot {
    user_id: UserId,
    state: UserState,
    /// The user's true next check (whole seconds since the epoch; 0 = none).
    deadline: u32,
    /// The earliest entry this slot has in the timer heap (0 = none). Timers are lazy: an event
    /// that moves the deadline later only updates `deadline`; the queued entry fires, sees the
    /// later deadline and re-queues itself. The heap is touched once per deadline, not per event.
    queued: u32,
}

/// The whole second at or after `ts` (deadlines are evaluated on whole seconds), or `None` past
/// the 32-bit seconds: such a deadline is never reached (events end well before, see
/// [`crate::event::END_TS`]), and saturating it would make it due again as soon as it fired.
fn ceil_secs(ts: Millis) -> Option<u32> {
    u32::try_from(ts.div_euclid(1000) + i64::from(ts.rem_euclid(1000) != 0))
        .ok()
        .filter(|s| *s < u32::MAX)
        .map(|s| s.max(1))
}

/// Per-user state, timers and scoring.
pub struct Engine {
    config: EngineConfig,
    /// The features of `config.windows`.
    layout: &'static FeatureLayout,
    model: Option<Arc<dyn Scorer>>,
    hasher: ahash::RandomState,
    /// Slot numbers, found by hashing the user id held in the slot.
    index: HashTable<u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    timers: TimerQueue,
    /// Event-time clock: never moves backwards.
    clock: Millis,
    counters: EngineCounters,
    dedupe: Deduper,
    /// Users per lifecycle stage and cumulative transitions between stages.
    stages: StageStats,
    /// Alerts whose outcome window is still open, by slot. Only recently alerted users are
    /// here, so this stays small next to the user table.
    outcomes: AHashMap<u32, PendingOutcome>,
    /// Outcome events decided but not yet taken by the caller.
    outcome_events: Vec<OutcomeEvent>,
    /// Churn-risk table changes not yet taken by the caller ([`Engine::drain_table`]).
    table: Vec<TableChange>,
    /// Users changed since the last checkpoint, when durable state is on.
    changes: Option<ChangeSet>,
}

impl Engine {
    /// A new engine. Without a model it only keeps state (training and replay of features).
    ///
    /// # Panics
    ///
    /// If the model was loaded for other windows than `config.windows`: its feature indices
    /// would read the wrong features. Load it for the same windows (`Model::load_for`), which
    /// refuses a mismatch with an error that names it.
    pub fn new(config: EngineConfig, model: Option<Arc<dyn Scorer>>) -> Engine {
        let layout = FeatureLayout::of(config.windows);
        assert_model_layout(model.as_deref(), layout);
        Engine {
            layout,
            model,
            hasher: ahash::RandomState::new(),
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            timers: TimerQueue::default(),
            clock: Millis::MIN,
            counters: EngineCounters::default(),
            dedupe: Deduper::new(config.dedupe_horizon, config.max_dedupe_entries),
            stages: StageStats::default(),
            outcomes: AHashMap::new(),
            outcome_events: Vec::new(),
            table: Vec::new(),
            changes: None,
            config,
        }
    }

    /// Moves the outcome events decided so far (returns within the window, windows that ended)
    /// into `out`.
    pub fn drain_outcomes(&mut self, out: &mut Vec<OutcomeEvent>) {
        out.append(&mut self.outcome_events);
    }

    /// Replaces the model (hot reload); state is untouched.
    ///
    /// # Panics
    ///
    /// If the model was loaded for other windows than the engine's (see [`Engine::new`]).
    pub fn set_model(&mut self, model: Option<Arc<dyn Scorer>>) {
        assert_model_layout(model.as_deref(), self.layout);
        self.model = model;
    }

    /// The features this engine computes (from its windows).
    pub fn layout(&self) -> &'static FeatureLayout {
        self.layout
    }

    /// The model in use, if any.
    pub fn model(&self) -> Option<&Arc<dyn Scorer>> {
        self.model.as_ref()
    }

    /// The engine's event-time clock (`Millis::MIN` before anything happened).
    pub fn clock(&self) -> Millis {
        self.clock
    }

    fn find(&self, user_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(user_id);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots[i as usize]
                    .as_ref()
                    .is_some_and(|s| s.user_id.is(user_id))
            })
            .copied()
    }

    /// A user's state, if tracked.
    pub fn state(&self, user_id: &str) -> Option<&UserState> {
        let idx = self.find(user_id)?;
        self.slots[idx as usize].as_ref().map(|s| &s.state)
    }

    /// A user's features as of the engine clock (or `at`, if later).
    pub fn features(&self, user_id: &str, at: Millis) -> Option<FeatureVector> {
        self.state(user_id)
            .map(|s| s.features(at.max(self.clock), self.layout))
    }

    /// Every tracked user id with their features as of `at` (training snapshots, replay output).
    pub fn snapshot(
        &self,
        at: Millis,
    ) -> impl Iterator<Item = (&str, &UserState, FeatureVector)> + '_ {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.state.has_activity())
            .map(move |s| (&*s.user_id, &s.state, s.state.features(at, self.layout)))
    }

    /// Folds one validated event into its user's state and scores the user.
    ///
    /// Refuses (`too_late`) an event older than the clock minus the allowed lateness: its windows
    /// may already have been scored and pruned, so folding it in would be silently wrong.
    /// Refuses first what the state cannot hold exactly (see [`crate::event::check`]): ids
    /// longer than the configured bound, times outside the representable range, amounts over
    /// the maximum. Refuses (`user_cap`) a new user once the engine holds
    /// [`EngineConfig::max_users`].
    pub fn apply(&mut self, event: &Event) -> Result<Applied, Rejection> {
        crate::event::check(event, self.config.max_id_bytes)?;
        if self.clock != Millis::MIN
            && event.ts < self.clock.saturating_sub(self.config.allowed_lateness)
        {
            return Err(Rejection::new(
                RejectReason::TooLate,
                format!(
                    "event time {} is {:.1} h behind the watermark {} (allowed lateness {:.1} h)",
                    alert::rfc3339(event.ts),
                    (self.clock - event.ts) as f64 / 3_600_000.0,
                    alert::rfc3339(self.clock),
                    self.config.allowed_lateness as f64 / 3_600_000.0
                ),
            ));
        }
        if event.kind == EventKind::Erase {
            self.erase(&event.user_id);
            return Ok(Applied::Erased);
        }
        if self.index.len() >= self.config.max_users && self.find(&event.user_id).is_none() {
            return Err(Rejection::new(
                RejectReason::UserCap,
                format!(
                    "a new user, and this partition already holds {} users, the most it may \
                     (--max-users-per-partition); the users held keep their state",
                    self.index.len()
                ),
            ));
        }
        if self
            .dedupe
            .is_duplicate(&event.user_id, &event.event_id, event.ts, self.clock)
        {
            self.counters.duplicates += 1;
            return Ok(Applied::Duplicate);
        }
        if event.ts < self.clock {
            self.counters.late_accepted += 1;
        }
        let (idx, fresh) = self.slot_for(&event.user_id);
        if let Some(changes) = &mut self.changes {
            changes.mark(idx);
        }
        let now = self.clock.max(event.ts);
        let at_risk_ms = (self.config.lifecycle.at_risk_days * DAY_MS as f64) as Millis;
        let slot = self.slots[idx as usize]
            .as_mut()
            .expect("slot_for returns a live slot");
        let stage_before = slot.state.stage();
        if !fresh && matches!(event.kind, EventKind::Login | EventKind::Purchase) {
            let silence = event.ts.saturating_sub(slot.state.silence_start());
            if silence >= at_risk_ms {
                slot.state.note_return(event.ts);
            }
        }
        slot.state.apply(event);
        slot.state.prune(now, self.config.windows.kept_days());
        let totals = slot.state.window_totals(now, self.layout);
        let returned = match event.kind {
            EventKind::Login => Some(ReturnKind::Login),
            EventKind::Purchase => Some(ReturnKind::Purchase),
            _ => None,
        };
        if let Some(kind) = returned {
            if let Some(p) = self.outcomes.get(&idx) {
                if event.ts > p.alerted_at && event.ts <= p.window_end {
                    if let Some(p) = self.outcomes.remove(&idx) {
                        self.outcome_events
                            .push(p.resolve(&slot.user_id, Some((event.ts, kind))));
                    }
                }
            }
        }
        if fresh {
            let stage = slot.state.stage_with(&totals, &self.config.lifecycle, now);
            slot.state.set_stage(stage);
            self.stages.users.enter(stage);
        } else {
            self.update_stage(idx, &totals, now);
        }
        // Windows move by the day: a second scoring on the same day says little new, so events
        // score a user at most once per day (timers and stage changes still do).
        let slot = self.slots[idx as usize].as_ref().expect("live slot");
        let today = crate::features::window::day_of(now) as u16;
        let scored =
            if fresh || slot.state.last_scored_day() != today || slot.state.stage() != stage_before
            {
                self.score(idx, &totals, now, Trigger::Event)
            } else {
                None
            };
        self.schedule(idx, now, &totals, None, Trigger::Event);
        Ok(Applied::Updated { scored })
    }

    /// Moves the clock to `now` (never backwards) and re-scores every user whose deadline has
    /// passed, appending what came of it to `out`. Returns how many users were re-scored.
    ///
    /// A `now` at or past [`crate::event::END_TS`] is refused: the clock stays where it is
    /// (callers check times they are given with [`crate::event::check_time`]). The work is
    /// bounded: a user re-queued while firing is always re-queued later than the entry that
    /// fired.
    pub fn advance(&mut self, now: Millis, out: &mut Vec<Scored>) -> usize {
        if now >= crate::event::END_TS {
            tracing::warn!(
                now,
                "engine clock not moved: the time is outside {}",
                crate::event::time_range()
            );
            return 0;
        }
        if now > self.clock {
            self.clock = now;
            self.dedupe.prune(now);
        }
        let mut fired = 0;
        let now_secs = u32::try_from(self.clock.div_euclid(1000).max(0)).unwrap_or(u32::MAX);
        while let Some((due, idx)) = self.timers.pop_due(now_secs) {
            let Some(slot) = self.slots[idx as usize].as_mut() else {
                continue; // the user was erased or evicted: a stale entry
            };
            if slot.queued != due {
                continue; // superseded by an earlier entry of the same slot
            }
            slot.queued = 0;
            if slot.deadline > due {
                // Events moved the deadline on since this entry was queued.
                slot.queued = slot.deadline;
                self.timers.push(slot.deadline, idx);
                continue;
            }
            slot.deadline = 0;
            if let Some(changes) = &mut self.changes {
                changes.mark(idx);
            }
            // Evaluate at the deadline, not at `now`: a long catch-up jump must give the same
            // decisions as a clock that ticked through every day.
            let at = Millis::from(due) * 1000;
            // A user with no activity yet (only an opt-out) has no last activity to count the
            // retention from: kept, so the opt-out is remembered.
            let silent = at.checked_sub(slot.state.last_activity_ms());
            if silent.is_some_and(|s| s > self.config.retention) {
                self.evict(idx);
                continue;
            }
            slot.state.prune(at, self.config.windows.kept_days());
            let totals = slot.state.window_totals(at, self.layout);
            if self.outcomes.get(&idx).is_some_and(|p| p.window_end <= at) {
                if let Some(p) = self.outcomes.remove(&idx) {
                    self.outcome_events.push(p.resolve(&slot.user_id, None));
                }
            }
            fired += 1;
            self.update_stage(idx, &totals, at);
            // Computed once for the scoring and the scheduler's silence bound, which both read
            // the features at `at` (scoring changes no input of them).
            let features = self
                .model
                .is_some()
                .then(|| slot_features(&self.slots, idx, &totals, at));
            if let Some(features) = &features {
                if let Some(s) = self.score_features(idx, features, at, Trigger::Timer) {
                    out.push(s);
                }
            }
            self.schedule(idx, at, &totals, features.as_ref(), Trigger::Timer);
        }
        fired
    }

    /// Re-derives the user's lifecycle stage at `now`, recording a transition if it changed.
    fn update_stage(&mut self, idx: u32, totals: &Totals, now: Millis) {
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return;
        };
        let stage = slot.state.stage_with(totals, &self.config.lifecycle, now);
        let before = slot.state.set_stage(stage);
        if stage != before {
            self.stages.users.leave(before);
            self.stages.users.enter(stage);
            self.stages.transitions.record(before, stage);
        }
    }

    fn score(
        &mut self,
        idx: u32,
        totals: &Totals,
        now: Millis,
        trigger: Trigger,
    ) -> Option<Scored> {
        self.model.as_ref()?;
        let features = slot_features(&self.slots, idx, totals, now);
        self.score_features(idx, &features, now, trigger)
    }

    /// [`Engine::score`] with the user's features at `now` already computed.
    fn score_features(
        &mut self,
        idx: u32,
        features: &FeatureVector,
        now: Millis,
        trigger: Trigger,
    ) -> Option<Scored> {
        let model = self.model.clone()?;
        let slot = self.slots[idx as usize].as_mut()?;
        let features = *features;
        let score = model.score(&features);
        slot.state
            .mark_scored(crate::features::window::day_of(now) as u16);
        let mut decision = alert::decide(
            score,
            model.threshold(),
            slot.state.alerted_this_episode(),
            slot.state.opted_out(),
        );
        let stage = slot.state.stage();
        let policy = &self.config.policy;
        let advice = (decision == AlertDecision::Raise || self.config.score_table)
            .then(|| advise(policy, &slot.state, stage, &features, score, now));
        if let Some(advice) = advice.as_ref().filter(|_| self.config.score_table) {
            let mut mark = slot.state.table_mark();
            let scoring = table::Scoring {
                user_id: &slot.user_id,
                score,
                stage,
                advice,
                model_version: model.version(),
                now,
            };
            table::note(&mut self.table, &mut mark, policy, &scoring);
            slot.state.set_table_mark(mark);
        }
        let mut alert = None;
        if let Some(advice) = advice.filter(|_| decision == AlertDecision::Raise) {
            let today = crate::features::window::day_of(now) as u16;
            match slot
                .state
                .caps()
                .check(today, &policy.caps_for(advice.rule))
            {
                Err(reason) => decision = AlertDecision::Suppressed(reason),
                Ok(()) => {
                    slot.state.record_alert(today);
                    let a = build_alert(&AlertInputs {
                        user_id: &slot.user_id,
                        state: &slot.state,
                        model: &*model,
                        features: &features,
                        score,
                        now,
                        trigger,
                        top_reasons: self.config.top_reasons,
                        policy,
                        advice: &advice,
                    });
                    let pending = PendingOutcome {
                        alert_id: a.alert_id,
                        arm: a.experiment_arm,
                        alerted_at: now,
                        window_end: now
                            .saturating_add(i64::from(policy.outcome_window_days()) * DAY_MS),
                        model_version: model.shared_version(),
                    };
                    // A second alert while the first is still watched (the user came back
                    // without logging in or buying, then went quiet again): the first did
                    // not win them back.
                    if let Some(earlier) = self.outcomes.insert(idx, pending) {
                        self.outcome_events
                            .push(earlier.resolve(&slot.user_id, None));
                    }
                    alert = Some(Box::new(a));
                }
            }
        }
        Some(Scored {
            trigger,
            stage,
            score,
            decision,
            alert,
        })
    }

    /// The user's slot, creating it if needed (`true` = newly created).
    fn slot_for(&mut self, user_id: &str) -> (u32, bool) {
        let hash = self.hasher.hash_one(user_id);
        let Engine {
            index,
            slots,
            free,
            hasher,
            ..
        } = self;
        if let Some(&idx) = index.find(hash, |&i| {
            slots[i as usize]
                .as_ref()
                .is_some_and(|s| s.user_id.is(user_id))
        }) {
            return (idx, false);
        }
        let slot = Slot {
            user_id: UserId::new(user_id),
            state: UserState::default(),
            deadline: 0,
            queued: 0,
        };
        let idx = match free.pop() {
            Some(i) => {
                slots[i as usize] = Some(slot);
                i
            }
            None => {
                if slots.len() == slots.capacity() {
                    // Grow by an eighth, not double: the table is most of the memory, and
                    // doubling would leave up to half of it empty.
                    slots.reserve_exact((slots.len() / 8).max(1024));
                }
                slots.push(Some(slot));
                u32::try_from(slots.len() - 1).expect("fewer than 2^32 users per engine")
            }
        };
        index.insert_unique(hash, idx, |&i| {
            slots[i as usize]
                .as_ref()
                .map_or(0, |s| hasher.hash_one(&*s.user_id))
        });
        (idx, true)
    }

    /// Removes a user, recording the removal for the changelog.
    fn remove(&mut self, idx: u32) {
        let Some(user_id) = self.slots[idx as usize]
            .as_ref()
            .map(|s| Box::<str>::from(&*s.user_id))
        else {
            return;
        };
        self.table_tombstone(&user_id);
        if let Some(changes) = &mut self.changes {
            changes.removed(user_id);
        }
        self.remove_untracked(idx);
    }

    fn remove_untracked(&mut self, idx: u32) {
        let Some(slot) = self.slots[idx as usize].as_ref() else {
            return;
        };
        // The heap entry, if any, stays behind and is skipped when it comes up.
        let hash = self.hasher.hash_one(&*slot.user_id);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.outcomes.remove(&idx);
        if let Some(slot) = self.slots[idx as usize].take() {
            if slot.state.has_activity() {
                self.stages.users.leave(slot.state.stage());
            }
            self.free.push(idx);
        }
    }

    fn evict(&mut self, idx: u32) {
        self.remove(idx);
        self.counters.evicted += 1;
    }

    /// Deletes everything known about a user (privacy erasure).
    pub fn erase(&mut self, user_id: &str) -> bool {
        match self.find(user_id) {
            Some(idx) => {
                self.remove(idx);
                self.counters.erased += 1;
                true
            }
            None => {
                // The table may hold a row this engine never wrote (the user's events came
                // keyless through another partition); deleting a missing row is harmless.
                self.table_tombstone(user_id);
                false
            }
        }
    }
}

/// The features of the user in slot `idx` at `now`, from their window totals at `now`; zeros
/// for a free slot (never asked for: callers hold a live slot).
fn slot_features(slots: &[Option<Slot>], idx: u32, totals: &Totals, now: Millis) -> FeatureVector {
    match slots[idx as usize].as_ref() {
        Some(slot) => slot.state.features_with(totals, now),
        None => FeatureVector::zeros(totals.layout()),
    }
}

/// Refuses a model whose feature indices were resolved for another layout than the engine's.
fn assert_model_layout(model: Option<&dyn Scorer>, layout: &'static FeatureLayout) {
    if let Some(m) = model {
        assert!(
            std::ptr::eq(m.layout(), layout),
            "model {} was loaded for windows {}, the engine runs windows {}: load it with \
             the engine's windows",
            m.version(),
            m.layout().windows(),
            layout.windows()
        );
    }
}

#[cfg(test)]
pub(super) mod tests;
