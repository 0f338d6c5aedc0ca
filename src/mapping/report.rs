//! What a mapping makes of a sample: the outcome of each record and a histogram, so a wrong
//! field path or type table shows at once (`churnguard check-mapping`), before any service
//! dead-letters a day of traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Decoded;
use crate::event::Rejection;

/// How many refused records of each reason are listed with their location.
const EXAMPLES_PER_REASON: usize = 3;

/// How many records were refused for one reason, and where the first few were.
pub type Refused = (u64, Vec<(String, String)>);

/// Outcomes over a sample.
#[derive(Debug, Default)]
pub struct MappingReport {
    pub records: u64,
    /// Events by churnguard type.
    pub events: BTreeMap<&'static str, u64>,
    /// Ignored records by label.
    pub ignored: BTreeMap<String, u64>,
    /// Refused records by reason: count and the first few (location, detail).
    pub refused: BTreeMap<&'static str, Refused>,
    /// The first records' outcomes as lines of text.
    pub shown: Vec<String>,
    show: usize,
}

impl MappingReport {
    /// A report that lists the outcome of the first `show` records.
    pub fn new(show: usize) -> Self {
        MappingReport {
            show,
            ..MappingReport::default()
        }
    }

    /// Records the outcome of the record at `location` (e.g. `file:line`).
    pub fn record(&mut self, location: &str, outcome: &Result<Decoded, Rejection>) {
        self.records += 1;
        let line = match outcome {
            Ok(Decoded::Event(e)) => {
                *self.events.entry(e.kind.as_str()).or_default() += 1;
                format!(
                    "{location}: {} user={:?} event_id={:?} ts={} amount={}",
                    e.kind,
                    e.user_id,
                    e.event_id,
                    crate::time::rfc3339(e.ts),
                    e.amount
                )
            }
            Ok(Decoded::Ignored { source_type }) => {
                *self.ignored.entry(source_type.clone()).or_default() += 1;
                format!("{location}: ignored ({source_type})")
            }
            Err(r) => {
                let entry = self.refused.entry(r.reason.as_str()).or_default();
                entry.0 += 1;
                if entry.1.len() < EXAMPLES_PER_REASON {
                    entry.1.push((location.to_string(), r.detail.clone()));
                }
                format!("{location}: refused {}: {}", r.reason.as_str(), r.detail)
            }
        };
        if self.shown.len() < self.show {
            self.shown.push(line);
        }
    }

    /// Records refused, of all.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }

    /// The histogram as text.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let pct = |n: u64| 100.0 * n as f64 / self.records.max(1) as f64;
        let events: u64 = self.events.values().sum();
        let ignored: u64 = self.ignored.values().sum();
        let _ = writeln!(out, "{} records", self.records);
        let _ = writeln!(out, "  events   {events:>9} ({:.1}%)", pct(events));
        for (kind, n) in &self.events {
            let _ = writeln!(out, "    {kind:<16} {n:>9}");
        }
        let _ = writeln!(out, "  ignored  {ignored:>9} ({:.1}%)", pct(ignored));
        for (label, n) in &self.ignored {
            let _ = writeln!(out, "    {label:<16} {n:>9}");
        }
        let refused = self.refused_total();
        let _ = writeln!(out, "  refused  {refused:>9} ({:.1}%)", pct(refused));
        for (reason, (n, examples)) in &self.refused {
            let _ = writeln!(out, "    {reason:<16} {n:>9}");
            for (location, detail) in examples {
                let _ = writeln!(out, "      {location}: {detail}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind, RejectReason};

    #[test]
    fn counts_every_outcome_and_keeps_the_first_examples() {
        let mut r = MappingReport::new(2);
        let ev = Decoded::Event(Event {
            event_id: "e".into(),
            user_id: "u".into(),
            kind: EventKind::Purchase,
            ts: 0,
            amount: 1.0,
        });
        r.record("f:1", &Ok(ev));
        r.record(
            "f:2",
            &Ok(Decoded::Ignored {
                source_type: "page_ping".into(),
            }),
        );
        for line in 3..8 {
            let refusal = Rejection::new(RejectReason::MissingField, "user_id (uid) is absent");
            r.record(&format!("f:{line}"), &Err(refusal));
        }
        assert_eq!(r.records, 7);
        assert_eq!(r.refused_total(), 5);
        assert_eq!(r.shown.len(), 2);
        let text = r.summary();
        assert!(text.contains("purchase"), "{text}");
        assert!(text.contains("page_ping"), "{text}");
        assert!(text.contains("f:3: user_id (uid) is absent"), "{text}");
        assert!(!text.contains("f:6"), "only the first examples: {text}");
        assert!(text.contains("(71.4%)"), "{text}");
    }
}
