//! A CRM-side lookup: asks churnguard's lookup API about customers and prints, for each, the
//! churn score now, the risk band, what the win-back policy recommends and why. Copy it into the
//! system that opens a customer's page (CRM, support tool) and replace the printing.
//!
//! It calls `GET {api}/v1/users/{user_id}` with `Authorization: Bearer <token>`; the answer is
//! the user's view as JSON (score, threshold, band, stage, tier, action, decision, reasons, ...;
//! fields it does not know are ignored, so new ones pass). What it does with the other answers:
//!
//! - **401**: the token is missing, wrong or rotated out: stops at once (every other lookup
//!   would fail the same way), exit code 2;
//! - **404**: churnguard does not know the user (no events within its retention, or erased);
//!   said per user, the others are still looked up;
//! - **503**: the group is rebalancing or restoring state and cannot answer correctly yet:
//!   waits as long as `Retry-After` says (capped by `--max-wait-secs`) and tries again, at most
//!   `--retries` times.
//!
//! Exit code 0 when every user was answered, 1 when some were not, 2 on a refused token.
//!
//! ```text
//! # the token the service reads from --api-token-file (one token per line)
//! cargo run --example crm_lookup -- --token-file /run/secrets/churnguard-token u-1001 u-1002
//! CHURNGUARD_API_TOKEN=... cargo run --example crm_lookup -- \
//!     --api-url http://churnguard.internal:9465 --json u-1001
//! ```
//!
//! Built here, it speaks plain `http://` (this crate's reqwest has no TLS features); for an API
//! behind TLS, build your copy with reqwest's `rustls-tls` feature and give an `https://` URL.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Looks up customers in churnguard's lookup API and prints their churn risk.
#[derive(Debug, Parser)]
#[command(name = "crm_lookup")]
struct Args {
    /// Base URL of the lookup API (any member of the group answers for any user).
    #[arg(
        long,
        env = "CHURNGUARD_API_URL",
        default_value = "http://127.0.0.1:9465"
    )]
    api_url: String,
    /// File holding the bearer token (surrounding whitespace ignored).
    #[arg(long, env = "CHURNGUARD_API_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The bearer token itself, when there is no file (prefer the file: environment variables
    /// show up in process listings of some systems).
    #[arg(long = "token", env = "CHURNGUARD_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Timeout of one request, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// Further tries of a lookup answered 503 (rebalance, restore).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Longest wait before a retry, whatever `Retry-After` says (seconds).
    #[arg(long, default_value_t = 30)]
    max_wait_secs: u64,
    /// Print the API's JSON as it came instead of the summary.
    #[arg(long)]
    json: bool,
    /// Users to look up.
    #[arg(required = true)]
    user_ids: Vec<String>,
}

/// The fields of a user view this program shows.
#[derive(Debug, Deserialize)]
struct View {
    user_id: String,
    as_of: String,
    model_version: Option<String>,
    score: Option<f64>,
    threshold: Option<f64>,
    risk_band: Option<String>,
    lifecycle_stage: String,
    value_tier: String,
    recommended_action: Option<String>,
    channel: Option<String>,
    decision: String,
    experiment_arm: String,
    #[serde(default)]
    reasons: Vec<Reason>,
    last_activity_at: String,
    last_purchase_at: Option<String>,
    opted_out: bool,
}

#[derive(Debug, Deserialize)]
struct Reason {
    feature: String,
    value: f64,
    contribution: f64,
}

/// What became of one lookup.
#[derive(Debug)]
enum Lookup {
    Found(String),
    /// A refused token: no other lookup can succeed.
    Unauthorized(String),
    Failed(String),
}

/// The customer-page summary of a view.
fn render(view: &View) -> String {
    let mut out = format!("{}\n", view.user_id);
    match (view.score, view.threshold) {
        (Some(score), Some(threshold)) => out.push_str(&format!(
            "  churn risk  {score:.4} ({} band; alert threshold {threshold})\n",
            view.risk_band.as_deref().unwrap_or("no")
        )),
        _ => out.push_str("  churn risk  not scored (the service runs without a model)\n"),
    }
    out.push_str(&format!(
        "  customer    {} stage, {} tier, {} arm{}\n",
        view.lifecycle_stage,
        view.value_tier,
        view.experiment_arm,
        if view.opted_out {
            ", opted out of contact"
        } else {
            ""
        }
    ));
    if let Some(action) = &view.recommended_action {
        out.push_str(&format!(
            "  recommended {action} via {} (decision now: {})\n",
            view.channel.as_deref().unwrap_or("-"),
            view.decision
        ));
    }
    if !view.reasons.is_empty() {
        let reasons: Vec<String> = view
            .reasons
            .iter()
            .map(|r| format!("{} = {} ({:+.2})", r.feature, r.value, r.contribution))
            .collect();
        out.push_str(&format!("  why         {}\n", reasons.join(", ")));
    }
    out.push_str(&format!(
        "  activity    last {}, last purchase {}\n",
        view.last_activity_at,
        view.last_purchase_at.as_deref().unwrap_or("never")
    ));
    out.push_str(&format!(
        "  as of       {} (model {})\n",
        view.as_of,
        view.model_version.as_deref().unwrap_or("none")
    ));
    out
}

/// The message of an error answer (`{"error": "..."}`), or the start of the body when it is
/// not one.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_str::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) if body.trim().is_empty() => "no details".to_string(),
        Err(_) => body.chars().take(200).collect(),
    }
}

/// How long to wait before retrying a 503: `Retry-After` in seconds when the API sent one,
/// otherwise one second doubling with each try; never longer than `cap`.
fn retry_wait(retry_after: Option<&str>, attempt: u32, cap: Duration) -> Duration {
    let asked = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs(1u64 << attempt.min(6)));
    asked.min(cap)
}

/// `GET {api}/v1/users/{user_id}`; the user id is one percent-encoded path segment, so ids with
/// `/`, `?` or spaces reach the API intact.
fn user_url(api: &reqwest::Url, user_id: &str) -> Result<reqwest::Url, String> {
    let mut url = api.clone();
    url.path_segments_mut()
        .map_err(|()| format!("{api} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["v1", "users", user_id]);
    Ok(url)
}

fn lookup(
    client: &reqwest::blocking::Client,
    args: &Args,
    api: &reqwest::Url,
    token: &str,
    user_id: &str,
) -> Lookup {
    let url = match user_url(api, user_id) {
        Ok(u) => u,
        Err(e) => return Lookup::Failed(e),
    };
    let cap = Duration::from_secs(args.max_wait_secs);
    let mut attempt = 0;
    loop {
        let response = match client.get(url.clone()).bearer_auth(token).send() {
            Ok(r) => r,
            Err(e) => return Lookup::Failed(format!("cannot reach {api}: {e}")),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match response.text() {
            Ok(b) => b,
            Err(e) => return Lookup::Failed(format!("{user_id}: cannot read the answer: {e}")),
        };
        match status.as_u16() {
            200 => return Lookup::Found(body),
            401 => {
                return Lookup::Unauthorized(format!(
                    "the API refused the token (401: {}); check --token-file / \
                     CHURNGUARD_API_TOKEN against the service's --api-token-file",
                    error_message(&body)
                ))
            }
            404 => {
                return Lookup::Failed(format!(
                    "{user_id}: not known to churnguard (404: {}): no events from this user \
                     within the retention, or erased",
                    error_message(&body)
                ))
            }
            503 if attempt < args.retries => {
                attempt += 1;
                let wait = retry_wait(retry_after.as_deref(), attempt, cap);
                tracing::info!(
                    user_id,
                    attempt,
                    wait_secs = wait.as_secs_f64(),
                    reason = %error_message(&body),
                    "lookup API busy (rebalance or restore); retrying"
                );
                std::thread::sleep(wait);
            }
            503 => {
                return Lookup::Failed(format!(
                    "{user_id}: still unavailable after {} tries (503: {}); the group is \
                     rebalancing or restoring, try again later",
                    attempt + 1,
                    error_message(&body)
                ))
            }
            _ => {
                return Lookup::Failed(format!(
                    "{user_id}: unexpected answer {status}: {}",
                    error_message(&body)
                ))
            }
        }
    }
}

/// The token from `--token-file`, else from `--token` / `CHURNGUARD_API_TOKEN`.
fn read_token(args: &Args) -> Result<String, String> {
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?,
        (None, Some(token)) => token.clone(),
        (None, None) => {
            return Err(
                "no token: give --token-file (CHURNGUARD_API_TOKEN_FILE) or set \
                 CHURNGUARD_API_TOKEN"
                    .to_string(),
            )
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the token is empty".to_string());
    }
    Ok(token.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let setup = read_token(&args).and_then(|token| {
        let api = reqwest::Url::parse(&args.api_url)
            .map_err(|e| format!("--api-url {}: {e}", args.api_url))?;
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(args.timeout_secs))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok((token, api, client))
    });
    let (token, api, client) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crm_lookup: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = 0;
    for user_id in &args.user_ids {
        match lookup(&client, &args, &api, &token, user_id) {
            Lookup::Found(body) if args.json => println!("{}", body.trim_end()),
            Lookup::Found(body) => match serde_json::from_str::<View>(&body) {
                Ok(view) => print!("{}", render(&view)),
                Err(e) => {
                    eprintln!("crm_lookup: {user_id}: the answer is not a user view: {e}");
                    failed += 1;
                }
            },
            Lookup::Unauthorized(message) => {
                eprintln!("crm_lookup: {message}");
                return ExitCode::from(2);
            }
            Lookup::Failed(message) => {
                eprintln!("crm_lookup: {message}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view as the API serializes it (`churnguard::engine::UserView`), with fields this
    /// program does not read.
    const VIEW: &str = r#"{"user_id":"u-1001","as_of":"2026-03-01T00:00:00.000Z",
        "model_version":"3f2a9c1b","score":0.8123,"threshold":0.5,"risk_band":"high",
        "lifecycle_stage":"dormant","value_tier":"gold","recommended_action":"personal_offer",
        "channel":"email","decision":"alert","experiment_arm":"treatment",
        "reasons":[{"feature":"days_since_last_event","value":47.0,"contribution":1.234},
                   {"feature":"purchases_30d","value":0.0,"contribution":0.4567}],
        "features":{"days_since_last_event":47.0},"last_activity_at":"2026-01-13T10:00:00.000Z",
        "last_purchase_at":null,"alerted_this_episode":false,"open_alert":null,
        "caps":{"alert_days":[],"alerts_last_30d":0},"opted_out":true}"#;

    #[test]
    fn a_view_renders_score_band_action_and_reasons() {
        let view: View = serde_json::from_str(VIEW).unwrap();
        let text = render(&view);
        assert_eq!(
            text,
            "u-1001\n\
             \x20 churn risk  0.8123 (high band; alert threshold 0.5)\n\
             \x20 customer    dormant stage, gold tier, treatment arm, opted out of contact\n\
             \x20 recommended personal_offer via email (decision now: alert)\n\
             \x20 why         days_since_last_event = 47 (+1.23), purchases_30d = 0 (+0.46)\n\
             \x20 activity    last 2026-01-13T10:00:00.000Z, last purchase never\n\
             \x20 as of       2026-03-01T00:00:00.000Z (model 3f2a9c1b)\n"
        );
    }

    #[test]
    fn a_view_without_a_model_says_so() {
        let mut json: serde_json::Value = serde_json::from_str(VIEW).unwrap();
        for field in [
            "score",
            "threshold",
            "risk_band",
            "recommended_action",
            "channel",
            "model_version",
        ] {
            json[field] = serde_json::Value::Null;
        }
        json["decision"] = "no_model".into();
        json["reasons"] = serde_json::json!([]);
        let text = render(&serde_json::from_value(json).unwrap());
        assert!(text.contains("not scored"), "{text}");
        assert!(!text.contains("recommended"), "{text}");
        assert!(text.contains("(model none)"), "{text}");
    }

    #[test]
    fn error_bodies_and_retry_waits() {
        assert_eq!(error_message(r#"{"error":"unknown user"}"#), "unknown user");
        assert_eq!(error_message(""), "no details");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
        let cap = Duration::from_secs(30);
        assert_eq!(retry_wait(Some("3"), 1, cap), Duration::from_secs(3));
        assert_eq!(retry_wait(Some("600"), 1, cap), cap);
        assert_eq!(retry_wait(None, 1, cap), Duration::from_secs(2));
        assert_eq!(retry_wait(Some("soon"), 2, cap), Duration::from_secs(4));
        assert_eq!(retry_wait(None, 40, cap), cap);
    }

    #[test]
    fn user_ids_are_one_encoded_path_segment() {
        let api = reqwest::Url::parse("http://127.0.0.1:9465").unwrap();
        assert_eq!(
            user_url(&api, "a/b c?d").unwrap().as_str(),
            "http://127.0.0.1:9465/v1/users/a%2Fb%20c%3Fd"
        );
        let prefixed = reqwest::Url::parse("https://crm.example/churnguard/").unwrap();
        assert_eq!(
            user_url(&prefixed, "u-1").unwrap().as_str(),
            "https://crm.example/churnguard/v1/users/u-1"
        );
    }
}
