//! The crate's unit of event time, its printed form and the forms people type (`2026-01-01`,
//! `90d`, `2025-06-01@13w`), shared by every layer that handles instants (events, features,
//! alerts, the model tools, the command line, tests), so none of them imports another just to
//! format or parse a timestamp, and every caller gets the same rules and error messages.

/// Milliseconds since the Unix epoch, the engine's unit of event time.
pub type Millis = i64;

/// One day in milliseconds: windows are exact at day granularity.
pub const DAY_MS: Millis = 86_400_000;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ts: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Parses a duration: `90d`, `13w`, `36h`, a plain number of days, or `all` (unbounded).
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let t = text.trim();
    if t == "all" {
        return Ok(Millis::MAX / 4);
    }
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], &t[i..]),
        _ => (t, "d"),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("{text:?} is not a duration like 90d, 13w or 36h"))?;
    let unit_ms = match unit {
        "h" => 3_600_000.0,
        "d" => DAY_MS as f64,
        "w" => 7.0 * DAY_MS as f64,
        _ => return Err(format!("{text:?}: unit must be h, d or w")),
    };
    Ok((n * unit_ms).round() as Millis)
}

/// Parses `DATE` or `DATE@DURATION` into (cutoff, horizon), `default_horizon` for the former.
pub fn parse_cutoff_at(text: &str, default_horizon: Millis) -> Result<(Millis, Millis), String> {
    match text.split_once('@') {
        Some((d, h)) => Ok((parse_instant(d.trim())?, parse_duration(h)?)),
        None => Ok((parse_instant(text.trim())?, default_horizon)),
    }
}

/// Parses an RFC 3339 instant or a plain `YYYY-MM-DD` date (midnight UTC).
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp_millis())
        })
        .map_err(|_| format!("{text:?} is neither an RFC 3339 instant nor a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_dates_parse() {
        assert_eq!(parse_instant("1970-01-02"), Ok(DAY_MS));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Ok(1_000));
        assert!(parse_instant("soon").is_err());
    }

    #[test]
    fn durations_and_cutoffs_parse() {
        assert_eq!(parse_duration("90d"), Ok(90 * DAY_MS));
        assert_eq!(parse_duration("13w"), Ok(91 * DAY_MS));
        assert_eq!(parse_duration("12"), Ok(12 * DAY_MS));
        assert!(parse_duration("3x").is_err() && parse_duration("-2d").is_err());
        assert_eq!(
            parse_cutoff_at("1970-01-02@2w", DAY_MS),
            Ok((DAY_MS, 14 * DAY_MS))
        );
        assert_eq!(parse_cutoff_at("1970-01-02", DAY_MS), Ok((DAY_MS, DAY_MS)));
    }
}
