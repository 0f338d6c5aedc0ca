//! `churnguard check-mapping`: what an event mapping makes of a sample, record by record and as
//! a histogram, so a wrong path or type table is seen before the service runs with it.

use std::io::{BufRead, BufReader};

use anyhow::{bail, Context, Result};
use churnguard::mapping::MappingReport;

use super::args::CheckMappingArgs;

/// Reads the sample, prints each shown record's outcome and the histogram; fails when more
/// than half of the records are refused.
pub fn run(args: &CheckMappingArgs) -> Result<()> {
    let decoder = args.mapping.decoder()?;
    let file = std::fs::File::open(&args.events)
        .with_context(|| format!("cannot open {}", args.events.display()))?;
    let name = args.events.display().to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let mut report = MappingReport::new(args.show);
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {name}"))?
            == 0
        {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // The sample's own time bounds future timestamps loosely: it may be from anywhere.
        let outcome = decoder.decode(text, now, i64::MAX / 4);
        report.record(&format!("{name}:{number}"), &outcome);
    }
    println!(
        "event mapping: {}",
        args.mapping.event_mapping.as_ref().map_or_else(
            || "none (churnguard's native schema)".to_string(),
            |p| format!(
                "{} (fingerprint {})",
                p.display(),
                decoder.fingerprint().unwrap_or_default()
            )
        )
    );
    for shown in &report.shown {
        println!("{shown}");
    }
    println!();
    print!("{}", report.summary());
    if report.records == 0 {
        bail!("{name} holds no records");
    }
    if report.refused_total() * 2 > report.records {
        bail!(
            "the mapping refuses {} of {} records: check the field paths, type names and time \
             format against the refusals above",
            report.refused_total(),
            report.records
        );
    }
    Ok(())
}
