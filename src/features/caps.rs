//! Frequency caps as per-user state: the days of a user's recent alerts, and the rule that says
//! whether one more is allowed.
//!
//! The cap bookkeeping is part of every user's durable state (it is encoded with the rest of a
//! [`super::UserState`]), so it lives here beside it; the policy only chooses which [`CapRule`]
//! applies to a segment.

use serde::{Deserialize, Serialize};

/// How many past alerts a [`CapState`] remembers, hence the largest `max_per_30d` a policy may
/// set. Four `u16` days keep the cap state at 8 bytes per user.
pub const CAP_HISTORY: usize = 4;

/// Length of the monthly cap's sliding window, in days.
pub const CAP_WINDOW_DAYS: u16 = 30;

/// Frequency caps for one segment: how often a user may be alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapRule {
    /// Days after an alert during which no other is sent (0 = no cooldown).
    pub cooldown_days: u16,
    /// Most alerts in any 30 days, 1..=[`CAP_HISTORY`].
    pub max_per_30d: u8,
}

/// Why an alert was not sent (metric label): the user was contacted too recently or too often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuppressReason {
    /// Within the cooldown after the previous alert.
    Cooldown,
    /// The user already got the maximum number of alerts in the last 30 days.
    MonthlyCap,
}

impl SuppressReason {
    /// Every reason.
    pub const ALL: [SuppressReason; 2] = [SuppressReason::Cooldown, SuppressReason::MonthlyCap];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::Cooldown => "cooldown",
            SuppressReason::MonthlyCap => "monthly_cap",
        }
    }
}

/// Per-user cap bookkeeping, small enough to live in every user's durable state: the days
/// (since the Unix epoch, `u16`, good until 2149) of the last [`CAP_HISTORY`] alerts, newest
/// first, 0 meaning "none". 8 bytes; `to_bytes`/`from_bytes` or serde persist it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapState {
    days: [u16; CAP_HISTORY],
}

const _: () = assert!(std::mem::size_of::<CapState>() <= 8);

impl CapState {
    /// Whether an alert on `today` is allowed under `caps`, or why not. An alert dated before
    /// the last one (out-of-order event time) counts as inside the cooldown.
    pub fn check(&self, today: u16, caps: &CapRule) -> Result<(), SuppressReason> {
        let today = i32::from(today);
        if let Some(last) = self.last_alert_day() {
            if today - i32::from(last) < i32::from(caps.cooldown_days) {
                return Err(SuppressReason::Cooldown);
            }
        }
        let in_window = self
            .days
            .iter()
            .filter(|&&d| d != 0 && today - i32::from(d) < i32::from(CAP_WINDOW_DAYS))
            .count();
        if in_window >= usize::from(caps.max_per_30d) {
            return Err(SuppressReason::MonthlyCap);
        }
        Ok(())
    }

    /// Remembers an alert sent on `today` (day 0 is the "none" sentinel and is not recorded).
    pub fn record(&mut self, today: u16) {
        if today == 0 {
            return;
        }
        // Keep newest first; the oldest falls off the end.
        let at = self
            .days
            .iter()
            .position(|&d| d <= today)
            .unwrap_or(CAP_HISTORY);
        if at < CAP_HISTORY {
            self.days.copy_within(at..CAP_HISTORY - 1, at + 1);
            self.days[at] = today;
        }
    }

    /// Day of the latest alert, if any.
    pub fn last_alert_day(&self) -> Option<u16> {
        Some(self.days[0]).filter(|&d| d != 0)
    }

    /// The remembered alert days, newest first (without empty slots).
    pub fn alert_days(&self) -> impl Iterator<Item = u16> + '_ {
        self.days.iter().copied().filter(|&d| d != 0)
    }

    /// Compact encoding for durable state (little-endian days).
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (chunk, d) in out.chunks_exact_mut(2).zip(self.days) {
            chunk.copy_from_slice(&d.to_le_bytes());
        }
        out
    }

    /// Inverse of [`CapState::to_bytes`].
    pub fn from_bytes(bytes: [u8; 8]) -> CapState {
        let mut days = [0u16; CAP_HISTORY];
        for (d, chunk) in days.iter_mut().zip(bytes.chunks_exact(2)) {
            *d = u16::from_le_bytes([chunk[0], chunk[1]]);
        }
        let mut s = CapState { days };
        // Re-establish the newest-first order a hand-made encoding might not have.
        s.days.sort_unstable_by(|a, b| b.cmp(a));
        s
    }
}
