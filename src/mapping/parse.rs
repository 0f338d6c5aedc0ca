//! Reading a mapping file: TOML into raw serde structs that keep each value's span, then one
//! check per rule, so a refused mapping names the file, the line and the reason (as the policy
//! file does). The file format is documented in `deploy/mappings/README.md`.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::spec::{
    Anonymous, FieldPath, Mapping, Money, Pattern, Target, TimeFormat, TypeTable, UnknownTypes,
};
use crate::event::EventKind;

/// Why a mapping is refused.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read event mapping {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid event mapping {file}, line {line}, column {column}: {reason}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

/// Most digits a minor currency unit may have (no currency has more than 4).
const MAX_MINOR_DIGITS: i64 = 6;

/// Reads and validates a mapping file.
pub fn load(path: &std::path::Path) -> Result<Mapping, MappingError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &src)
}

/// Parses and validates mapping text; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<Mapping, MappingError> {
    let cx = Cx { file, src };
    let raw: RawMapping = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.err(span, e.message().trim().to_string())
    })?;
    raw.validate(&cx)
}

struct Cx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> MappingError {
        let (line, column) = crate::spans::line_col(self.src, span.start);
        MappingError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            reason: reason.into(),
        }
    }

    fn path(&self, text: &Spanned<String>, field: &str) -> Result<FieldPath, MappingError> {
        FieldPath::parse(text.get_ref()).ok_or_else(|| {
            self.err(
                text.span(),
                format!(
                    "{field} = {:?} is not a path: write keys joined by dots \
                     (properties.revenue) or a JSON pointer (/properties/revenue)",
                    text.get_ref()
                ),
            )
        })
    }

    /// One path or a list of them (the first present wins), at least one.
    fn paths(
        &self,
        value: &Spanned<OneOrMany>,
        field: &str,
    ) -> Result<Vec<FieldPath>, MappingError> {
        let texts: Vec<&str> = match value.get_ref() {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    self.err(value.span(), format!("{field}: a list of paths (strings)"))
                })?,
            _ => {
                return Err(self.err(
                    value.span(),
                    format!("{field} must be a path or a non-empty list of paths"),
                ))
            }
        };
        texts
            .into_iter()
            .map(|t| self.path(&Spanned::new(value.span(), t.to_string()), field))
            .collect()
    }

    fn choice<T>(
        &self,
        value: &Spanned<String>,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<T, MappingError>
    where
        T: Copy,
    {
        options
            .iter()
            .find(|(name, _)| *name == value.get_ref())
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(
                    value.span(),
                    format!(
                        "{key} = {:?} is not one of {}",
                        value.get_ref(),
                        names.join(", ")
                    ),
                )
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    fields: RawFields,
    #[serde(default)]
    time: Option<RawTime>,
    #[serde(default)]
    money: Option<RawMoney>,
    types: RawTypes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFields {
    user_id: Spanned<String>,
    anonymous_id: Option<Spanned<String>>,
    anonymous: Option<Spanned<String>>,
    event_id: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<OneOrMany>,
    ts: Spanned<String>,
    amount: Option<Spanned<OneOrMany>>,
    currency: Option<Spanned<String>>,
}

/// A path or a list of paths, as written (checked in [`Cx::paths`]).
type OneOrMany = toml::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    format: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    unit: Option<Spanned<String>>,
    minor_digits: Option<Spanned<i64>>,
    base_currency: Option<Spanned<String>>,
    #[serde(default)]
    rates: BTreeMap<String, Spanned<f64>>,
    missing_currency: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypes {
    unknown: Option<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
    #[serde(default)]
    map: Ordered,
}

/// A TOML table's entries in file order (pattern order matters: the first match wins).
#[derive(Default)]
struct Ordered(Vec<(String, Spanned<String>)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of source type = churnguard type")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Spanned<String>>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl RawMapping {
    fn validate(self, cx: &Cx<'_>) -> Result<Mapping, MappingError> {
        let f = &self.fields;
        let anonymous = match &f.anonymous {
            Some(v) => cx.choice(
                v,
                "anonymous",
                &[("skip", Anonymous::Skip), ("use", Anonymous::Use)],
            )?,
            None => Anonymous::Skip,
        };
        if let (Some(a), None) = (&f.anonymous, &f.anonymous_id) {
            return Err(cx.err(a.span(), "anonymous is set but anonymous_id is not"));
        }
        let anonymous_id = match &f.anonymous_id {
            Some(p) => Some((cx.path(p, "anonymous_id")?, anonymous)),
            None => None,
        };
        let kind = cx.paths(&f.kind, "type")?;
        let time_format = match &self.time {
            Some(t) => TimeFormat::parse(t.format.get_ref()).ok_or_else(|| {
                cx.err(
                    t.format.span(),
                    format!(
                        "time format {:?} is not one of {}",
                        t.format.get_ref(),
                        TimeFormat::NAMES.join(", ")
                    ),
                )
            })?,
            None => TimeFormat::Rfc3339,
        };
        Ok(Mapping {
            user_id: cx.path(&f.user_id, "user_id")?,
            anonymous_id,
            event_id: cx.path(&f.event_id, "event_id")?,
            kind,
            ts: cx.path(&f.ts, "ts")?,
            time_format,
            money: money(cx, f, self.money.as_ref())?,
            types: types(cx, &self.types)?,
        })
    }
}

fn money(cx: &Cx<'_>, f: &RawFields, raw: Option<&RawMoney>) -> Result<Money, MappingError> {
    let amount = match &f.amount {
        Some(p) => cx.paths(p, "amount")?,
        None => Vec::new(),
    };
    let currency = match &f.currency {
        Some(p) => Some(cx.path(p, "currency")?),
        None => None,
    };
    let mut money = Money {
        amount,
        minor_digits: None,
        currency,
        base_currency: String::new(),
        rates: BTreeMap::new(),
        missing_currency_is_base: true,
    };
    let Some(raw) = raw else {
        if let Some(c) = &f.currency {
            return Err(cx.err(
                c.span(),
                "a currency field needs [money] base_currency (the shop currency)",
            ));
        }
        return Ok(money);
    };
    let minor = match &raw.unit {
        Some(u) => cx.choice(u, "unit", &[("decimal", false), ("minor", true)])?,
        None => false,
    };
    if minor {
        let digits = raw.minor_digits.as_ref().map_or(2, |d| *d.get_ref());
        if !(0..=MAX_MINOR_DIGITS).contains(&digits) {
            let span = raw.minor_digits.as_ref().map_or(0..0, Spanned::span);
            return Err(cx.err(
                span,
                format!("minor_digits {digits} must be from 0 to {MAX_MINOR_DIGITS}"),
            ));
        }
        money.minor_digits = Some(digits as u32);
    } else if let Some(d) = &raw.minor_digits {
        return Err(cx.err(d.span(), "minor_digits is only for unit = \"minor\""));
    }
    if let Some(m) = &raw.missing_currency {
        money.missing_currency_is_base =
            cx.choice(m, "missing_currency", &[("base", true), ("refuse", false)])?;
    }
    match (&f.currency, &raw.base_currency) {
        (Some(c), None) => {
            return Err(cx.err(
                c.span(),
                "a currency field needs [money] base_currency (the shop currency)",
            ))
        }
        (None, Some(b)) if !raw.rates.is_empty() => {
            return Err(cx.err(b.span(), "rates need a currency field in [fields]"))
        }
        (_, Some(b)) => money.base_currency = b.get_ref().trim().to_string(),
        (None, None) => {}
    }
    for (code, rate) in &raw.rates {
        let r = *rate.get_ref();
        if !(r.is_finite() && r > 0.0) {
            return Err(cx.err(
                rate.span(),
                format!("rate of {code} must be a positive number (base units per {code})"),
            ));
        }
        money.rates.insert(code.clone(), r);
    }
    Ok(money)
}

fn types(cx: &Cx<'_>, raw: &RawTypes) -> Result<TypeTable, MappingError> {
    let unknown = match &raw.unknown {
        Some(u) => cx.choice(
            u,
            "unknown",
            &[
                ("dead_letter", UnknownTypes::DeadLetter),
                ("ignore", UnknownTypes::Ignore),
            ],
        )?,
        None => UnknownTypes::DeadLetter,
    };
    let mut table = TypeTable {
        exact: BTreeMap::new(),
        patterns: Vec::new(),
        unknown,
    };
    let mut add = |name: &str, target: Target, span: Range<usize>| {
        if name.is_empty() {
            return Err(cx.err(span, "an empty source type name"));
        }
        if name.contains('*') {
            table.patterns.push((Pattern(name.to_string()), target));
        } else if table.exact.insert(name.to_string(), target).is_some() {
            return Err(cx.err(
                span,
                format!("source type {name:?} is named twice (in map and ignore?)"),
            ));
        }
        Ok(())
    };
    for (name, kind) in &raw.map.0 {
        let target = EventKind::parse(kind.get_ref()).ok_or_else(|| {
            let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            cx.err(
                kind.span(),
                format!(
                    "{name:?} = {:?}: not a churnguard type; one of {}",
                    kind.get_ref(),
                    kinds.join(", ")
                ),
            )
        })?;
        add(name, Target::Kind(target), kind.span())?;
    }
    for name in &raw.ignore {
        add(name.get_ref(), Target::Ignore, name.span())?;
    }
    if table.exact.is_empty() && table.patterns.is_empty() {
        return Err(cx.err(0..0, "[types] maps no source type"));
    }
    Ok(table)
}
