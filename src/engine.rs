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

use std::collections::BTreeSet;
use std::sync::Arc;

use ahash::AHashMap;

use crate::alert::{self, AlertDecision, Reason, Trigger, WinbackAlert, ALERT_SCHEMA_VERSION};
use crate::event::{Event, EventKind, RejectReason, Rejection};
use crate::features::{FeatureVector, UserState};
use crate::model::Model;
use crate::{Millis, DAY_MS};

/// Tunables of the core, independent of where events come from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far behind the watermark an event may be and still be folded into state.
    pub allowed_lateness: Millis,
    /// How often a silent user is re-scored (event time).
    pub rescore_interval: Millis,
    /// Users silent for longer than this are evicted from memory.
    pub retention: Millis,
    /// Number of top reasons carried in an alert.
    pub top_reasons: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: 3 * DAY_MS,
            rescore_interval: DAY_MS,
            retention: 400 * DAY_MS,
            top_reasons: 3,
        }
    }
}

/// What became of one scoring.
#[derive(Debug, Clone)]
pub struct Scored {
    pub trigger: Trigger,
    pub score: f64,
    pub decision: AlertDecision,
    /// Present when `decision` is [`AlertDecision::Raise`].
    pub alert: Option<WinbackAlert>,
}

/// What became of one accepted event.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Folded into state; `scored` is `None` when the engine runs without a model.
    Updated { scored: Option<Scored> },
    /// An `erase` request: the user's state is gone.
    Erased,
}

/// Running totals the engine keeps about itself (exported as metrics by the service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub evicted: u64,
    pub erased: u64,
}

struct Slot {
    user_id: Box<str>,
    state: UserState,
    /// Current entry in the timer set, if any.
    deadline: Option<Millis>,
}

/// Per-user state, timers and scoring.
pub struct Engine {
    config: EngineConfig,
    model: Option<Arc<Model>>,
    index: AHashMap<Box<str>, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    timers: BTreeSet<(Millis, u32)>,
    /// Event-time clock: never moves backwards.
    clock: Millis,
    counters: EngineCounters,
}

impl Engine {
    /// A new engine. Without a model it only keeps state (training and replay of features).
    pub fn new(config: EngineConfig, model: Option<Arc<Model>>) -> Engine {
        Engine {
            config,
            model,
            index: AHashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
            clock: Millis::MIN,
            counters: EngineCounters::default(),
        }
    }

    /// Replaces the model (hot reload); state is untouched.
    pub fn set_model(&mut self, model: Option<Arc<Model>>) {
        self.model = model;
    }

    /// The model in use, if any.
    pub fn model(&self) -> Option<&Arc<Model>> {
        self.model.as_ref()
    }

    /// The engine's event-time clock (`Millis::MIN` before anything happened).
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// Number of users in memory.
    pub fn users(&self) -> usize {
        self.index.len()
    }

    /// Eviction and erasure totals.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// A user's state, if tracked.
    pub fn state(&self, user_id: &str) -> Option<&UserState> {
        let idx = *self.index.get(user_id)?;
        self.slots[idx as usize].as_ref().map(|s| &s.state)
    }

    /// A user's features as of the engine clock (or `at`, if later).
    pub fn features(&self, user_id: &str, at: Millis) -> Option<FeatureVector> {
        self.state(user_id).map(|s| s.features(at.max(self.clock)))
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
            .map(move |s| (&*s.user_id, &s.state, s.state.features(at)))
    }

    /// Folds one validated event into its user's state and scores the user.
    ///
    /// Refuses (`too_late`) an event older than the clock minus the allowed lateness: its windows
    /// may already have been scored and pruned, so folding it in would be silently wrong.
    pub fn apply(&mut self, event: &Event) -> Result<Applied, Rejection> {
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
        let idx = self.slot_for(&event.user_id);
        let now = self.clock.max(event.ts);
        let slot = self.slots[idx as usize]
            .as_mut()
            .expect("slot_for returns a live slot");
        slot.state.apply(event);
        slot.state.prune(now);
        let scored = self.score(idx, now, Trigger::Event);
        self.schedule(idx, now);
        Ok(Applied::Updated { scored })
    }

    /// Moves the clock to `now` (never backwards) and re-scores every user whose deadline has
    /// passed, appending what came of it to `out`. Returns how many users were re-scored.
    pub fn advance(&mut self, now: Millis, out: &mut Vec<Scored>) -> usize {
        if now > self.clock {
            self.clock = now;
        }
        let mut fired = 0;
        while let Some(&(deadline, idx)) = self.timers.first() {
            if deadline > self.clock {
                break;
            }
            self.timers.pop_first();
            let Some(slot) = self.slots[idx as usize].as_mut() else {
                continue;
            };
            slot.deadline = None;
            // Evaluate at the deadline, not at `now`: a long catch-up jump must give the same
            // decisions as a clock that ticked through every day.
            let at = deadline;
            if at - slot.state.last_activity > self.config.retention {
                self.evict(idx);
                continue;
            }
            slot.state.prune(at);
            fired += 1;
            if let Some(s) = self.score(idx, at, Trigger::Timer) {
                out.push(s);
            }
            self.schedule(idx, at);
        }
        fired
    }

    fn score(&mut self, idx: u32, now: Millis, trigger: Trigger) -> Option<Scored> {
        let model = self.model.clone()?;
        let slot = self.slots[idx as usize].as_mut()?;
        let features = slot.state.features(now);
        let score = model.score(&features);
        let decision = alert::decide(
            score,
            model.threshold(),
            slot.state.alerted_this_episode(),
            slot.state.opted_out,
        );
        let alert = (decision == AlertDecision::Raise).then(|| {
            slot.state.alerted_episode = slot.state.last_activity;
            build_alert(
                &slot.user_id,
                &slot.state,
                &model,
                &features,
                score,
                now,
                trigger,
                self.config.top_reasons,
            )
        });
        Some(Scored {
            trigger,
            score,
            decision,
            alert,
        })
    }

    /// Next check: one rescore interval after `now`, while the user is within retention. Users
    /// already alerted this episode only need a check at their eviction time.
    fn schedule(&mut self, idx: u32, now: Millis) {
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return;
        };
        if let Some(old) = slot.deadline.take() {
            self.timers.remove(&(old, idx));
        }
        let eviction = slot
            .state
            .last_activity
            .saturating_add(self.config.retention)
            .saturating_add(1);
        let next = if slot.state.alerted_this_episode() || self.model.is_none() {
            eviction
        } else {
            now.saturating_add(self.config.rescore_interval)
                .min(eviction)
        };
        slot.deadline = Some(next);
        self.timers.insert((next, idx));
    }

    fn slot_for(&mut self, user_id: &str) -> u32 {
        if let Some(&idx) = self.index.get(user_id) {
            return idx;
        }
        let slot = Slot {
            user_id: user_id.into(),
            state: UserState::default(),
            deadline: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 users per engine")
            }
        };
        self.index.insert(user_id.into(), idx);
        idx
    }

    fn remove(&mut self, idx: u32) {
        if let Some(slot) = self.slots[idx as usize].take() {
            if let Some(d) = slot.deadline {
                self.timers.remove(&(d, idx));
            }
            self.index.remove(&slot.user_id);
            self.free.push(idx);
        }
    }

    fn evict(&mut self, idx: u32) {
        self.remove(idx);
        self.counters.evicted += 1;
    }

    /// Deletes everything known about a user (privacy erasure).
    pub fn erase(&mut self, user_id: &str) -> bool {
        match self.index.get(user_id) {
            Some(&idx) => {
                self.remove(idx);
                self.counters.erased += 1;
                true
            }
            None => false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_alert(
    user_id: &str,
    state: &UserState,
    model: &Model,
    features: &FeatureVector,
    score: f64,
    now: Millis,
    trigger: Trigger,
    top_reasons: usize,
) -> WinbackAlert {
    let used = model
        .artifact()
        .features
        .iter()
        .filter_map(|f| {
            let v = features.get(&f.name)?;
            Some((f.name.clone(), serde_json::json!(alert::round4(v))))
        })
        .collect();
    WinbackAlert {
        schema_version: ALERT_SCHEMA_VERSION,
        alert_id: alert::alert_id(user_id, model.version(), state.last_activity),
        user_id: user_id.to_string(),
        ts: alert::rfc3339(now),
        score: alert::round4(score),
        threshold: model.threshold(),
        model_version: model.version().to_string(),
        trigger,
        last_activity_at: alert::rfc3339(state.last_activity),
        reasons: model
            .top_reasons(features, top_reasons)
            .iter()
            .map(Reason::from)
            .collect(),
        features: used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelArtifact, ModelFeature, Transform, ARTIFACT_FORMAT};

    /// A model whose score is >= 0.5 exactly when the user has been silent for 20.5 days or more.
    fn silence_model() -> Arc<Model> {
        let artifact = ModelArtifact {
            format: ARTIFACT_FORMAT.into(),
            version: "sha256:test".into(),
            kind: "logistic_regression".into(),
            features: vec![ModelFeature {
                name: "days_since_last_activity".into(),
                transform: Transform::Identity,
                mean: 20.5,
                std: 1.0,
                coef: 1.0,
            }],
            intercept: 0.0,
            threshold: 0.5,
            training: serde_json::json!({}),
        };
        Arc::new(Model::from_artifact(artifact, "test").unwrap())
    }

    fn ev(user: &str, day: f64, kind: EventKind) -> Event {
        Event {
            event_id: format!("{user}-{day}"),
            user_id: user.into(),
            kind,
            ts: (day * DAY_MS as f64) as Millis,
            amount: if kind == EventKind::Purchase {
                20.0
            } else {
                0.0
            },
        }
    }

    fn run_days(engine: &mut Engine, from: i64, to: i64) -> Vec<Scored> {
        let mut out = Vec::new();
        for d in from..=to {
            engine.advance(d * DAY_MS, &mut out);
        }
        out
    }

    #[test]
    fn a_silent_user_is_alerted_once_by_timer() {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        e.apply(&ev("quiet", 100.0, EventKind::Login)).unwrap();
        let alerts: Vec<_> = run_days(&mut e, 100, 200)
            .into_iter()
            .filter_map(|s| s.alert)
            .collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].trigger, Trigger::Timer);
        assert_eq!(alerts[0].ts, alert::rfc3339(121 * DAY_MS)); // first daily check past 20.5 days
    }

    #[test]
    fn a_user_who_returns_before_the_deadline_is_not_alerted() {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        let mut alerts = 0;
        for d in (100..200).step_by(10) {
            e.apply(&ev("regular", d as f64, EventKind::Login)).unwrap();
            alerts += run_days(&mut e, d, d + 9)
                .iter()
                .filter(|s| s.alert.is_some())
                .count();
        }
        assert_eq!(alerts, 0);
    }

    #[test]
    fn a_return_opens_a_new_episode_with_a_new_alert_id() {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
        let first: Vec<_> = run_days(&mut e, 100, 130)
            .into_iter()
            .filter_map(|s| s.alert)
            .collect();
        e.apply(&ev("u", 131.0, EventKind::Purchase)).unwrap();
        let second: Vec<_> = run_days(&mut e, 131, 170)
            .into_iter()
            .filter_map(|s| s.alert)
            .collect();
        assert_eq!((first.len(), second.len()), (1, 1));
        assert_ne!(first[0].alert_id, second[0].alert_id);
    }

    #[test]
    fn a_catch_up_jump_gives_the_same_alerts_as_daily_ticks() {
        let mut daily = Engine::new(EngineConfig::default(), Some(silence_model()));
        let mut jump = Engine::new(EngineConfig::default(), Some(silence_model()));
        for e in [&mut daily, &mut jump] {
            e.apply(&ev("a", 10.0, EventKind::Login)).unwrap();
            e.apply(&ev("b", 15.5, EventKind::Purchase)).unwrap();
        }
        let a: Vec<_> = run_days(&mut daily, 10, 100)
            .into_iter()
            .filter_map(|s| s.alert)
            .collect();
        let mut out = Vec::new();
        jump.advance(100 * DAY_MS, &mut out);
        let b: Vec<_> = out.into_iter().filter_map(|s| s.alert).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn opted_out_users_are_scored_but_never_alerted() {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
        e.apply(&ev("u", 100.5, EventKind::OptOut)).unwrap();
        let out = run_days(&mut e, 100, 150);
        assert!(out.iter().any(|s| s.decision == AlertDecision::OptedOut));
        assert!(out.iter().all(|s| s.alert.is_none()));
    }

    #[test]
    fn too_late_events_are_refused_and_erase_forgets() {
        let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
        e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
        e.advance(100 * DAY_MS, &mut Vec::new());
        let late = e.apply(&ev("u", 90.0, EventKind::Login)).unwrap_err();
        assert_eq!(late.reason, RejectReason::TooLate);
        e.apply(&ev("u", 99.0, EventKind::Login)).unwrap(); // within 3 days: accepted
        assert!(matches!(
            e.apply(&ev("u", 100.0, EventKind::Erase)).unwrap(),
            Applied::Erased
        ));
        assert_eq!(e.users(), 0);
        assert!(e.state("u").is_none());
        assert_eq!(e.counters().erased, 1);
    }

    #[test]
    fn users_silent_beyond_retention_are_evicted() {
        let cfg = EngineConfig {
            retention: 30 * DAY_MS,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(cfg, Some(silence_model()));
        e.apply(&ev("gone", 0.0, EventKind::Login)).unwrap();
        e.apply(&ev("here", 35.0, EventKind::Login)).unwrap();
        e.advance(40 * DAY_MS, &mut Vec::new());
        assert!(e.state("gone").is_none());
        assert!(e.state("here").is_some());
        assert_eq!(e.counters().evicted, 1);
    }
}
