//! A synthetic but realistic activity stream: the embedded default for `demo`, the load
//! generator, tests and the first model's training data.
//!
//! Users follow personas (loyal, regular, casual, newcomer) with their own visit rates and
//! purchase habits; a configurable share churns: their activity fades over a few weeks and then
//! stops for good, which is exactly what the service must notice without any event to react to.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::event::{Event, EventKind};
use crate::{Millis, DAY_MS};

/// Shape of the generated stream.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub users: usize,
    /// Length of history in days, ending at `end`.
    pub days: u32,
    /// Event time of the end of the stream (e.g. now).
    pub end: Millis,
    /// Share of users who churn at some point of the history.
    pub churn_share: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            users: 2_000,
            days: 180,
            end: 0,
            churn_share: 0.25,
            seed: 7,
        }
    }
}

/// Persona parameters: expected sessions per day and purchase probability per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    Loyal,
    Regular,
    Casual,
}

impl Persona {
    /// Expected sessions per day: sets how much of a stream the persona's users produce (the
    /// load generator weighs users by it).
    pub fn sessions_per_day(self) -> f64 {
        match self {
            Persona::Loyal => 0.9,
            Persona::Regular => 0.35,
            Persona::Casual => 0.15,
        }
    }
    /// Probability that a session ends in a purchase.
    pub fn purchase_prob(self) -> f64 {
        match self {
            Persona::Loyal => 0.25,
            Persona::Regular => 0.15,
            Persona::Casual => 0.12,
        }
    }
    /// Typical basket value in the shop currency.
    pub fn basket(self) -> f64 {
        match self {
            Persona::Loyal => 80.0,
            Persona::Regular => 45.0,
            Persona::Casual => 30.0,
        }
    }
}

/// Ground truth for one generated user.
#[derive(Debug, Clone)]
pub struct SynthUser {
    pub user_id: String,
    pub persona: Persona,
    /// Day index (0-based from the start of history) the user first appears.
    pub start_day: u32,
    /// Day index after which the user is silent for good, if they churn.
    pub churn_day: Option<u32>,
}

/// Generates users and their events, sorted by event time.
pub fn generate(cfg: &SynthConfig) -> (Vec<SynthUser>, Vec<Event>) {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let start = cfg.end - i64::from(cfg.days) * DAY_MS;
    let mut users = Vec::with_capacity(cfg.users);
    let mut events = Vec::new();
    for u in 0..cfg.users {
        let persona = match rng.gen_range(0..10) {
            0..=1 => Persona::Loyal,
            2..=5 => Persona::Regular,
            _ => Persona::Casual,
        };
        // Most users exist from the start; a fifth are newcomers arriving later.
        let start_day = if rng.gen_bool(0.8) {
            0
        } else {
            rng.gen_range(0..cfg.days.max(1))
        };
        let churn_day = rng.gen_bool(cfg.churn_share).then(|| {
            let lo = start_day + 14;
            if lo + 10 >= cfg.days {
                cfg.days / 2
            } else {
                rng.gen_range(lo..cfg.days - 10)
            }
        });
        let user = SynthUser {
            user_id: format!("u{u:07}"),
            persona,
            start_day,
            churn_day,
        };
        emit_user(&mut rng, &user, start, cfg.days, &mut events);
        users.push(user);
    }
    events.sort_by_key(|e| e.ts);
    (users, events)
}

fn emit_user(rng: &mut SmallRng, user: &SynthUser, start: Millis, days: u32, out: &mut Vec<Event>) {
    let mut seq = 0u32;
    for day in user.start_day..days {
        let mut rate = user.persona.sessions_per_day();
        if let Some(c) = user.churn_day {
            if day > c {
                break;
            }
            // Fading out over the three weeks before leaving.
            let to_go = c - day;
            if to_go < 21 {
                rate *= 0.3 + 0.7 * f64::from(to_go) / 21.0;
            }
        }
        let sessions = poisson(rng, rate);
        for _ in 0..sessions {
            let t0 = start + i64::from(day) * DAY_MS + rng.gen_range(0..DAY_MS - 3_600_000);
            let mut t = t0;
            let mut push = |kind: EventKind, amount: f64, t: Millis, seq: &mut u32| {
                out.push(Event {
                    event_id: format!("{}-{}", user.user_id, *seq),
                    user_id: user.user_id.clone(),
                    kind,
                    ts: t,
                    amount,
                });
                *seq += 1;
            };
            push(EventKind::Login, 0.0, t, &mut seq);
            for _ in 0..rng.gen_range(1..6) {
                t += rng.gen_range(5_000..60_000);
                let kind = if rng.gen_bool(0.25) {
                    EventKind::Search
                } else {
                    EventKind::PageView
                };
                push(kind, 0.0, t, &mut seq);
            }
            if rng.gen_bool(0.35) {
                t += rng.gen_range(5_000..60_000);
                push(EventKind::CartAdd, 0.0, t, &mut seq);
                if rng.gen_bool(0.15) {
                    push(EventKind::CartRemove, 0.0, t + 1_000, &mut seq);
                }
            }
            if rng.gen_bool(user.persona.purchase_prob()) {
                t += rng.gen_range(5_000..120_000);
                if rng.gen_bool(0.1) {
                    push(EventKind::CouponRedeem, 0.0, t, &mut seq);
                }
                let amount =
                    (user.persona.basket() * rng.gen_range(0.3..2.5f64) * 100.0).round() / 100.0;
                push(EventKind::Purchase, amount, t + 500, &mut seq);
                if rng.gen_bool(0.04) {
                    push(EventKind::Refund, amount, t + 600_000, &mut seq);
                }
            }
            let extra = rng.gen_range(0..100);
            let extra_kind = match extra {
                0..=1 => Some(EventKind::Complaint),
                2..=4 => Some(EventKind::Review),
                5..=7 => Some(EventKind::Share),
                8..=15 => Some(EventKind::CampaignOpen),
                _ => None,
            };
            if let Some(kind) = extra_kind {
                push(kind, 0.0, t + 30_000, &mut seq);
            }
            push(EventKind::SessionEnd, 0.0, t + 60_000, &mut seq);
        }
    }
}

/// Knuth's Poisson sampler: fine for the small rates used here.
fn poisson(rng: &mut SmallRng, lambda: f64) -> u32 {
    let l = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// A small deterministic stream with known outcome, for end-to-end tests: `steady` users active
/// every day up to `end` (login, a page view, a purchase weekly) and `churners` who behave the
/// same until `silent_days` before `end` and then stop. User ids are `steady-N` / `churner-N`.
pub fn scripted(
    end: Millis,
    days: u32,
    steady: usize,
    churners: usize,
    silent_days: u32,
) -> Vec<Event> {
    let start = end - i64::from(days) * DAY_MS;
    let mut events = Vec::new();
    let users = (0..steady)
        .map(|i| (format!("steady-{i}"), days))
        .chain((0..churners).map(|i| (format!("churner-{i}"), days.saturating_sub(silent_days))));
    for (n, (user, active_days)) in users.enumerate() {
        let offset = (n as i64 % 24) * 3_600_000 / 2;
        for day in 0..active_days {
            let t = start + i64::from(day) * DAY_MS + offset;
            let mut push = |k: EventKind, dt: Millis, amount: f64| {
                events.push(Event {
                    event_id: format!("{user}-{day}-{}", k.as_str()),
                    user_id: user.clone(),
                    kind: k,
                    ts: t + dt,
                    amount,
                });
            };
            push(EventKind::Login, 0, 0.0);
            push(EventKind::PageView, 60_000, 0.0);
            if day % 7 == 3 {
                push(EventKind::Purchase, 120_000, 25.0 + (n % 5) as f64 * 10.0);
            }
        }
    }
    events.retain(|e| e.ts <= end);
    events.sort_by_key(|e| e.ts);
    events
}

/// Malformed payloads of every rejection kind, for demos and load tests of the DLQ path.
pub fn bad_payloads(now: Millis) -> Vec<(String, &'static str)> {
    let future = crate::time::rfc3339(now + 30 * DAY_MS);
    let ok_ts = crate::time::rfc3339(now - DAY_MS);
    vec![
        ("{not json".to_string(), "malformed_json"),
        (
            format!(r#"{{"event_id":"bad-1","type":"login","ts":"{ok_ts}"}}"#),
            "missing_field",
        ),
        (
            format!(r#"{{"event_id":"bad-2","user_id":"u-bad","type":"teleport","ts":"{ok_ts}"}}"#),
            "unknown_type",
        ),
        (
            format!(
                r#"{{"event_id":"bad-3","user_id":"u-bad","type":"refund","ts":"{ok_ts}","amount":-5}}"#
            ),
            "invalid_amount",
        ),
        (
            format!(r#"{{"event_id":"bad-4","user_id":"u-bad","type":"login","ts":"{future}"}}"#),
            "future_timestamp",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed model, replayed over the scripted stream, alerts each churner exactly once
    /// and no steady user: the expectation the Kafka end-to-end test relies on.
    #[test]
    fn scripted_churners_get_one_alert_each_from_the_committed_model() {
        let model = crate::model::Model::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/churn-lr.json"
        )))
        .unwrap();
        let end = 20_000 * DAY_MS;
        let events = scripted(end, 120, 10, 6, 45);
        let mut engine = crate::engine::Engine::new(
            crate::engine::EngineConfig::default(),
            Some(std::sync::Arc::new(model)),
        );
        let out = crate::replay::replay(&mut engine, &events, Some(end));
        let mut alerted: Vec<&str> = out.alerts.iter().map(|a| a.user_id.as_str()).collect();
        alerted.sort_unstable();
        let expected: Vec<String> = (0..6).map(|i| format!("churner-{i}")).collect();
        assert_eq!(
            alerted,
            expected,
            "alerts: {:#?}",
            out.alerts
                .iter()
                .map(|a| (&a.user_id, &a.ts, a.score))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn is_deterministic_sorted_and_churners_go_silent() {
        let cfg = SynthConfig {
            users: 200,
            days: 120,
            end: 400 * DAY_MS,
            churn_share: 0.3,
            seed: 1,
        };
        let (users, events) = generate(&cfg);
        let (_, again) = generate(&cfg);
        assert_eq!(events, again);
        assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(events.len() > 2_000, "{}", events.len());
        let start = cfg.end - 120 * DAY_MS;
        for u in users.iter().filter(|u| u.churn_day.is_some()) {
            let limit = start + i64::from(u.churn_day.unwrap() + 1) * DAY_MS;
            assert!(events
                .iter()
                .filter(|e| e.user_id == u.user_id)
                .all(|e| e.ts < limit));
        }
    }
}
