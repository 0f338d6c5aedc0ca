//! The compiled form of a mapping: where each field lives and how its value is read. Built by
//! [`super::parse`] from a file, or as the native schema by [`Mapping::native`].

use std::collections::BTreeMap;

use crate::event::EventKind;

/// A field's location: the keys from the record's root, e.g. `["properties", "revenue"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// Parses a dotted path (`properties.revenue`) or a JSON pointer (`/properties/revenue`,
    /// with `~1` for `/` and `~0` for `~`, for keys that contain dots). `None` if empty.
    pub fn parse(text: &str) -> Option<FieldPath> {
        let keys: Vec<String> = if let Some(pointer) = text.strip_prefix('/') {
            pointer
                .split('/')
                .map(|k| k.replace("~1", "/").replace("~0", "~"))
                .collect()
        } else {
            text.split('.').map(str::to_string).collect()
        };
        if keys.is_empty() || keys.iter().any(String::is_empty) {
            None
        } else {
            Some(FieldPath(keys))
        }
    }

    /// The path as a mapping file writes it, for messages.
    pub fn display(&self) -> String {
        self.0.join(".")
    }
}

/// How an event time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2026-11-30T12:00:00Z`, `2026-11-30T12:00:00.123+01:00`.
    Rfc3339,
    /// `2026-11-30 12:00:00.123` or with a `T`: a date and time without offset, taken as UTC.
    NaiveUtc,
    /// Seconds since the Unix epoch (a number or a string; fractions allowed).
    EpochSeconds,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
    /// Microseconds since the Unix epoch.
    EpochMicros,
}

impl TimeFormat {
    pub const NAMES: [&'static str; 5] = [
        "rfc3339",
        "naive_utc",
        "epoch_seconds",
        "epoch_millis",
        "epoch_micros",
    ];

    pub fn parse(name: &str) -> Option<TimeFormat> {
        Some(match name {
            "rfc3339" => TimeFormat::Rfc3339,
            "naive_utc" => TimeFormat::NaiveUtc,
            "epoch_seconds" => TimeFormat::EpochSeconds,
            "epoch_millis" => TimeFormat::EpochMillis,
            "epoch_micros" => TimeFormat::EpochMicros,
            _ => return None,
        })
    }
}

/// How money amounts are written and which currencies are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Money {
    /// Where the amount is: the first of these present wins; none: events carry no amount.
    pub amount: Vec<FieldPath>,
    /// Amounts are integer minor units (cents) with this many digits; `None`: decimal units.
    pub minor_digits: Option<u32>,
    /// Where the currency code is; `None`: every amount is in the shop currency.
    pub currency: Option<FieldPath>,
    /// The shop currency (what amounts are converted to), e.g. `USD`.
    pub base_currency: String,
    /// Fixed conversion rates: one unit of the key currency is this many base units. Any other
    /// currency is refused.
    pub rates: BTreeMap<String, f64>,
    /// Whether an event without a currency is in the base currency (`true`) or refused.
    pub missing_currency_is_base: bool,
}

/// What a source event type becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Kind(EventKind),
    /// Known, carries no signal: counted, not refused.
    Ignore,
}

/// What happens to a source type the mapping does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTypes {
    /// Refused as `unknown_type` (to the dead-letter topic).
    DeadLetter,
    /// Counted as ignored under the label `unknown`.
    Ignore,
}

/// A source-type pattern: text with `*` standing for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty(); // no `*`: the whole name must match
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Source type names to churnguard kinds.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeTable {
    /// Exact names (checked first).
    pub exact: BTreeMap<String, Target>,
    /// Patterns, in file order (the first match wins).
    pub patterns: Vec<(Pattern, Target)>,
    pub unknown: UnknownTypes,
}

impl TypeTable {
    /// What `name` maps to, with the entry that matched it (the name itself or the pattern:
    /// a label from the mapping file, so counting by it stays bounded); `None` for a name the
    /// table does not know.
    pub fn resolve<'t>(&'t self, name: &str) -> Option<(Target, &'t str)> {
        if let Some((entry, t)) = self.exact.get_key_value(name) {
            return Some((*t, entry.as_str()));
        }
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(name))
            .map(|(p, t)| (*t, p.0.as_str()))
    }
}

/// A user id found only at the fallback location (an anonymous visitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// Counted as ignored under the label `anonymous`: no one to win back.
    Skip,
    /// Scored under the fallback id.
    Use,
}

/// A mapping from a source's records to events.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub user_id: FieldPath,
    /// Where to look when `user_id` is absent, and what to do then.
    pub anonymous_id: Option<(FieldPath, Anonymous)>,
    pub event_id: FieldPath,
    /// Where the type is: the first of these present wins (Segment: `event`, then `type`).
    pub kind: Vec<FieldPath>,
    pub ts: FieldPath,
    pub time_format: TimeFormat,
    pub money: Money,
    pub types: TypeTable,
}

impl Mapping {
    /// churnguard's own schema as a mapping: what CSV and Parquet rows in the native columns go
    /// through.
    pub fn native() -> Mapping {
        let path = |name: &str| FieldPath(vec![name.to_string()]);
        Mapping {
            user_id: path("user_id"),
            anonymous_id: None,
            event_id: path("event_id"),
            kind: vec![path("type")],
            ts: path("ts"),
            time_format: TimeFormat::Rfc3339,
            money: Money {
                amount: vec![path("amount")],
                minor_digits: None,
                currency: None,
                base_currency: String::new(),
                rates: BTreeMap::new(),
                missing_currency_is_base: true,
            },
            types: TypeTable {
                exact: EventKind::ALL
                    .iter()
                    .map(|k| (k.as_str().to_string(), Target::Kind(*k)))
                    .collect(),
                patterns: Vec::new(),
                unknown: UnknownTypes::DeadLetter,
            },
        }
    }

    /// A short hash of what the mapping means (not of its file's layout or comments): a model
    /// records it, so serving under another mapping can be noticed.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{self:?}").as_bytes());
        crate::hex_prefix(&digest, 8)
    }
}
