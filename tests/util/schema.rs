//! JSON Schema checks of the payloads churnguard publishes, against the contract files messaging
//! teams read (`deploy/schemas/*.json`): every test that produces an alert, outcome event or
//! churn-risk table row can assert it matches the documented layout, so code and contract cannot
//! drift.
//!
//! Also compiled into the library's unit tests (`src/alert.rs`), hence no dependency on the rest
//! of the test harness.

use std::sync::OnceLock;

/// The alert payload contract (draft 2020-12).
pub const ALERT_SCHEMA: &str = include_str!("../../deploy/schemas/winback-alert.v1.json");

/// The outcome event contract (draft 2020-12).
pub const OUTCOME_SCHEMA: &str = include_str!("../../deploy/schemas/winback-outcome.v1.json");

/// The churn-risk table row contract (draft 2020-12).
pub const SCORE_SCHEMA: &str = include_str!("../../deploy/schemas/churn-score.v1.json");

fn compile(name: &str, text: &str) -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e}"))
}

fn check(validator: &jsonschema::Validator, json: &serde_json::Value) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Validates one alert payload against `winback-alert.v1.json`; `Err` lists every violation.
pub fn validate_alert(json: &serde_json::Value) -> Result<(), String> {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile("winback-alert.v1.json", ALERT_SCHEMA)),
        json,
    )
}

/// Validates one outcome event against `winback-outcome.v1.json`; `Err` lists every violation.
pub fn validate_outcome(json: &serde_json::Value) -> Result<(), String> {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile("winback-outcome.v1.json", OUTCOME_SCHEMA)),
        json,
    )
}

/// Validates one churn-risk table row against `churn-score.v1.json`; `Err` lists every violation.
pub fn validate_score(json: &serde_json::Value) -> Result<(), String> {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile("churn-score.v1.json", SCORE_SCHEMA)),
        json,
    )
}
