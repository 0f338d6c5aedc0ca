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
        let outcome = if decoder.is_avro() {
            // Binary payloads cannot be split at newlines: the sample holds them in base64.
            match base64_line(text) {
                Ok(payload) => decoder.decode(&payload, now, i64::MAX / 4),
                Err(refusal) => Err(refusal),
            }
        } else {
            decoder.decode(text, now, i64::MAX / 4)
        };
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
    if let Some(dir) = &args.mapping.avro_schemas {
        println!(
            "input: Avro, Confluent wire format, schemas from {}",
            dir.display()
        );
    }
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

/// One base64 line of an Avro sample, or a refusal saying it is not base64.
fn base64_line(text: &[u8]) -> Result<Vec<u8>, churnguard::event::Rejection> {
    #[cfg(feature = "avro")]
    {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| {
                churnguard::event::Rejection::new(
                    churnguard::event::RejectReason::MalformedJson,
                    format!("Avro sample line is not base64: {e}"),
                )
            })
    }
    // Without the feature no decoder reads Avro, so this is never asked for.
    #[cfg(not(feature = "avro"))]
    Ok(text.to_vec())
}
