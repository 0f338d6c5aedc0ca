//! churnguard: streaming churn-risk scoring and win-back alerts over Kafka.
//!
//! The crate is laid out along the data flow:
//!
//! ```text
//!  kafka::source ──► event (decode, validate) ──► engine ──► kafka::sink
//!                         │ rejects → DLQ          │  features (per-user windows, timers)
//!                                                  │  model    (churn probability)
//!                                                  │  alert    (episode policy, payload)
//! ```
//!
//! Everything between the source and the sink (event → features → model → alert) is pure and
//! knows nothing of Kafka: the service, `replay`, `train`, tests and benchmarks all drive the
//! same [`engine::Engine`], so what is trained is what is served.

pub mod alert;
pub mod clock;
pub mod dedupe;
pub mod demo;
pub mod engine;
pub mod event;
pub mod features;
pub mod http;
pub mod kafka;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod replay;
pub mod scoring;
pub mod synth;
pub mod time;

pub use time::{Millis, DAY_MS};

/// Lower-case hex of the first `bytes` bytes of a digest: model versions, data fingerprints
/// and alert ids are short, stable prefixes of a SHA-256.
pub fn hex_prefix(digest: &[u8], bytes: usize) -> String {
    digest
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}
