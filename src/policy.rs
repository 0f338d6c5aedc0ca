//! Win-back policy: what an alert recommends, how often a user may be contacted, and who is held
//! out as the control group.
//!
//! Everything here is pure (no Kafka, no engine internals) and configured by a TOML file whose
//! documented default is `deploy/policy/default.toml`, embedded in the binary so the service runs
//! without one. A policy that does not parse or does not make sense is refused with the file, the
//! line and column, and the reason, so an operator can fix it before the service starts.
//!
//! * [`Policy::risk_band`]: churn score → [`RiskBand`] (configurable ascending bounds).
//! * [`Policy::value_tier`]: cumulative and 90-day spend → [`ValueTier`].
//! * [`Policy::decide_action`]: a user's [`Segment`] → the first matching [`ActionRule`]; the
//!   last rule is always a catch-all, so every alert gets an action.
//! * [`Policy::caps_for`] + [`CapState`]: frequency capping (cooldown, at most N per 30 days).
//! * [`Policy::experiment_arm`]: deterministic, salted control-group assignment.

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::features::Stage;

/// The default policy, as shipped in `deploy/policy/default.toml`: the service needs no file.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../deploy/policy/default.toml");

/// How many past alerts a [`CapState`] remembers, hence the largest `max_per_30d` a policy may
/// set. Four `u16` days keep the cap state at 8 bytes per user.
pub const CAP_HISTORY: usize = 4;

/// Largest `recent_complaint_days`: the engine keeps at least this many days of per-user
/// history, whatever its windows.
pub const MAX_RECENT_COMPLAINT_DAYS: u32 = crate::features::window::MIN_KEPT_DAYS;

/// Length of the monthly cap's sliding window, in days.
pub const CAP_WINDOW_DAYS: u16 = 30;

/// Why a policy is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {file}: {source}")]
    Read {
        /// Path of the file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse, or parses into a policy that makes no sense.
    #[error("invalid policy {file}, line {line}, column {column}: {reason}")]
    Invalid {
        /// Path (or name) of the file.
        file: String,
        /// 1-based line of the offending key or table.
        line: usize,
        /// 1-based column (in characters) on that line.
        column: usize,
        /// What is wrong and, where useful, how to fix it.
        reason: String,
    },
}

impl PolicyError {
    /// The 1-based line an invalid policy is refused at (`None` for read errors).
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Invalid { line, .. } => Some(*line),
            PolicyError::Read { .. } => None,
        }
    }
}

/// How likely the user is to churn, graded for routing and metrics (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    /// Below the `medium` bound.
    Low,
    /// At or above `medium`.
    Medium,
    /// At or above `high`.
    High,
    /// At or above `critical`.
    Critical,
}

impl RiskBand {
    /// Every band, lowest first.
    pub const ALL: [RiskBand; 4] = [
        RiskBand::Low,
        RiskBand::Medium,
        RiskBand::High,
        RiskBand::Critical,
    ];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskBand::Low => "low",
            RiskBand::Medium => "medium",
            RiskBand::High => "high",
            RiskBand::Critical => "critical",
        }
    }
}

/// What the user is worth, from their spend: different tiers get different win-back actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTier {
    /// Reached no other tier.
    Bronze,
    /// Reached the silver thresholds.
    Silver,
    /// Reached the gold thresholds.
    Gold,
    /// Reached the platinum thresholds.
    Platinum,
}

impl ValueTier {
    /// Every tier, lowest first.
    pub const ALL: [ValueTier; 4] = [
        ValueTier::Bronze,
        ValueTier::Silver,
        ValueTier::Gold,
        ValueTier::Platinum,
    ];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueTier::Bronze => "bronze",
            ValueTier::Silver => "silver",
            ValueTier::Gold => "gold",
            ValueTier::Platinum => "platinum",
        }
    }
}

/// Whether a user may be contacted (`treatment`) or is held out to measure uplift (`control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentArm {
    /// Alerts are acted on.
    Treatment,
    /// Alerts are published flagged, never acted on: the baseline win-back rate.
    Control,
}

impl ExperimentArm {
    /// Both arms.
    pub const ALL: [ExperimentArm; 2] = [ExperimentArm::Treatment, ExperimentArm::Control];

    /// Metric label and payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentArm::Treatment => "treatment",
            ExperimentArm::Control => "control",
        }
    }
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

/// Lower bounds of the risk bands (a score below `medium` is `low`); strictly ascending in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskBands {
    /// Lowest score that is `medium`.
    pub medium: f64,
    /// Lowest score that is `high`.
    pub high: f64,
    /// Lowest score that is `critical`.
    pub critical: f64,
}

/// What it takes to reach one value tier: either leg suffices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierThreshold {
    /// Cumulative spend at or above which the tier is reached.
    pub total: f64,
    /// Spend over the last 90 days at or above which the tier is reached.
    pub recent_90d: f64,
}

/// Thresholds of the tiers above bronze; both columns strictly ascending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueTiers {
    /// Silver thresholds.
    pub silver: TierThreshold,
    /// Gold thresholds.
    pub gold: TierThreshold,
    /// Platinum thresholds.
    pub platinum: TierThreshold,
}

/// Frequency caps for one segment: how often a user may be alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapRule {
    /// Days after an alert during which no other is sent (0 = no cooldown).
    pub cooldown_days: u16,
    /// Most alerts in any 30 days, 1..=[`CAP_HISTORY`].
    pub max_per_30d: u8,
}

/// Control-group settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlGroup {
    /// Share of users in control, in [0, 1].
    pub share: f64,
    /// Salt of the assignment hash: a new salt is a new experiment.
    pub salt: String,
    /// Publish control alerts to this topic instead of the alert topic (flagged either way).
    pub topic: Option<String>,
}

/// Who an alert is about, as far as the policy cares: the inputs of [`Policy::decide_action`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Lifecycle stage at the decision.
    pub stage: Stage,
    /// Value tier ([`Policy::value_tier`]).
    pub tier: ValueTier,
    /// Risk band ([`Policy::risk_band`]).
    pub band: RiskBand,
    /// A complaint within `recent_complaint_days`.
    pub recent_complaint: bool,
    /// Days since the user was first seen.
    pub tenure_days: f64,
}

/// One action rule: conditions (`None` = any) and what to recommend when they all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRule {
    /// Name, unique in the policy (for logs and error messages).
    pub name: String,
    /// Line of the rule's `[[rules]]` header in the policy file.
    pub line: usize,
    /// Lifecycle stages the rule applies to.
    pub stages: Option<Vec<Stage>>,
    /// Value tiers the rule applies to.
    pub tiers: Option<Vec<ValueTier>>,
    /// Risk bands the rule applies to.
    pub bands: Option<Vec<RiskBand>>,
    /// Applies only with (`true`) or without (`false`) a recent complaint.
    pub recent_complaint: Option<bool>,
    /// Applies when tenure >= this many days.
    pub min_tenure_days: Option<f64>,
    /// Applies when tenure < this many days.
    pub max_tenure_days: Option<f64>,
    /// Recommended action (payload value and metric label).
    pub action: String,
    /// Channel to deliver it on (payload value and metric label).
    pub channel: String,
    /// Overrides the policy's default cooldown for this segment.
    pub cooldown_days: Option<u16>,
    /// Overrides the policy's default monthly cap for this segment.
    pub max_per_30d: Option<u8>,
}

impl ActionRule {
    /// Whether the rule has no conditions (matches every user).
    pub fn is_catch_all(&self) -> bool {
        self.stages.is_none()
            && self.tiers.is_none()
            && self.bands.is_none()
            && self.recent_complaint.is_none()
            && self.min_tenure_days.is_none()
            && self.max_tenure_days.is_none()
    }

    /// Whether every condition holds for `seg`. Tenure is half-open: min <= tenure < max.
    pub fn matches(&self, seg: &Segment) -> bool {
        fn within<T: PartialEq>(set: &Option<Vec<T>>, v: &T) -> bool {
            set.as_ref().is_none_or(|s| s.contains(v))
        }
        within(&self.stages, &seg.stage)
            && within(&self.tiers, &seg.tier)
            && within(&self.bands, &seg.band)
            && self
                .recent_complaint
                .is_none_or(|c| c == seg.recent_complaint)
            && self.min_tenure_days.is_none_or(|m| seg.tenure_days >= m)
            && self.max_tenure_days.is_none_or(|m| seg.tenure_days < m)
    }

    /// Whether every user this rule's `later` would match is already matched by `self`, which
    /// makes `later` unreachable when it comes after `self`.
    fn covers(&self, later: &ActionRule) -> bool {
        fn superset<T: PartialEq>(a: &Option<Vec<T>>, b: &Option<Vec<T>>) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.iter().all(|x| a.contains(x)),
            }
        }
        let lo = |r: &ActionRule| r.min_tenure_days.unwrap_or(f64::NEG_INFINITY);
        let hi = |r: &ActionRule| r.max_tenure_days.unwrap_or(f64::INFINITY);
        superset(&self.stages, &later.stages)
            && superset(&self.tiers, &later.tiers)
            && superset(&self.bands, &later.bands)
            && (self.recent_complaint.is_none() || self.recent_complaint == later.recent_complaint)
            && lo(self) <= lo(later)
            && hi(self) >= hi(later)
    }
}

/// A validated win-back policy. Build it with [`Policy::parse`], [`Policy::load`] or
/// [`Policy::default_embedded`]; fields are read-only so the invariants (ascending bounds, a
/// final catch-all rule, caps within [`CAP_HISTORY`]...) always hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    risk_bands: RiskBands,
    value_tiers: ValueTiers,
    recent_complaint_days: u32,
    outcome_window_days: u32,
    expires_after_days: u32,
    caps: CapRule,
    control: ControlGroup,
    rules: Vec<ActionRule>,
}

impl Policy {
    /// The default policy (`deploy/policy/default.toml`, compiled in).
    ///
    /// # Panics
    /// Never in a released build: the embedded file is validated by a unit test.
    pub fn default_embedded() -> Policy {
        match Policy::parse("deploy/policy/default.toml", DEFAULT_POLICY_TOML) {
            Ok(p) => p,
            Err(e) => panic!("the embedded default policy is invalid: {e}"),
        }
    }

    /// Reads and validates a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            file: file.clone(),
            source,
        })?;
        Policy::parse(&file, &src)
    }

    /// Parses and validates policy text; `file` names it in error messages.
    pub fn parse(file: &str, src: &str) -> Result<Policy, PolicyError> {
        let cx = Cx { file, src };
        let raw: RawPolicy = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().trim().to_string())
        })?;
        raw.validate(&cx)
    }

    /// The risk band of a churn score (NaN is `low`).
    pub fn risk_band(&self, score: f64) -> RiskBand {
        let b = &self.risk_bands;
        if score >= b.critical {
            RiskBand::Critical
        } else if score >= b.high {
            RiskBand::High
        } else if score >= b.medium {
            RiskBand::Medium
        } else {
            RiskBand::Low
        }
    }

    /// The value tier of a user with `total_spend` over their lifetime and `spend_90d` over the
    /// last 90 days: the highest tier whose `total` or `recent_90d` threshold is reached, else
    /// bronze.
    pub fn value_tier(&self, total_spend: f64, spend_90d: f64) -> ValueTier {
        let t = &self.value_tiers;
        let reached = |th: &TierThreshold| total_spend >= th.total || spend_90d >= th.recent_90d;
        if reached(&t.platinum) {
            ValueTier::Platinum
        } else if reached(&t.gold) {
            ValueTier::Gold
        } else if reached(&t.silver) {
            ValueTier::Silver
        } else {
            ValueTier::Bronze
        }
    }

    /// The first rule matching `seg`. There always is one: the last rule is a catch-all.
    pub fn decide_action(&self, seg: &Segment) -> &ActionRule {
        // `validate` guarantees a non-empty rule list ending with a catch-all.
        let last = &self.rules[self.rules.len() - 1];
        self.rules.iter().find(|r| r.matches(seg)).unwrap_or(last)
    }

    /// The caps that apply to alerts decided by `rule`: its overrides, else the defaults.
    pub fn caps_for(&self, rule: &ActionRule) -> CapRule {
        CapRule {
            cooldown_days: rule.cooldown_days.unwrap_or(self.caps.cooldown_days),
            max_per_30d: rule.max_per_30d.unwrap_or(self.caps.max_per_30d),
        }
    }

    /// Deterministic control-group assignment: SHA-256 of (salt, user id) mapped uniformly to
    /// [0, 1); below `share` is control. Same salt and user → same arm, on every instance.
    pub fn experiment_arm(&self, user_id: &str) -> ExperimentArm {
        if unit_hash(&self.control.salt, user_id) < self.control.share {
            ExperimentArm::Control
        } else {
            ExperimentArm::Treatment
        }
    }

    /// Risk band bounds.
    pub fn risk_bands(&self) -> &RiskBands {
        &self.risk_bands
    }

    /// Value tier thresholds.
    pub fn value_tiers(&self) -> &ValueTiers {
        &self.value_tiers
    }

    /// A complaint within this many days counts as recent.
    pub fn recent_complaint_days(&self) -> u32 {
        self.recent_complaint_days
    }

    /// Days after an alert during which a purchase or login counts as a win-back.
    pub fn outcome_window_days(&self) -> u32 {
        self.outcome_window_days
    }

    /// Days after the decision at which an alert expires.
    pub fn expires_after_days(&self) -> u32 {
        self.expires_after_days
    }

    /// Caps of segments whose rule sets none.
    pub fn default_caps(&self) -> CapRule {
        self.caps
    }

    /// Control-group settings.
    pub fn control(&self) -> &ControlGroup {
        &self.control
    }

    /// The action rules in order (the last is the catch-all).
    pub fn rules(&self) -> &[ActionRule] {
        &self.rules
    }
}

/// SHA-256 of `salt \0 user_id`, its first 53 bits as a fraction in [0, 1).
fn unit_hash(salt: &str, user_id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(user_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
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

// ---------------------------------------------------------------------------------------------
// Parsing: raw serde structs with spans, then validation into `Policy`.

/// Default values of the optional keys (documented in `deploy/policy/default.toml`).
mod defaults {
    pub const RECENT_COMPLAINT_DAYS: u32 = 30;
    pub const OUTCOME_WINDOW_DAYS: u32 = 14;
    pub const EXPIRES_AFTER_DAYS: u32 = 7;
    pub const COOLDOWN_DAYS: u16 = 7;
    pub const MAX_PER_30D: u8 = 2;
    pub const CONTROL_SHARE: f64 = 0.10;
    pub const CONTROL_SALT: &str = "churnguard-control-v1";
}

/// The policy text, for turning byte spans into lines and columns.
struct Cx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> PolicyError {
        let (line, column) = self.line_col(span.start);
        PolicyError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            reason: reason.into(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    recent_complaint_days: Option<Spanned<u32>>,
    outcome_window_days: Option<Spanned<u32>>,
    expires_after_days: Option<Spanned<u32>>,
    risk_bands: Option<RawBands>,
    value_tiers: Option<RawTiers>,
    caps: Option<RawCaps>,
    control: Option<RawControl>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBands {
    medium: Spanned<f64>,
    high: Spanned<f64>,
    critical: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    total: Spanned<f64>,
    recent_90d: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiers {
    silver: RawTier,
    gold: RawTier,
    platinum: RawTier,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaps {
    cooldown_days: Option<Spanned<u16>>,
    max_per_30d: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    share: Option<Spanned<f64>>,
    salt: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    stages: Option<Spanned<Vec<Stage>>>,
    tiers: Option<Spanned<Vec<ValueTier>>>,
    bands: Option<Spanned<Vec<RiskBand>>>,
    recent_complaint: Option<bool>,
    min_tenure_days: Option<Spanned<f64>>,
    max_tenure_days: Option<Spanned<f64>>,
    action: Spanned<String>,
    channel: Spanned<String>,
    cooldown_days: Option<Spanned<u16>>,
    max_per_30d: Option<Spanned<u8>>,
}

/// A bounded lower-case label: action and channel values become metric labels.
fn check_label(cx: &Cx, key: &str, v: &Spanned<String>) -> Result<String, PolicyError> {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.clone())
    } else {
        Err(cx.err(
            v.span(),
            format!(
                "`{key}` = {s:?} must be 1 to 64 characters of a-z, 0-9 and _ \
                 (it is a payload value and a metric label)"
            ),
        ))
    }
}

fn check_range<T: PartialOrd + Copy + std::fmt::Display>(
    cx: &Cx,
    key: &str,
    v: &Spanned<T>,
    lo: T,
    hi: T,
) -> Result<T, PolicyError> {
    let x = *v.get_ref();
    if x >= lo && x <= hi {
        Ok(x)
    } else {
        Err(cx.err(
            v.span(),
            format!("`{key}` = {x} is out of range, it must be in [{lo}, {hi}]"),
        ))
    }
}

fn check_caps(
    cx: &Cx,
    cooldown: &Option<Spanned<u16>>,
    max: &Option<Spanned<u8>>,
) -> Result<(Option<u16>, Option<u8>), PolicyError> {
    let cooldown = cooldown
        .as_ref()
        .map(|c| check_range(cx, "cooldown_days", c, 0, 365))
        .transpose()?;
    let max =
        match max {
            Some(m) if usize::from(*m.get_ref()) > CAP_HISTORY => {
                return Err(cx.err(
                    m.span(),
                    format!(
                        "`max_per_30d` = {} is above {CAP_HISTORY}, the most alerts per user the \
                     cap state remembers",
                        m.get_ref()
                    ),
                ))
            }
            Some(m) if *m.get_ref() == 0 => return Err(cx.err(
                m.span(),
                "`max_per_30d` = 0 would suppress every alert of this segment; the minimum is 1",
            )),
            Some(m) => Some(*m.get_ref()),
            None => None,
        };
    Ok((cooldown, max))
}

fn non_empty_list<T: Clone>(
    cx: &Cx,
    key: &str,
    v: &Option<Spanned<Vec<T>>>,
) -> Result<Option<Vec<T>>, PolicyError> {
    match v {
        Some(list) if list.get_ref().is_empty() => Err(cx.err(
            list.span(),
            format!("`{key}` is empty, so the rule never matches; remove the key to match any"),
        )),
        Some(list) => Ok(Some(list.get_ref().clone())),
        None => Ok(None),
    }
}

impl RawPolicy {
    fn validate(self, cx: &Cx) -> Result<Policy, PolicyError> {
        let days = |v: &Option<Spanned<u32>>, key: &str, default: u32, hi: u32| {
            v.as_ref()
                .map_or(Ok(default), |v| check_range(cx, key, v, 1, hi))
        };
        let recent_complaint_days = days(
            &self.recent_complaint_days,
            "recent_complaint_days",
            defaults::RECENT_COMPLAINT_DAYS,
            MAX_RECENT_COMPLAINT_DAYS,
        )?;
        let outcome_window_days = days(
            &self.outcome_window_days,
            "outcome_window_days",
            defaults::OUTCOME_WINDOW_DAYS,
            365,
        )?;
        let expires_after_days = days(
            &self.expires_after_days,
            "expires_after_days",
            defaults::EXPIRES_AFTER_DAYS,
            365,
        )?;

        let risk_bands = match &self.risk_bands {
            None => RiskBands {
                medium: 0.4,
                high: 0.6,
                critical: 0.8,
            },
            Some(b) => {
                let bounds = [
                    ("medium", &b.medium),
                    ("high", &b.high),
                    ("critical", &b.critical),
                ];
                let mut prev: Option<(&str, f64)> = None;
                for (key, v) in bounds {
                    let x = check_range(cx, &format!("risk_bands.{key}"), v, 0.0, 1.0)?;
                    if let Some((pkey, p)) = prev {
                        if x <= p {
                            return Err(cx.err(
                                v.span(),
                                format!(
                                    "risk band bounds must be strictly ascending: `{key}` = {x} \
                                     is not above `{pkey}` = {p}"
                                ),
                            ));
                        }
                    }
                    prev = Some((key, x));
                }
                RiskBands {
                    medium: *b.medium.get_ref(),
                    high: *b.high.get_ref(),
                    critical: *b.critical.get_ref(),
                }
            }
        };

        let value_tiers = match &self.value_tiers {
            None => ValueTiers {
                silver: TierThreshold {
                    total: 100.0,
                    recent_90d: 50.0,
                },
                gold: TierThreshold {
                    total: 500.0,
                    recent_90d: 200.0,
                },
                platinum: TierThreshold {
                    total: 2000.0,
                    recent_90d: 800.0,
                },
            },
            Some(t) => {
                let tiers = [
                    ("silver", &t.silver),
                    ("gold", &t.gold),
                    ("platinum", &t.platinum),
                ];
                let mut prev: Option<(&str, f64, f64)> = None;
                for (name, tier) in tiers {
                    let total = check_range(
                        cx,
                        &format!("value_tiers.{name}.total"),
                        &tier.total,
                        0.0,
                        f64::MAX,
                    )?;
                    let recent = check_range(
                        cx,
                        &format!("value_tiers.{name}.recent_90d"),
                        &tier.recent_90d,
                        0.0,
                        f64::MAX,
                    )?;
                    if let Some((pname, ptotal, precent)) = prev {
                        if total <= ptotal {
                            return Err(cx.err(
                                tier.total.span(),
                                format!(
                                    "value tier thresholds must be strictly ascending: \
                                     `{name}.total` = {total} is not above `{pname}.total` = {ptotal}"
                                ),
                            ));
                        }
                        if recent <= precent {
                            return Err(cx.err(
                                tier.recent_90d.span(),
                                format!(
                                    "value tier thresholds must be strictly ascending: \
                                     `{name}.recent_90d` = {recent} is not above \
                                     `{pname}.recent_90d` = {precent}"
                                ),
                            ));
                        }
                    }
                    prev = Some((name, total, recent));
                }
                let th = |t: &RawTier| TierThreshold {
                    total: *t.total.get_ref(),
                    recent_90d: *t.recent_90d.get_ref(),
                };
                ValueTiers {
                    silver: th(&t.silver),
                    gold: th(&t.gold),
                    platinum: th(&t.platinum),
                }
            }
        };

        let caps = match &self.caps {
            None => (None, None),
            Some(c) => check_caps(cx, &c.cooldown_days, &c.max_per_30d)?,
        };
        let caps = CapRule {
            cooldown_days: caps.0.unwrap_or(defaults::COOLDOWN_DAYS),
            max_per_30d: caps.1.unwrap_or(defaults::MAX_PER_30D),
        };

        let control = match &self.control {
            None => ControlGroup {
                share: defaults::CONTROL_SHARE,
                salt: defaults::CONTROL_SALT.to_string(),
                topic: None,
            },
            Some(c) => {
                let share = c.share.as_ref().map_or(Ok(defaults::CONTROL_SHARE), |s| {
                    check_range(cx, "control.share", s, 0.0, 1.0)
                })?;
                let salt = match &c.salt {
                    Some(s) if s.get_ref().is_empty() => {
                        return Err(cx.err(s.span(), "`control.salt` must not be empty"))
                    }
                    Some(s) => s.get_ref().clone(),
                    None => defaults::CONTROL_SALT.to_string(),
                };
                let topic = match &c.topic {
                    Some(t) => {
                        let name = t.get_ref();
                        let ok = !name.is_empty()
                            && name.len() <= 249
                            && name != "."
                            && name != ".."
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                        if !ok {
                            return Err(cx.err(
                                t.span(),
                                format!(
                                    "`control.topic` = {name:?} is not a valid Kafka topic name \
                                     (1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
                                ),
                            ));
                        }
                        Some(name.clone())
                    }
                    None => None,
                };
                ControlGroup { share, salt, topic }
            }
        };

        let rules = validate_rules(cx, &self.rules)?;

        Ok(Policy {
            risk_bands,
            value_tiers,
            recent_complaint_days,
            outcome_window_days,
            expires_after_days,
            caps,
            control,
            rules,
        })
    }
}

fn validate_rules(cx: &Cx, raw: &[Spanned<RawRule>]) -> Result<Vec<ActionRule>, PolicyError> {
    let mut rules: Vec<ActionRule> = Vec::with_capacity(raw.len());
    for spanned in raw {
        let r = spanned.get_ref();
        let name = r.name.get_ref();
        if name.trim().is_empty() {
            return Err(cx.err(r.name.span(), "rule `name` must not be empty"));
        }
        if let Some(prev) = rules.iter().find(|p| &p.name == name) {
            return Err(cx.err(
                r.name.span(),
                format!(
                    "duplicate rule name `{name}` (first used by the rule at line {})",
                    prev.line
                ),
            ));
        }
        let tenure = |v: &Option<Spanned<f64>>, key: &str| {
            v.as_ref()
                .map(|t| check_range(cx, key, t, 0.0, f64::MAX))
                .transpose()
        };
        let min_tenure_days = tenure(&r.min_tenure_days, "min_tenure_days")?;
        let max_tenure_days = tenure(&r.max_tenure_days, "max_tenure_days")?;
        if let (Some(lo), Some(hi), Some(span)) =
            (min_tenure_days, max_tenure_days, r.max_tenure_days.as_ref())
        {
            if hi <= lo {
                return Err(cx.err(
                    span.span(),
                    format!(
                        "`max_tenure_days` = {hi} must be above `min_tenure_days` = {lo}, \
                         or the rule never matches"
                    ),
                ));
            }
        }
        let (cooldown_days, max_per_30d) = check_caps(cx, &r.cooldown_days, &r.max_per_30d)?;
        let rule = ActionRule {
            name: name.clone(),
            line: cx.line(&spanned.span()),
            stages: non_empty_list(cx, "stages", &r.stages)?,
            tiers: non_empty_list(cx, "tiers", &r.tiers)?,
            bands: non_empty_list(cx, "bands", &r.bands)?,
            recent_complaint: r.recent_complaint,
            min_tenure_days,
            max_tenure_days,
            action: check_label(cx, "action", &r.action)?,
            channel: check_label(cx, "channel", &r.channel)?,
            cooldown_days,
            max_per_30d,
        };
        if let Some(earlier) = rules.iter().find(|e| e.covers(&rule)) {
            let why = if earlier.is_catch_all() {
                format!(
                    "rule `{}` is unreachable: the catch-all rule `{}` at line {} matches every \
                     user; the catch-all must be the last rule",
                    rule.name, earlier.name, earlier.line
                )
            } else {
                format!(
                    "rule `{}` is unreachable: rule `{}` at line {} comes first and matches every \
                     user it would; reorder or narrow them",
                    rule.name, earlier.name, earlier.line
                )
            };
            return Err(cx.err(spanned.span(), why));
        }
        rules.push(rule);
    }
    match (rules.last(), raw.last()) {
        (Some(last), Some(_)) if last.is_catch_all() => Ok(rules),
        (Some(last), Some(spanned)) => Err(cx.err(
            spanned.span(),
            format!(
                "the last rule (`{}`) has conditions; the policy needs a final catch-all rule \
                 (a [[rules]] with only name, action and channel) so every alert gets an action",
                last.name
            ),
        )),
        _ => Err(cx.err(
            cx.src.len()..cx.src.len(),
            "the policy has no [[rules]]; it needs at least a catch-all rule \
             (a [[rules]] with only name, action and channel)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Policy {
        Policy::default_embedded()
    }

    #[test]
    fn the_embedded_default_is_valid_and_matches_the_documented_defaults() {
        let p = default();
        assert_eq!(p.recent_complaint_days(), 30);
        assert_eq!(p.outcome_window_days(), 14);
        assert_eq!(p.expires_after_days(), 7);
        assert_eq!(
            p.default_caps(),
            CapRule {
                cooldown_days: 7,
                max_per_30d: 2
            }
        );
        assert_eq!(p.control().share, 0.10);
        assert_eq!(p.control().topic, None);
        assert!(p.rules().last().is_some_and(ActionRule::is_catch_all));
        // The built-in fallbacks for omitted sections equal what the file documents.
        let minimal = Policy::parse(
            "minimal.toml",
            "[[rules]]\nname = \"all\"\naction = \"member_perk\"\nchannel = \"push\"\n",
        )
        .unwrap();
        assert_eq!(minimal.risk_bands(), p.risk_bands());
        assert_eq!(minimal.value_tiers(), p.value_tiers());
        assert_eq!(minimal.default_caps(), p.default_caps());
        assert_eq!(minimal.control(), p.control());
        assert_eq!(minimal.recent_complaint_days(), p.recent_complaint_days());
        assert_eq!(minimal.outcome_window_days(), p.outcome_window_days());
        assert_eq!(minimal.expires_after_days(), p.expires_after_days());
    }

    /// (segment, stage, tier, band, recent complaint, tenure days, action, channel)
    type Case = (
        &'static str,
        Stage,
        ValueTier,
        RiskBand,
        bool,
        f64,
        &'static str,
        &'static str,
    );

    /// Each DOMAIN.md segment → its action, with the default policy.
    #[test]
    fn each_segment_gets_its_action() {
        use RiskBand::*;
        use Stage::*;
        use ValueTier::*;
        let p = default();
        #[rustfmt::skip]
        let table: &[Case] = &[
            // segment                          stage    tier      band  complaint tenure action channel
            ("recent complaint, low value",     AtRisk,  Bronze,   High,     true,  200.0, "care_contact", "customer_service"),
            ("recent complaint, high value",    AtRisk,  Platinum, Critical, true,  400.0, "care_contact", "customer_service"),
            ("recent complaint, newcomer",      New,     Bronze,   Medium,   true,    5.0, "care_contact", "customer_service"),
            ("recent complaint, dormant",       Dormant, Silver,   High,     true,  300.0, "care_contact", "customer_service"),
            ("high value at risk (gold)",       AtRisk,  Gold,     High,     false, 400.0, "dedicated_service", "phone"),
            ("high value at risk (platinum)",   Grace,   Platinum, Critical, false, 900.0, "dedicated_service", "phone"),
            ("high value, dormant, critical",   Dormant, Gold,     Critical, false, 500.0, "dedicated_service", "phone"),
            ("new user going quiet",            New,     Bronze,   Medium,   false,   6.0, "newcomer_coupon", "push"),
            ("new user silent, at risk",        AtRisk,  Bronze,   High,     false,  20.0, "newcomer_coupon", "push"),
            ("newcomer who spent a bit",        AtRisk,  Silver,   High,     false,  29.9, "newcomer_coupon", "push"),
            ("dormant",                         Dormant, Bronze,   High,     false, 200.0, "recall_push_coupon", "push"),
            ("churned",                         Churned, Silver,   Critical, false, 400.0, "recall_push_coupon", "push"),
            ("active, mid value",               Active,  Silver,   Medium,   false, 120.0, "points_bonus", "app_inbox"),
            ("slipping, mid value",             AtRisk,  Silver,   High,     false,  60.0, "points_bonus", "app_inbox"),
            ("low value, short-lived",          AtRisk,  Bronze,   High,     false,  60.0, "limited_time_discount", "push"),
            ("low value, short-lived, grace",   Grace,   Bronze,   Medium,   false, 179.9, "limited_time_discount", "push"),
            ("low value, long-standing",        AtRisk,  Bronze,   High,     false, 180.0, "member_perk", "push"),
            ("high value, only medium risk",    Active,  Gold,     Medium,   false, 300.0, "member_perk", "push"),
        ];
        for &(what, stage, tier, band, recent_complaint, tenure_days, action, channel) in table {
            let rule = p.decide_action(&Segment {
                stage,
                tier,
                band,
                recent_complaint,
                tenure_days,
            });
            assert_eq!(
                (rule.action.as_str(), rule.channel.as_str()),
                (action, channel),
                "{what}: got rule `{}`",
                rule.name
            );
        }
    }

    #[test]
    fn complaints_never_get_a_coupon() {
        let p = default();
        for stage in Stage::ALL {
            for tier in ValueTier::ALL {
                for band in RiskBand::ALL {
                    for tenure_days in [0.0, 10.0, 100.0, 1000.0] {
                        let rule = p.decide_action(&Segment {
                            stage,
                            tier,
                            band,
                            recent_complaint: true,
                            tenure_days,
                        });
                        assert!(
                            !rule.action.contains("coupon") && !rule.action.contains("discount")
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn band_boundaries() {
        let p = default();
        let b = *p.risk_bands();
        assert_eq!(p.risk_band(0.0), RiskBand::Low);
        assert_eq!(p.risk_band(b.medium - 1e-9), RiskBand::Low);
        assert_eq!(p.risk_band(b.medium), RiskBand::Medium);
        assert_eq!(p.risk_band(b.high - 1e-9), RiskBand::Medium);
        assert_eq!(p.risk_band(b.high), RiskBand::High);
        assert_eq!(p.risk_band(b.critical - 1e-9), RiskBand::High);
        assert_eq!(p.risk_band(b.critical), RiskBand::Critical);
        assert_eq!(p.risk_band(1.0), RiskBand::Critical);
        assert_eq!(p.risk_band(f64::NAN), RiskBand::Low);
    }

    #[test]
    fn tier_boundaries_either_leg_suffices() {
        let p = default();
        let t = *p.value_tiers();
        assert_eq!(p.value_tier(0.0, 0.0), ValueTier::Bronze);
        assert_eq!(
            p.value_tier(t.silver.total - 0.01, t.silver.recent_90d - 0.01),
            ValueTier::Bronze
        );
        assert_eq!(p.value_tier(t.silver.total, 0.0), ValueTier::Silver);
        assert_eq!(p.value_tier(0.0, t.silver.recent_90d), ValueTier::Silver);
        assert_eq!(p.value_tier(t.gold.total, 0.0), ValueTier::Gold);
        assert_eq!(p.value_tier(0.0, t.gold.recent_90d), ValueTier::Gold);
        // The higher leg wins: a long-time silver total with a platinum recent spend.
        assert_eq!(
            p.value_tier(t.silver.total, t.platinum.recent_90d),
            ValueTier::Platinum
        );
        assert_eq!(p.value_tier(t.platinum.total, 0.0), ValueTier::Platinum);
        assert_eq!(p.value_tier(f64::NAN, f64::NAN), ValueTier::Bronze);
    }

    #[test]
    fn label_sets_are_bounded_and_distinct() {
        let bands: Vec<_> = RiskBand::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(bands, ["low", "medium", "high", "critical"]);
        let tiers: Vec<_> = ValueTier::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(tiers, ["bronze", "silver", "gold", "platinum"]);
        assert_eq!(ExperimentArm::Control.as_str(), "control");
        assert_eq!(ExperimentArm::Treatment.as_str(), "treatment");
        assert_eq!(SuppressReason::Cooldown.as_str(), "cooldown");
        assert_eq!(SuppressReason::MonthlyCap.as_str(), "monthly_cap");
        // Serde uses the same spelling as the labels.
        for b in RiskBand::ALL {
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
        for t in ValueTier::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for a in ExperimentArm::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    const DAY0: u16 = 20_000; // 2024-10-04

    /// Runs one risk decision per entry of `days`, returning the days an alert went out.
    fn run(caps: CapRule, days: impl IntoIterator<Item = u16>) -> (Vec<u16>, [usize; 2]) {
        let mut state = CapState::default();
        let mut sent = Vec::new();
        let mut suppressed = [0usize; 2];
        for d in days {
            match state.check(d, &caps) {
                Ok(()) => {
                    state.record(d);
                    sent.push(d);
                }
                Err(SuppressReason::Cooldown) => suppressed[0] += 1,
                Err(SuppressReason::MonthlyCap) => suppressed[1] += 1,
            }
        }
        (sent, suppressed)
    }

    #[test]
    fn a_burst_of_risk_gives_one_alert_per_cooldown() {
        let caps = default().default_caps();
        // Ten decisions on the same day.
        let (sent, suppressed) = run(caps, std::iter::repeat_n(DAY0, 10));
        assert_eq!(sent, [DAY0]);
        assert_eq!(suppressed, [9, 0]);
        // Ten daily decisions: one alert, the next only once the 7-day cooldown has passed.
        let (sent, suppressed) = run(caps, (0..10).map(|i| DAY0 + i));
        assert_eq!(sent, [DAY0, DAY0 + 7]);
        assert_eq!(suppressed, [8, 0]);
        // Every 7 consecutive days hold at most one alert.
        let (sent, _) = run(caps, (0..7).map(|i| DAY0 + i));
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn the_monthly_cap_holds_over_any_30_days() {
        let caps = CapRule {
            cooldown_days: 7,
            max_per_30d: 2,
        };
        let (sent, suppressed) = run(caps, (0..=60).map(|i| DAY0 + i));
        assert_eq!(sent, [DAY0, DAY0 + 7, DAY0 + 30, DAY0 + 37, DAY0 + 60]);
        assert!(suppressed[1] > 0);
        for &d in &sent {
            let in_window = sent.iter().filter(|&&s| s >= d && s < d + 30).count();
            assert!(in_window <= 2);
        }
        // The largest cap the state supports, no cooldown.
        let caps = CapRule {
            cooldown_days: 0,
            max_per_30d: CAP_HISTORY as u8,
        };
        let (sent, suppressed) = run(caps, (0..40).map(|i| DAY0 + i));
        assert_eq!(
            sent,
            [
                DAY0,
                DAY0 + 1,
                DAY0 + 2,
                DAY0 + 3,
                DAY0 + 30,
                DAY0 + 31,
                DAY0 + 32,
                DAY0 + 33
            ]
        );
        assert_eq!(suppressed, [0, 32]);
    }

    #[test]
    fn per_rule_caps_override_the_defaults() {
        let p = default();
        let care = p
            .rules()
            .iter()
            .find(|r| r.action == "care_contact")
            .unwrap();
        assert_eq!(
            p.caps_for(care),
            CapRule {
                cooldown_days: 30,
                max_per_30d: 1
            }
        );
        let discount = p
            .rules()
            .iter()
            .find(|r| r.action == "limited_time_discount")
            .unwrap();
        assert_eq!(
            p.caps_for(discount),
            CapRule {
                cooldown_days: 14,
                max_per_30d: 2
            }
        );
        let catch_all = p.rules().last().unwrap();
        assert_eq!(p.caps_for(catch_all), p.default_caps());
    }

    #[test]
    fn cap_state_is_compact_and_round_trips() {
        assert_eq!(std::mem::size_of::<CapState>(), 8);
        let mut s = CapState::default();
        assert_eq!(s.last_alert_day(), None);
        for d in [DAY0, DAY0 + 9, DAY0 + 3, DAY0 + 20, DAY0 + 30] {
            s.record(d);
        }
        // Newest first, oldest dropped.
        assert_eq!(
            s.alert_days().collect::<Vec<_>>(),
            [DAY0 + 30, DAY0 + 20, DAY0 + 9, DAY0 + 3]
        );
        assert_eq!(CapState::from_bytes(s.to_bytes()), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CapState>(&json).unwrap(), s);
        // An out-of-order decision before the last alert is inside the cooldown.
        assert_eq!(
            s.check(DAY0 + 25, &default().default_caps()),
            Err(SuppressReason::Cooldown)
        );
    }

    #[test]
    fn control_share_is_within_one_point_and_deterministic() {
        let p = default();
        let n = 100_000;
        let control = (0..n)
            .filter(|i| p.experiment_arm(&format!("user-{i}")) == ExperimentArm::Control)
            .count();
        let share = control as f64 / n as f64;
        assert!((share - 0.10).abs() <= 0.01, "control share {share}");
        // Stable across calls and policy instances.
        let again = default();
        for i in 0..1000 {
            let u = format!("user-{i}");
            assert_eq!(p.experiment_arm(&u), again.experiment_arm(&u));
        }
        // Another salt is another split.
        let other = Policy::parse(
            "salted.toml",
            "[control]\nsalt = \"experiment-2\"\n[[rules]]\nname = \"all\"\naction = \"a\"\nchannel = \"c\"\n",
        )
        .unwrap();
        let differ = (0..10_000)
            .map(|i| format!("user-{i}"))
            .filter(|u| p.experiment_arm(u) != other.experiment_arm(u))
            .count();
        assert!(differ > 1000, "only {differ} of 10000 ids changed arm");
        // The edges: nobody, everybody.
        for (share, arm) in [
            ("0.0", ExperimentArm::Treatment),
            ("1.0", ExperimentArm::Control),
        ] {
            let p = Policy::parse(
                "edge.toml",
                &format!("[control]\nshare = {share}\n[[rules]]\nname = \"all\"\naction = \"a\"\nchannel = \"c\"\n"),
            )
            .unwrap();
            assert!((0..1000).all(|i| p.experiment_arm(&format!("u{i}")) == arm));
        }
    }

    const CATCH_ALL: &str =
        "[[rules]]\nname = \"all\"\naction = \"member_perk\"\nchannel = \"push\"\n";

    /// Asserts `src` is refused at `line` with a message containing `needle`.
    fn refused(src: &str, line: usize, needle: &str) {
        let err = match Policy::parse("bad.toml", src) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert_eq!(err.line(), Some(line), "wrong line in {msg:?} for:\n{src}");
        assert!(msg.contains("bad.toml"), "{msg}");
        assert!(msg.contains(&format!("line {line}")), "{msg}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }

    #[test]
    fn invalid_policies_are_refused_with_the_line() {
        // Syntax and type errors (reported by the TOML parser, mapped to a line).
        refused("recent_complaint_days = \n", 1, "");
        refused(
            &format!("# c\n\n[caps]\ncooldown_days = \"seven\"\n{CATCH_ALL}"),
            4,
            "",
        );
        refused(
            &format!("[caps]\ncooldown_days = 7\nbogus = 1\n{CATCH_ALL}"),
            3,
            "unknown field `bogus`",
        );
        refused(
            &format!("{CATCH_ALL}frequency = 3\n"),
            5,
            "unknown field `frequency`",
        );
        // Unknown names in conditions.
        refused(
            &format!("[[rules]]\nname = \"x\"\nstages = [\"dormnt\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
            3,
            "unknown variant `dormnt`",
        );
        refused(
            &format!("[[rules]]\nname = \"x\"\ntiers = [\"diamond\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
            3,
            "unknown variant `diamond`",
        );
        refused(
            &format!("[[rules]]\nname = \"x\"\nbands = [\"extreme\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
            3,
            "unknown variant `extreme`",
        );
        // Bands: out of [0, 1], not ascending.
        refused(
            &format!("[risk_bands]\nmedium = 0.4\nhigh = 0.3\ncritical = 0.9\n{CATCH_ALL}"),
            3,
            "strictly ascending",
        );
        refused(
            &format!("[risk_bands]\nmedium = 0.4\nhigh = 0.6\ncritical = 1.5\n{CATCH_ALL}"),
            4,
            "out of range",
        );
        // Tiers not ascending.
        refused(
            &format!(
                "[value_tiers]\nsilver = {{ total = 100.0, recent_90d = 50.0 }}\n\
                 gold = {{ total = 500.0, recent_90d = 40.0 }}\n\
                 platinum = {{ total = 900.0, recent_90d = 800.0 }}\n{CATCH_ALL}"
            ),
            3,
            "recent_90d",
        );
        // Control share outside [0, 1], bad topic.
        refused(
            &format!("[control]\nshare = 1.2\n{CATCH_ALL}"),
            2,
            "control.share",
        );
        refused(
            &format!("[control]\n\nshare = -0.1\n{CATCH_ALL}"),
            3,
            "control.share",
        );
        refused(
            &format!("[control]\ntopic = \"a b\"\n{CATCH_ALL}"),
            2,
            "Kafka topic",
        );
        // Caps the state cannot enforce, or that never alert.
        refused(
            &format!("[caps]\nmax_per_30d = 5\n{CATCH_ALL}"),
            2,
            "above 4",
        );
        refused(
            &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\nmax_per_30d = 0\n{CATCH_ALL}"),
            6,
            "the minimum is 1",
        );
        refused(
            &format!("recent_complaint_days = 120\n{CATCH_ALL}"),
            1,
            "out of range",
        );
        // Empty or bad outputs.
        refused(
            &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"\"\nchannel = \"c\"\n{CATCH_ALL}"),
            4,
            "`action`",
        );
        refused(
            &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"Call Them\"\nchannel = \"c\"\n{CATCH_ALL}"),
            4,
            "`action`",
        );
        refused(
            &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\n{CATCH_ALL}"),
            1,
            "missing field `channel`",
        );
        // Conditions that never match.
        refused(
            &format!("[[rules]]\nname = \"x\"\nstages = []\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
            3,
            "`stages` is empty",
        );
        refused(
            &format!(
                "[[rules]]\nname = \"x\"\nmin_tenure_days = 30\nmax_tenure_days = 10\n\
                 action = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"
            ),
            4,
            "max_tenure_days",
        );
        // Duplicate names.
        refused(
            &format!("[[rules]]\nname = \"all\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
            7,
            "duplicate rule name",
        );
        // Catch-all missing, or not last (rules after it are unreachable).
        refused(
            "[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n\n\
             [[rules]]\nname = \"y\"\nstages = [\"new\"]\naction = \"a\"\nchannel = \"c\"\n",
            7,
            "catch-all",
        );
        refused(
            &format!("{CATCH_ALL}\n[[rules]]\nname = \"late\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n"),
            6,
            "unreachable: the catch-all rule `all` at line 1",
        );
        refused("recent_complaint_days = 30\n", 2, "no [[rules]]");
        // A rule shadowed by a broader earlier one.
        refused(
            &format!(
                "[[rules]]\nname = \"gold\"\ntiers = [\"gold\", \"platinum\"]\naction = \"a\"\nchannel = \"c\"\n\
                 [[rules]]\nname = \"gold-new\"\ntiers = [\"gold\"]\nstages = [\"new\"]\naction = \"b\"\nchannel = \"c\"\n{CATCH_ALL}"
            ),
            6,
            "rule `gold-new` is unreachable: rule `gold` at line 1",
        );
    }

    #[test]
    fn narrower_rules_before_broader_ones_are_accepted() {
        let src = format!(
            "[[rules]]\nname = \"gold-new\"\ntiers = [\"gold\"]\nstages = [\"new\"]\naction = \"b\"\nchannel = \"c\"\n\
             [[rules]]\nname = \"gold\"\ntiers = [\"gold\", \"platinum\"]\naction = \"a\"\nchannel = \"c\"\n\
             [[rules]]\nname = \"short\"\nmax_tenure_days = 10\naction = \"a\"\nchannel = \"c\"\n\
             [[rules]]\nname = \"long\"\nmin_tenure_days = 5\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"
        );
        let p = Policy::parse("ok.toml", &src).unwrap();
        assert_eq!(p.rules().len(), 5);
        assert_eq!(p.rules()[0].line, 1);
        assert_eq!(p.rules()[1].line, 7);
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, DEFAULT_POLICY_TOML).unwrap();
        assert_eq!(Policy::load(&path).unwrap(), default());
        std::fs::write(&path, "[control]\nshare = 2\n").unwrap();
        let msg = Policy::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("line 2"),
            "{msg}"
        );
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Policy::load(&missing),
            Err(PolicyError::Read { .. })
        ));
    }
}
