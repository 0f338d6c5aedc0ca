//! Reading a policy file: TOML into raw serde structs that keep each value's span, then one
//! named check per rule of a sensible policy, so a refusal names the file, the line and column,
//! and the reason.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{
    ActionRule, CapRule, ControlGroup, Policy, RiskBand, RiskBands, TierThreshold, ValueTier,
    ValueTiers, CAP_HISTORY, MAX_RECENT_COMPLAINT_DAYS,
};
use crate::features::Stage;

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

/// Default values of the optional keys (documented in `deploy/policy/default.toml`).
mod defaults {
    use super::{RiskBands, TierThreshold, ValueTiers};

    pub const RECENT_COMPLAINT_DAYS: u32 = 30;
    pub const OUTCOME_WINDOW_DAYS: u32 = 14;
    pub const EXPIRES_AFTER_DAYS: u32 = 7;
    pub const COOLDOWN_DAYS: u16 = 7;
    pub const MAX_PER_30D: u8 = 2;
    pub const CONTROL_SHARE: f64 = 0.10;
    pub const CONTROL_SALT: &str = "churnguard-control-v1";
    pub const RISK_BANDS: RiskBands = RiskBands {
        medium: 0.4,
        high: 0.6,
        critical: 0.8,
    };
    pub const VALUE_TIERS: ValueTiers = ValueTiers {
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
    };
}

/// Parses and validates policy text; `file` names it in error messages.
pub(super) fn parse(file: &str, src: &str) -> Result<Policy, PolicyError> {
    let cx = Cx { file, src };
    let raw: RawPolicy = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.err(span, e.message().trim().to_string())
    })?;
    raw.validate(&cx)
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
        crate::spans::line_col(self.src, offset)
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

/// A day count in [1, `hi`], or `default` when the key is absent.
fn check_days(
    cx: &Cx,
    key: &str,
    v: &Option<Spanned<u32>>,
    default: u32,
    hi: u32,
) -> Result<u32, PolicyError> {
    v.as_ref()
        .map_or(Ok(default), |v| check_range(cx, key, v, 1, hi))
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
        let recent_complaint_days = check_days(
            cx,
            "recent_complaint_days",
            &self.recent_complaint_days,
            defaults::RECENT_COMPLAINT_DAYS,
            MAX_RECENT_COMPLAINT_DAYS,
        )?;
        let outcome_window_days = check_days(
            cx,
            "outcome_window_days",
            &self.outcome_window_days,
            defaults::OUTCOME_WINDOW_DAYS,
            365,
        )?;
        let expires_after_days = check_days(
            cx,
            "expires_after_days",
            &self.expires_after_days,
            defaults::EXPIRES_AFTER_DAYS,
            365,
        )?;
        let risk_bands = match &self.risk_bands {
            None => defaults::RISK_BANDS,
            Some(b) => b.validate(cx)?,
        };
        let value_tiers = match &self.value_tiers {
            None => defaults::VALUE_TIERS,
            Some(t) => t.validate(cx)?,
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
            Some(c) => c.validate(cx)?,
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

impl RawBands {
    /// Each bound in [0, 1], strictly ascending.
    fn validate(&self, cx: &Cx) -> Result<RiskBands, PolicyError> {
        let bounds = [
            ("medium", &self.medium),
            ("high", &self.high),
            ("critical", &self.critical),
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
        Ok(RiskBands {
            medium: *self.medium.get_ref(),
            high: *self.high.get_ref(),
            critical: *self.critical.get_ref(),
        })
    }
}

impl RawTiers {
    /// Every threshold non-negative, both columns strictly ascending from silver to platinum.
    fn validate(&self, cx: &Cx) -> Result<ValueTiers, PolicyError> {
        let tiers = [
            ("silver", &self.silver),
            ("gold", &self.gold),
            ("platinum", &self.platinum),
        ];
        let mut prev: Option<(&str, TierThreshold)> = None;
        for (name, tier) in tiers {
            let this = tier.validate(cx, name)?;
            if let Some((pname, p)) = prev {
                check_tier_above(cx, (name, tier), (pname, p))?;
            }
            prev = Some((name, this));
        }
        let th = |t: &RawTier| TierThreshold {
            total: *t.total.get_ref(),
            recent_90d: *t.recent_90d.get_ref(),
        };
        Ok(ValueTiers {
            silver: th(&self.silver),
            gold: th(&self.gold),
            platinum: th(&self.platinum),
        })
    }
}

impl RawTier {
    /// Both thresholds of tier `name` in [0, max].
    fn validate(&self, cx: &Cx, name: &str) -> Result<TierThreshold, PolicyError> {
        let total = check_range(
            cx,
            &format!("value_tiers.{name}.total"),
            &self.total,
            0.0,
            f64::MAX,
        )?;
        let recent_90d = check_range(
            cx,
            &format!("value_tiers.{name}.recent_90d"),
            &self.recent_90d,
            0.0,
            f64::MAX,
        )?;
        Ok(TierThreshold { total, recent_90d })
    }
}

/// Tier `name` must need strictly more than the tier `prev` below it, on both legs.
fn check_tier_above(
    cx: &Cx,
    (name, tier): (&str, &RawTier),
    (pname, prev): (&str, TierThreshold),
) -> Result<(), PolicyError> {
    let (total, recent) = (*tier.total.get_ref(), *tier.recent_90d.get_ref());
    if total <= prev.total {
        return Err(cx.err(
            tier.total.span(),
            format!(
                "value tier thresholds must be strictly ascending: \
                 `{name}.total` = {total} is not above `{pname}.total` = {}",
                prev.total
            ),
        ));
    }
    if recent <= prev.recent_90d {
        return Err(cx.err(
            tier.recent_90d.span(),
            format!(
                "value tier thresholds must be strictly ascending: \
                 `{name}.recent_90d` = {recent} is not above \
                 `{pname}.recent_90d` = {}",
                prev.recent_90d
            ),
        ));
    }
    Ok(())
}

impl RawControl {
    /// Share in [0, 1], a non-empty salt, a valid topic name if any.
    fn validate(&self, cx: &Cx) -> Result<ControlGroup, PolicyError> {
        let share = self
            .share
            .as_ref()
            .map_or(Ok(defaults::CONTROL_SHARE), |s| {
                check_range(cx, "control.share", s, 0.0, 1.0)
            })?;
        let salt = match &self.salt {
            Some(s) if s.get_ref().is_empty() => {
                return Err(cx.err(s.span(), "`control.salt` must not be empty"))
            }
            Some(s) => s.get_ref().clone(),
            None => defaults::CONTROL_SALT.to_string(),
        };
        let topic = self
            .topic
            .as_ref()
            .map(|t| check_topic(cx, t))
            .transpose()?;
        Ok(ControlGroup { share, salt, topic })
    }
}

/// A name Kafka accepts as a topic.
fn check_topic(cx: &Cx, t: &Spanned<String>) -> Result<String, PolicyError> {
    let name = t.get_ref();
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name.clone())
    } else {
        Err(cx.err(
            t.span(),
            format!(
                "`control.topic` = {name:?} is not a valid Kafka topic name \
                 (1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
            ),
        ))
    }
}

/// Every rule valid and reachable, names unique, the last one a catch-all.
fn validate_rules(cx: &Cx, raw: &[Spanned<RawRule>]) -> Result<Vec<ActionRule>, PolicyError> {
    let mut rules: Vec<ActionRule> = Vec::with_capacity(raw.len());
    for spanned in raw {
        check_unique_name(cx, spanned.get_ref(), &rules)?;
        let rule = spanned.get_ref().validate(cx, cx.line(&spanned.span()))?;
        check_reachable(cx, spanned, &rule, &rules)?;
        rules.push(rule);
    }
    check_catch_all_last(cx, &rules, raw)?;
    Ok(rules)
}

/// A non-empty name no earlier rule uses.
fn check_unique_name(cx: &Cx, r: &RawRule, earlier: &[ActionRule]) -> Result<(), PolicyError> {
    let name = r.name.get_ref();
    if name.trim().is_empty() {
        return Err(cx.err(r.name.span(), "rule `name` must not be empty"));
    }
    if let Some(prev) = earlier.iter().find(|p| &p.name == name) {
        return Err(cx.err(
            r.name.span(),
            format!(
                "duplicate rule name `{name}` (first used by the rule at line {})",
                prev.line
            ),
        ));
    }
    Ok(())
}

impl RawRule {
    /// The rule's own checks (conditions that can match, caps the state enforces, labels).
    fn validate(&self, cx: &Cx, line: usize) -> Result<ActionRule, PolicyError> {
        let (min_tenure_days, max_tenure_days) = self.check_tenure(cx)?;
        let (cooldown_days, max_per_30d) = check_caps(cx, &self.cooldown_days, &self.max_per_30d)?;
        Ok(ActionRule {
            name: self.name.get_ref().clone(),
            line,
            stages: non_empty_list(cx, "stages", &self.stages)?,
            tiers: non_empty_list(cx, "tiers", &self.tiers)?,
            bands: non_empty_list(cx, "bands", &self.bands)?,
            recent_complaint: self.recent_complaint,
            min_tenure_days,
            max_tenure_days,
            action: check_label(cx, "action", &self.action)?,
            channel: check_label(cx, "channel", &self.channel)?,
            cooldown_days,
            max_per_30d,
        })
    }

    /// Tenure bounds non-negative, the upper one above the lower one.
    fn check_tenure(&self, cx: &Cx) -> Result<(Option<f64>, Option<f64>), PolicyError> {
        let tenure = |v: &Option<Spanned<f64>>, key: &str| {
            v.as_ref()
                .map(|t| check_range(cx, key, t, 0.0, f64::MAX))
                .transpose()
        };
        let min_tenure_days = tenure(&self.min_tenure_days, "min_tenure_days")?;
        let max_tenure_days = tenure(&self.max_tenure_days, "max_tenure_days")?;
        if let (Some(lo), Some(hi), Some(span)) = (
            min_tenure_days,
            max_tenure_days,
            self.max_tenure_days.as_ref(),
        ) {
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
        Ok((min_tenure_days, max_tenure_days))
    }
}

/// No earlier rule matches every user `rule` would: otherwise `rule` can never fire.
fn check_reachable(
    cx: &Cx,
    spanned: &Spanned<RawRule>,
    rule: &ActionRule,
    earlier: &[ActionRule],
) -> Result<(), PolicyError> {
    let Some(covering) = earlier.iter().find(|e| e.covers(rule)) else {
        return Ok(());
    };
    let why = if covering.is_catch_all() {
        format!(
            "rule `{}` is unreachable: the catch-all rule `{}` at line {} matches every \
             user; the catch-all must be the last rule",
            rule.name, covering.name, covering.line
        )
    } else {
        format!(
            "rule `{}` is unreachable: rule `{}` at line {} comes first and matches every \
             user it would; reorder or narrow them",
            rule.name, covering.name, covering.line
        )
    };
    Err(cx.err(spanned.span(), why))
}

/// At least one rule, the last a catch-all, so every alert gets an action.
fn check_catch_all_last(
    cx: &Cx,
    rules: &[ActionRule],
    raw: &[Spanned<RawRule>],
) -> Result<(), PolicyError> {
    match (rules.last(), raw.last()) {
        (Some(last), Some(_)) if last.is_catch_all() => Ok(()),
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
mod tests;
