//! `churnguard loadgen`: a realistic activity stream produced to a Kafka topic, for the
//! end-to-end benchmarks (`scripts/bench.sh`) and for load-testing a deployment.
//!
//! The stream reuses the personas of [`crate::synth`] (visit rates, purchase habits, baskets):
//! users open sessions (login, page views and searches, maybe a cart and a purchase, sometimes a
//! complaint, review, share or campaign open, then `session_end`), many sessions interleave, and
//! a user is drawn for a new session with a weight from their persona. A share of users goes
//! silent for good partway through the history (fading out over three weeks first), which is
//! what the service must notice without any event. A share of events arrives late (out of
//! order, by up to `jitter`), and a small share is broken (malformed JSON, a missing field, an
//! unknown type) so the dead-letter path is loaded too. Every message is keyed by `user_id`.
//!
//! Two phases, both optional:
//! * **history**: `events` events spread evenly over `days` of event time ending now, produced
//!   as fast as possible or at a fixed rate (throughput runs);
//! * **live**: after the history, events whose event time *is* their produce time, at a fixed
//!   rate for a number of seconds (latency runs).
//!
//! Every event carries its produce time (wall clock, ms) as `props.sent_ms`: `props` is the one
//! place the schema promises the service never reads, so the stamp cannot change what is
//! measured. In the live phase an on-time event's `ts` equals that produce time, which is what
//! lets a latency probe attribute an alert to the event that caused it (see `README.md`,
//! "Benchmarks: end to end").
//!
//! For latency runs the generator can also plant *due* users: users with an identical, regular
//! history who then fall silent so that their first win-back alert comes due at instants spread
//! over a chosen wall-clock window. The silence after which that alert comes is found by running
//! the template through the real [`Engine`] with the real model, so nothing about the model is
//! assumed here.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::engine::{Applied, Engine, EngineConfig};
use crate::event::{Event, EventKind};
use crate::model::Model;
use crate::synth::Persona;
use crate::{Millis, DAY_MS};

/// Why a load run could not be set up or did not deliver everything.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A parameter is out of range; the message says which and why.
    #[error("invalid load generator setting: {0}")]
    Config(String),
    /// The producer could not be created or refused a message for good.
    #[error("Kafka producer: {0}")]
    Kafka(#[from] KafkaError),
    /// Some messages were not acknowledged by the broker (topic missing? broker down?).
    #[error("{failed} of {sent} messages were not delivered to {topic} (does the topic exist?)")]
    Delivery {
        failed: u64,
        sent: u64,
        topic: String,
    },
    /// The due-user template never alerts with this model and engine configuration.
    #[error("the due-user template raised no alert within {days} days of silence with this model; due users cannot be planted")]
    TemplateNeverAlerts { days: i64 },
}

/// Shape of the generated stream.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Distinct users (ids `u0000000` …).
    pub users: usize,
    /// Events of the history phase.
    pub events: u64,
    /// Event-time span of the history phase, ending at `end`.
    pub days: u32,
    /// Event time at which the history ends (normally the wall clock at start).
    pub end: Millis,
    /// Share of users who go silent for good partway through the history.
    pub silent_share: f64,
    /// Share of events that arrive late: their `ts` lies up to `jitter` before their slot.
    pub late_share: f64,
    /// Largest delay of a late event (keep it well under the service's allowed lateness).
    pub jitter: Millis,
    /// Share of messages that are broken on purpose (dead-lettered by the service).
    pub bad_share: f64,
    pub seed: u64,
    /// Prefix of every `event_id`, so runs on the same topic never collide.
    pub run_id: String,
}

impl LoadConfig {
    fn validate(&self) -> Result<(), LoadgenError> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(LoadgenError::Config(format!(
                    "{name} = {v} must lie in [0, 1]"
                )))
            }
        };
        share("silent share", self.silent_share)?;
        share("late share", self.late_share)?;
        share("bad share", self.bad_share)?;
        if self.users == 0 || self.users > u32::MAX as usize {
            return Err(LoadgenError::Config(format!(
                "users = {} must lie in [1, {}]",
                self.users,
                u32::MAX
            )));
        }
        if self.days == 0 {
            return Err(LoadgenError::Config("days must be at least 1".into()));
        }
        if self.jitter < 1 {
            return Err(LoadgenError::Config("jitter must be at least 1 ms".into()));
        }
        Ok(())
    }
}

/// How a deliberately broken message is broken; each maps to one service rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadKind {
    /// Cut off in the middle: not JSON.
    Truncated,
    /// No `user_id`.
    MissingUser,
    /// A `type` outside the schema.
    UnknownType,
}

impl BadKind {
    const ALL: [BadKind; 3] = [
        BadKind::Truncated,
        BadKind::MissingUser,
        BadKind::UnknownType,
    ];

    /// The reason the service gives when it dead-letters such a message.
    pub fn expected_reason(self) -> &'static str {
        match self {
            BadKind::Truncated => "malformed_json",
            BadKind::MissingUser => "missing_field",
            BadKind::UnknownType => "unknown_type",
        }
    }
}

/// Who an event belongs to: a generated user (by index) or a planted one (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Synthetic(u32),
    Named(Arc<str>),
}

impl UserRef {
    /// Writes the user id (`u0000042` or the planted name) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            UserRef::Synthetic(n) => {
                let _ = write!(out, "u{n:07}");
            }
            UserRef::Named(s) => out.extend_from_slice(s.as_bytes()),
        }
    }
}

/// One generated message before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub user: UserRef,
    pub kind: EventKind,
    /// Event time written to the message.
    pub ts: Millis,
    /// The slot the event was generated for; `ts < slot_ts` only for late events.
    pub slot_ts: Millis,
    pub amount: f64,
    /// Set when this message is broken on purpose.
    pub bad: Option<BadKind>,
    /// Whether it belongs to a planted (due) user.
    pub planted: bool,
}

/// Running totals of what was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenStats {
    pub messages: u64,
    pub bad: u64,
    pub late: u64,
    pub planted: u64,
    /// Valid events per kind, in [`EventKind::ALL`] order.
    pub by_kind: [u64; 15],
}

#[derive(Debug, Clone)]
struct UserPlan {
    persona: Persona,
    /// First instant the user may appear.
    start: Millis,
    /// From this instant on the user is silent for good.
    silent_at: Option<Millis>,
}

/// Sessions open at once: events of that many visits interleave in the stream.
const OPEN_SESSIONS: usize = 256;
/// A user fades out over this long before going silent (as in `synth`).
const FADE: Millis = 21 * DAY_MS;

/// The stream generator: pure (no I/O), deterministic for a seed.
pub struct Generator {
    cfg: LoadConfig,
    users: Vec<UserPlan>,
    /// Cumulative session weights, for drawing a user with probability ∝ weight.
    cumulative: Vec<f64>,
    rng: SmallRng,
    /// Open sessions: the user and the remaining steps, last step first.
    sessions: Vec<(u32, Vec<(EventKind, f64)>)>,
    planted: VecDeque<Event>,
    seq: u64,
    stats: GenStats,
}

impl Generator {
    /// Draws the user population; fails on out-of-range settings.
    pub fn new(cfg: LoadConfig) -> Result<Generator, LoadgenError> {
        cfg.validate()?;
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let span = i64::from(cfg.days) * DAY_MS;
        let begin = cfg.end - span;
        let mut users = Vec::with_capacity(cfg.users);
        let mut cumulative = Vec::with_capacity(cfg.users);
        let mut total = 0.0;
        for _ in 0..cfg.users {
            let persona = match rng.gen_range(0..10) {
                0..=1 => Persona::Loyal,
                2..=5 => Persona::Regular,
                _ => Persona::Casual,
            };
            // Most users exist from the start; a fifth arrive during the first half.
            let start = if rng.gen_bool(0.8) {
                begin
            } else {
                begin + rng.gen_range(0..span / 2 + 1)
            };
            let silent_at = rng
                .gen_bool(cfg.silent_share)
                .then(|| begin + (span as f64 * rng.gen_range(0.3..0.9)) as Millis)
                .map(|t| t.max(start + DAY_MS));
            // Within a persona, activity is skewed (exponential): a few heavy users.
            let skew = -(1.0 - rng.gen::<f64>()).ln();
            total += persona.sessions_per_day() * skew.max(0.01);
            cumulative.push(total);
            users.push(UserPlan {
                persona,
                start,
                silent_at,
            });
        }
        Ok(Generator {
            cfg,
            users,
            cumulative,
            rng,
            sessions: vec![(0, Vec::new()); OPEN_SESSIONS],
            planted: VecDeque::new(),
            seq: 0,
            stats: GenStats::default(),
        })
    }

    /// Totals so far.
    pub fn stats(&self) -> &GenStats {
        &self.stats
    }

    /// Adds planted events; they are emitted in event-time order, merged with the stream.
    pub fn plant(&mut self, mut events: Vec<Event>) {
        events.extend(self.planted.drain(..));
        events.sort_by_key(|e| e.ts);
        self.planted = events.into();
    }

    /// Planted events not yet emitted.
    pub fn planted_left(&self) -> usize {
        self.planted.len()
    }

    /// The history slot time of event `i` of `events`: even progress through the span, with a
    /// random offset inside the slot.
    pub fn history_slot(&mut self, i: u64) -> Millis {
        let span = i64::from(self.cfg.days) * DAY_MS;
        let f = (i as f64 + self.rng.gen::<f64>()) / self.cfg.events.max(1) as f64;
        self.cfg.end - span + (span as f64 * f.min(1.0)) as Millis
    }

    /// Whether user `u` may act at `t`; in the live phase every user who never goes silent may.
    fn accepts(&mut self, u: usize, t: Millis, live: bool) -> bool {
        let plan = &self.users[u];
        if live {
            return plan.silent_at.is_none();
        }
        if t < plan.start {
            return false;
        }
        match plan.silent_at {
            None => true,
            Some(s) if t >= s => false,
            Some(s) => {
                let to_go = s - t;
                to_go >= FADE || self.rng.gen_bool(0.3 + 0.7 * to_go as f64 / FADE as f64)
            }
        }
    }

    fn draw_user(&mut self, t: Millis, live: bool) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let mut u = 0;
        // Rejection sampling; after many misses (nearly everyone silent) take the last draw.
        for _ in 0..64 {
            let x = self.rng.gen::<f64>() * total;
            u = self
                .cumulative
                .partition_point(|&c| c <= x)
                .min(self.users.len() - 1);
            if self.accepts(u, t, live) {
                break;
            }
        }
        u as u32
    }

    /// The steps of one visit by a user of `persona`, last step first.
    fn session(&mut self, persona: Persona) -> Vec<(EventKind, f64)> {
        let rng = &mut self.rng;
        let mut steps = vec![(EventKind::Login, 0.0)];
        for _ in 0..rng.gen_range(1..6) {
            let kind = if rng.gen_bool(0.25) {
                EventKind::Search
            } else {
                EventKind::PageView
            };
            steps.push((kind, 0.0));
        }
        if rng.gen_bool(0.35) {
            steps.push((EventKind::CartAdd, 0.0));
            if rng.gen_bool(0.15) {
                steps.push((EventKind::CartRemove, 0.0));
            }
        }
        if rng.gen_bool(persona.purchase_prob()) {
            if rng.gen_bool(0.1) {
                steps.push((EventKind::CouponRedeem, 0.0));
            }
            let amount = (persona.basket() * rng.gen_range(0.3..2.5f64) * 100.0).round() / 100.0;
            steps.push((EventKind::Purchase, amount));
            if rng.gen_bool(0.04) {
                steps.push((EventKind::Refund, amount));
            }
        }
        match rng.gen_range(0..100) {
            0..=1 => steps.push((EventKind::Complaint, 0.0)),
            2..=4 => steps.push((EventKind::Review, 0.0)),
            5..=7 => steps.push((EventKind::Share, 0.0)),
            8..=15 => steps.push((EventKind::CampaignOpen, 0.0)),
            _ => {}
        }
        steps.push((EventKind::SessionEnd, 0.0));
        steps.reverse();
        steps
    }

    /// The next message for slot time `slot_ts`: a planted event that is due, or the next step
    /// of a random open session (a new session of a drawn user when it has ended).
    pub fn next(&mut self, slot_ts: Millis, live: bool) -> Generated {
        if self.planted.front().is_some_and(|e| e.ts <= slot_ts) {
            if let Some(e) = self.planted.pop_front() {
                return self.count(Generated {
                    user: UserRef::Named(Arc::from(e.user_id.as_str())),
                    kind: e.kind,
                    ts: e.ts,
                    slot_ts: e.ts,
                    amount: e.amount,
                    bad: None,
                    planted: true,
                });
            }
        }
        let slot = self.rng.gen_range(0..OPEN_SESSIONS);
        if self.sessions[slot].1.is_empty() {
            let u = self.draw_user(slot_ts, live);
            let steps = self.session(self.users[u as usize].persona);
            self.sessions[slot] = (u, steps);
        }
        let user = self.sessions[slot].0;
        let (kind, amount) = self.sessions[slot]
            .1
            .pop()
            .unwrap_or((EventKind::PageView, 0.0));
        let ts = if self.cfg.late_share > 0.0 && self.rng.gen_bool(self.cfg.late_share) {
            slot_ts - self.rng.gen_range(1..=self.cfg.jitter)
        } else {
            slot_ts
        };
        let bad = (self.cfg.bad_share > 0.0 && self.rng.gen_bool(self.cfg.bad_share))
            .then(|| BadKind::ALL[self.rng.gen_range(0..BadKind::ALL.len())]);
        self.count(Generated {
            user: UserRef::Synthetic(user),
            kind,
            ts,
            slot_ts,
            amount,
            bad,
            planted: false,
        })
    }

    fn count(&mut self, g: Generated) -> Generated {
        self.stats.messages += 1;
        if g.planted {
            self.stats.planted += 1;
        }
        if g.ts < g.slot_ts {
            self.stats.late += 1;
        }
        match g.bad {
            Some(_) => self.stats.bad += 1,
            None => {
                if let Some(i) = EventKind::ALL.iter().position(|k| *k == g.kind) {
                    self.stats.by_kind[i] += 1;
                }
            }
        }
        g
    }

    /// Encodes `g` as the message payload (wire schema; `props.sent_ms` = `sent_ms`) into
    /// `out`, and its key into `key`. Hand-written JSON: the generator must outpace the service.
    pub fn encode(&mut self, g: &Generated, sent_ms: Millis, key: &mut Vec<u8>, out: &mut Vec<u8>) {
        key.clear();
        out.clear();
        g.user.write_to(key);
        self.seq += 1;
        let _ = write!(out, "{{\"event_id\":\"{}-{:x}\"", self.cfg.run_id, self.seq);
        if g.bad != Some(BadKind::MissingUser) {
            out.extend_from_slice(b",\"user_id\":\"");
            out.extend_from_slice(key);
            out.push(b'"');
        }
        let kind = match g.bad {
            Some(BadKind::UnknownType) => "teleport",
            _ => g.kind.as_str(),
        };
        let _ = write!(out, ",\"type\":\"{kind}\",\"ts\":\"");
        write_rfc3339(out, g.ts);
        out.push(b'"');
        if g.amount > 0.0 {
            let _ = write!(out, ",\"amount\":{:.2}", g.amount);
        }
        let _ = write!(out, ",\"props\":{{\"sent_ms\":{sent_ms}}}}}");
        if g.bad == Some(BadKind::Truncated) {
            out.truncate(out.len() / 2);
        }
    }
}

/// Writes `ts` as RFC 3339 with milliseconds (`2026-11-20T08:01:00.000Z`) without allocating.
pub fn write_rfc3339(out: &mut Vec<u8>, ts: Millis) {
    let days = ts.div_euclid(DAY_MS);
    let ms_of_day = ts.rem_euclid(DAY_MS);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    );
}

/// The regular history of a planted due user whose last activity is `last`: a login and a page
/// view every day for 30 days, a purchase every fifth day. Identical for every due user, so all
/// of them alert after the same silence.
pub fn due_template(user_id: &str, last: Millis) -> Vec<Event> {
    let mut events = Vec::new();
    for d in (0..30).rev() {
        let t = last - d * DAY_MS - 60_000;
        let mut push = |kind: EventKind, t: Millis, amount: f64| {
            events.push(Event {
                event_id: format!("{user_id}-{d}-{}", kind.as_str()),
                user_id: user_id.to_string(),
                kind,
                ts: t,
                amount,
            });
        };
        push(EventKind::Login, t, 0.0);
        if d % 5 == 0 {
            push(EventKind::Purchase, t + 30_000, 60.0);
        }
        push(EventKind::PageView, t + 60_000, 0.0);
    }
    events
}

/// How long after its last activity a due user's first alert comes, found by driving the
/// template through the engine with `model`, the clock moving in 10 s steps (as a busy stream
/// moves it). `anchor` is the template's last activity (alignment to UTC days matters a little).
pub fn alert_offset(
    model: Arc<Model>,
    config: EngineConfig,
    anchor: Millis,
) -> Result<Millis, LoadgenError> {
    const HORIZON_DAYS: i64 = 120;
    let mut engine = Engine::new(config, Some(model));
    let mut out = Vec::new();
    let events = due_template("due-probe", anchor);
    for e in &events {
        engine.advance(e.ts, &mut out);
        if let Ok(Applied::Updated {
            scored: Some(s), ..
        }) = engine.apply(e)
        {
            if s.alert.is_some() {
                // Alerted while still active: the template cannot serve as a silent probe.
                return Err(LoadgenError::TemplateNeverAlerts { days: 0 });
            }
        }
    }
    let mut now = anchor;
    while now < anchor + HORIZON_DAYS * DAY_MS {
        now += 10_000;
        out.clear();
        engine.advance(now, &mut out);
        if let Some(a) = out.iter().find_map(|s| s.alert.as_ref()) {
            let ts = chrono::DateTime::parse_from_rfc3339(&a.ts)
                .map(|t| t.timestamp_millis())
                .unwrap_or(now);
            return Ok(ts - anchor);
        }
    }
    Err(LoadgenError::TemplateNeverAlerts { days: HORIZON_DAYS })
}

/// Plants `users` due users whose first alerts come due evenly over
/// `[first_alert_at, first_alert_at + window)`: returns their events (ids `due-00000` …).
pub fn due_users(
    users: usize,
    first_alert_at: Millis,
    window: Millis,
    offset: Millis,
) -> Vec<Event> {
    (0..users)
        .flat_map(|i| {
            let due = first_alert_at + window * i as i64 / users.max(1) as i64;
            due_template(&format!("due-{i:05}"), due - offset)
        })
        .collect()
}

/// Due users to plant for a latency run.
#[derive(Debug, Clone, Copy)]
pub struct DuePlan {
    /// How many due users.
    pub users: usize,
    /// When the first due user's alert comes due (wall clock, ms).
    pub first_alert_at: Millis,
    /// The due users' alerts are spread evenly over this long after `first_alert_at`.
    pub window: Millis,
}

/// The events of `plan`'s due users and the silence after which each alerts under `model`
/// (with the default engine configuration, as the service runs it).
pub fn plan_due_users(
    model: Arc<Model>,
    plan: &DuePlan,
) -> Result<(Vec<Event>, Millis), LoadgenError> {
    // Two passes: the offset depends a little on where the template falls in UTC days.
    let first = plan.first_alert_at;
    let rough = alert_offset(
        Arc::clone(&model),
        EngineConfig::default(),
        first - 13 * DAY_MS,
    )?;
    let offset = alert_offset(model, EngineConfig::default(), first - rough)?;
    Ok((due_users(plan.users, first, plan.window, offset), offset))
}

/// Where and how to produce.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub brokers: String,
    pub topic: String,
    /// History phase rate in events/s; 0 = as fast as possible.
    pub rate: f64,
    /// Live phase length; zero = no live phase.
    pub live: Duration,
    /// Live phase rate in events/s.
    pub live_rate: f64,
    /// Extra librdkafka settings (override the throughput defaults).
    pub kafka_options: Vec<(String, String)>,
}

/// What one run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub events: u64,
    pub history_events: u64,
    pub live_events: u64,
    pub bad: u64,
    pub late: u64,
    pub planted: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub history_seconds: f64,
    pub history_events_per_s: f64,
    /// Wall clock (ms) when the live phase started and ended (0 without one).
    pub live_start_ms: Millis,
    pub live_end_ms: Millis,
    pub payload_bytes: u64,
}

#[derive(Default)]
struct Counting {
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(error = %e, "delivery failed");
            }
        }
    }
}

/// The producer settings: tuned for throughput (large batches, 20 ms linger, lz4), then the
/// caller's overrides.
pub fn producer_config(brokers: &str, extra: &[(String, String)]) -> ClientConfig {
    let defaults = [
        ("linger.ms", "20"),
        ("batch.num.messages", "10000"),
        ("batch.size", "1000000"),
        ("queue.buffering.max.messages", "1000000"),
        ("queue.buffering.max.kbytes", "1048576"),
        ("compression.type", "lz4"),
        ("acks", "all"),
        ("message.timeout.ms", "120000"),
    ];
    crate::kafka::client::config(brokers, &defaults, extra)
}

fn wall_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Produces the history, then the live phase, and waits for every delivery.
pub fn produce(gen: &mut Generator, cfg: &ProduceConfig) -> Result<LoadReport, LoadgenError> {
    let producer: BaseProducer<Counting> = producer_config(&cfg.brokers, &cfg.kafka_options)
        .create_with_context(Counting::default())?;
    let (mut key, mut payload) = (Vec::with_capacity(16), Vec::with_capacity(256));
    let mut bytes = 0u64;
    let mut send = |g: &Generated, gen: &mut Generator| -> Result<(), LoadgenError> {
        gen.encode(g, wall_ms(), &mut key, &mut payload);
        bytes += payload.len() as u64;
        let mut record = BaseRecord::to(&cfg.topic)
            .key(&key[..])
            .payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    let started = Instant::now();
    let history = gen.cfg.events;
    let pace = |i: u64, rate: f64, since: Instant| {
        if rate > 0.0 && i % 64 == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate);
            if let Some(ahead) = due.checked_sub(since.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    };
    let mut history_sent = 0u64;
    for i in 0..history {
        pace(i, cfg.rate, started);
        let slot = gen.history_slot(i);
        let g = gen.next(slot, false);
        send(&g, gen)?;
        history_sent += 1;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    // Planted events left over (their times lie after the last slot but before the end).
    while gen.planted_left() > 0 {
        let g = gen.next(Millis::MAX, false);
        send(&g, gen)?;
        history_sent += 1;
    }
    flush(&producer)?;
    let history_seconds = started.elapsed().as_secs_f64();
    let (mut live_sent, mut live_start_ms, mut live_end_ms) = (0u64, 0, 0);
    if !cfg.live.is_zero() {
        let live_started = Instant::now();
        live_start_ms = wall_ms();
        let mut i = 0u64;
        while live_started.elapsed() < cfg.live {
            pace(i, cfg.live_rate, live_started);
            let g = gen.next(wall_ms(), true);
            send(&g, gen)?;
            live_sent += 1;
            i += 1;
            if i % 256 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        flush(&producer)?;
        live_end_ms = wall_ms();
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    let stats = gen.stats().clone();
    if failed > 0 {
        return Err(LoadgenError::Delivery {
            failed,
            sent: stats.messages,
            topic: cfg.topic.clone(),
        });
    }
    Ok(LoadReport {
        events: stats.messages,
        history_events: history_sent,
        live_events: live_sent,
        bad: stats.bad,
        late: stats.late,
        planted: stats.planted,
        seconds,
        events_per_s: stats.messages as f64 / seconds.max(1e-9),
        history_seconds,
        history_events_per_s: history_sent as f64 / history_seconds.max(1e-9),
        live_start_ms,
        live_end_ms,
        payload_bytes: bytes,
    })
}

fn flush(producer: &BaseProducer<Counting>) -> Result<(), LoadgenError> {
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

#[cfg(test)]
mod tests;
