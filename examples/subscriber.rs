//! A win-back alert subscriber for messaging teams: copy it, plug in your sender, run it.
//!
//! It consumes churnguard's alert topic in its **own** consumer group (so it never disturbs the
//! service or other subscribers) and, for every alert:
//!
//! 1. skips it if its `alert_id` was already handled (delivery is at-least-once, so duplicates
//!    happen after restarts and rebalances; the id is deterministic, so a re-derived alert has
//!    the same one). Memory is bounded: the newest `--dedupe-capacity` ids are remembered;
//! 2. skips it if `experiment_arm` is `control`: those users are the hold-out group that
//!    measures whether win-back messages work at all; contacting them spoils the measurement;
//! 3. skips it if it is past `expires_at` (stale after a long outage or a replay);
//! 4. hands it to a [`Sender`] ([`StdoutSender`] or [`WebhookSender`]; write your own for your
//!    push/SMS/CRM system) and only then marks its offset as done.
//!
//! Offsets are committed only for alerts that were sent (or deliberately skipped), so a crash
//! re-delivers rather than loses alerts (at-least-once). Senders should therefore be idempotent
//! on `alert_id` too: the webhook sends it as the `Idempotency-Key` header. If the sender keeps
//! failing for `--max-retry-secs`, the subscriber exits non-zero without committing that alert,
//! so a supervisor (systemd, Kubernetes) restarts it and the alert is delivered again.
//!
//! The payload contract is `deploy/schemas/winback-alert.v1.json`. This program reads only the
//! fields it needs and forwards the original JSON untouched, so new optional fields pass through.
//!
//! Run it (`cargo run --example subscriber -- --help` lists every flag and its env variable):
//!
//! ```text
//! # print alerts as JSON lines
//! cargo run --example subscriber -- --brokers localhost:9092 --topic winback-alerts \
//!     --group messaging-push
//! # POST each alert to a webhook (plain http:// with this crate's dev reqwest features)
//! WINBACK_WEBHOOK_URL=http://localhost:8080/winback \
//!     cargo run --example subscriber -- --brokers localhost:9092 --group messaging-push
//! ```
//!
//! Log level: `RUST_LOG=debug` shows every skipped alert.

use std::collections::{HashSet, VecDeque};
use std::error::Error;
use std::time::Duration;

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use serde::Deserialize;

/// Consumes churnguard win-back alerts and hands treatment-arm ones to a sender.
#[derive(Debug, Parser)]
#[command(name = "subscriber")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "WINBACK_BROKERS", default_value = "localhost:9092")]
    brokers: String,
    /// The alert topic churnguard publishes to.
    #[arg(long, env = "WINBACK_TOPIC", default_value = "winback-alerts")]
    topic: String,
    /// This subscriber's own consumer group (one per messaging system).
    #[arg(long, env = "WINBACK_GROUP", default_value = "winback-subscriber")]
    group: String,
    /// POST each alert to this URL instead of printing it to stdout.
    #[arg(long, env = "WINBACK_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Timeout of one webhook request, in seconds.
    #[arg(long, env = "WINBACK_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    webhook_timeout_secs: u64,
    /// How many recent alert ids to remember for deduplication.
    #[arg(long, env = "WINBACK_DEDUPE_CAPACITY", default_value_t = 100_000)]
    dedupe_capacity: usize,
    /// Give up (exit non-zero, uncommitted) when the sender has failed this long on one alert.
    /// Keep it below the consumer's max.poll.interval.ms (300 s).
    #[arg(long, env = "WINBACK_MAX_RETRY_SECS", default_value_t = 240)]
    max_retry_secs: u64,
}

/// The fields of an alert this subscriber acts on; everything else is forwarded as is.
#[derive(Debug, Deserialize)]
struct Envelope {
    schema_version: u32,
    alert_id: String,
    user_id: String,
    experiment_arm: String,
    expires_at: String,
    recommended_action: String,
    channel: String,
}

/// An alert ready to send: the decoded envelope and the original JSON bytes.
struct Alert<'a> {
    envelope: Envelope,
    json: &'a [u8],
}

/// Where alerts go. Implement it for your messaging system; it must return `Ok` only once the
/// alert is safely handed over (the offset is committed after that).
trait Sender: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &str;
    /// Delivers one alert; an error is retried with backoff.
    fn send(&self, alert: &Alert<'_>) -> Result<(), Box<dyn Error + Send + Sync>>;
}

/// Prints each alert as one JSON line (for trying things out, or piping into another tool).
struct StdoutSender;

impl Sender for StdoutSender {
    fn name(&self) -> &str {
        "stdout"
    }

    fn send(&self, alert: &Alert<'_>) -> Result<(), Box<dyn Error + Send + Sync>> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(alert.json)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
}

/// POSTs each alert's JSON to a URL; any 2xx is success. Sends `Idempotency-Key: <alert_id>`
/// so the receiver can dedupe the redeliveries at-least-once implies.
struct WebhookSender {
    url: String,
    client: reqwest::blocking::Client,
}

impl WebhookSender {
    fn new(url: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()?;
        Ok(WebhookSender { url, client })
    }
}

impl Sender for WebhookSender {
    fn name(&self) -> &str {
        "webhook"
    }

    fn send(&self, alert: &Alert<'_>) -> Result<(), Box<dyn Error + Send + Sync>> {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", alert.envelope.alert_id.as_str())
            .body(alert.json.to_vec())
            .send()?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {status}").into())
        }
    }
}

/// The newest `capacity` alert ids, oldest evicted first: bounded-memory deduplication.
struct RecentIds {
    capacity: usize,
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        RecentIds {
            capacity: capacity.max(1),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// What happened to each message, logged periodically and at exit.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    duplicate: u64,
    control: u64,
    expired: u64,
    malformed: u64,
    unsupported_version: u64,
}

/// The alert payload versions this subscriber understands.
const SUPPORTED_SCHEMA_VERSION: u32 = 1;

/// Why a message is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Its alert_id was already handled.
    Duplicate,
    /// The user is in the control group: never contact.
    Control,
    /// Past `expires_at`.
    Expired,
    /// Not an alert payload.
    Malformed,
    /// A payload version this subscriber does not know.
    UnsupportedVersion,
}

/// What to do with one message.
enum Verdict<'a> {
    Send(Alert<'a>),
    Skip(Skip),
}

fn classify<'a>(
    payload: &'a [u8],
    seen: &RecentIds,
    now: chrono::DateTime<chrono::Utc>,
) -> Verdict<'a> {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(_) => return Verdict::Skip(Skip::Malformed),
    };
    if envelope.schema_version != SUPPORTED_SCHEMA_VERSION {
        return Verdict::Skip(Skip::UnsupportedVersion);
    }
    if seen.contains(&envelope.alert_id) {
        return Verdict::Skip(Skip::Duplicate);
    }
    if envelope.experiment_arm == "control" {
        return Verdict::Skip(Skip::Control);
    }
    match chrono::DateTime::parse_from_rfc3339(&envelope.expires_at) {
        Ok(t) if t <= now => return Verdict::Skip(Skip::Expired),
        Ok(_) => {}
        Err(_) => return Verdict::Skip(Skip::Malformed),
    }
    Verdict::Send(Alert {
        envelope,
        json: payload,
    })
}

/// Sends with exponential backoff (1 s doubling to 30 s) for at most `max_retry`.
async fn send_with_retry(
    sender: &dyn Sender,
    alert: &Alert<'_>,
    max_retry: Duration,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_secs(1);
    loop {
        // Senders may block (HTTP clients, vendor SDKs): keep the runtime's other work going.
        let result = tokio::task::block_in_place(|| sender.send(alert));
        match result {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() + backoff > max_retry => return Err(e),
            Err(e) => {
                tracing::warn!(
                    alert_id = %alert.envelope.alert_id,
                    sender = sender.name(),
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "send failed, retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn run(args: &Args, sender: &dyn Sender) -> Result<(), Box<dyn Error + Send + Sync>> {
    // Manual offset store + automatic commit of *stored* offsets only: an offset is stored
    // after its alert was sent or deliberately skipped, and librdkafka commits stored offsets
    // every second and on rebalance/close. Nothing unsent is ever committed.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&args.topic])?;
    tracing::info!(topic = %args.topic, group = %args.group, sender = sender.name(), "subscribed");

    let mut seen = RecentIds::new(args.dedupe_capacity);
    let mut counts = Counts::default();
    let max_retry = Duration::from_secs(args.max_retry_secs);
    let mut report = tokio::time::interval(Duration::from_secs(60));
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);

    let outcome = loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = report.tick() => {
                tracing::info!(?counts, "progress");
                continue;
            }
            msg = consumer.recv() => match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consume error");
                    continue;
                }
            },
        };
        let payload = msg.payload().unwrap_or_default();
        match classify(payload, &seen, chrono::Utc::now()) {
            Verdict::Send(alert) => {
                if let Err(e) = send_with_retry(sender, &alert, max_retry).await {
                    tracing::error!(
                        alert_id = %alert.envelope.alert_id,
                        error = %e,
                        "sender keeps failing; exiting without committing this alert"
                    );
                    break Err(e);
                }
                tracing::debug!(
                    alert_id = %alert.envelope.alert_id,
                    user_id = %alert.envelope.user_id,
                    action = %alert.envelope.recommended_action,
                    channel = %alert.envelope.channel,
                    "sent"
                );
                seen.insert(&alert.envelope.alert_id);
                counts.sent += 1;
            }
            Verdict::Skip(reason) => {
                tracing::debug!(
                    ?reason,
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "skipped"
                );
                match reason {
                    Skip::Duplicate => counts.duplicate += 1,
                    Skip::Control => counts.control += 1,
                    Skip::Expired => counts.expired += 1,
                    Skip::UnsupportedVersion => counts.unsupported_version += 1,
                    Skip::Malformed => {
                        tracing::warn!(
                            partition = msg.partition(),
                            offset = msg.offset(),
                            "malformed alert skipped"
                        );
                        counts.malformed += 1;
                    }
                }
            }
        }
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "could not store offset");
        }
    };

    tracing::info!(?counts, "stopping");
    // Commit what was stored since the last automatic commit ("no offset" is not an error).
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    outcome
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Built outside the async runtime: reqwest's blocking client owns a runtime of its own.
    let sender: Box<dyn Sender> = match &args.webhook_url {
        Some(url) => Box::new(WebhookSender::new(
            url.clone(),
            Duration::from_secs(args.webhook_timeout_secs),
        )?),
        None => Box::new(StdoutSender),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&args, sender.as_ref()));
    drop(runtime);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, arm: &str, expires_at: &str) -> Vec<u8> {
        serde_json::json!({
            "schema_version": 1, "alert_id": id, "user_id": "u1", "experiment_arm": arm,
            "expires_at": expires_at, "recommended_action": "member_perk", "channel": "push",
            "score": 0.9
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn classification() {
        let now = chrono::Utc::now();
        let later = (now + chrono::Duration::days(1)).to_rfc3339();
        let earlier = (now - chrono::Duration::days(1)).to_rfc3339();
        let mut seen = RecentIds::new(2);
        let reason = |v: Verdict<'_>| match v {
            Verdict::Send(_) => None,
            Verdict::Skip(r) => Some(r),
        };
        assert_eq!(
            reason(classify(&alert("a", "treatment", &later), &seen, now)),
            None
        );
        assert_eq!(
            reason(classify(&alert("a", "control", &later), &seen, now)),
            Some(Skip::Control)
        );
        assert_eq!(
            reason(classify(&alert("a", "treatment", &earlier), &seen, now)),
            Some(Skip::Expired)
        );
        assert_eq!(
            reason(classify(b"{not json", &seen, now)),
            Some(Skip::Malformed)
        );
        seen.insert("a");
        assert_eq!(
            reason(classify(&alert("a", "treatment", &later), &seen, now)),
            Some(Skip::Duplicate)
        );
        // Bounded: the oldest id is forgotten.
        seen.insert("b");
        seen.insert("c");
        assert!(!seen.contains("a") && seen.contains("b") && seen.contains("c"));
    }
}
