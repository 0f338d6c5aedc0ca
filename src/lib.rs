//! churnguard: streaming churn-risk scoring and win-back alerts over Kafka.
//!
//! The crate is laid out along the data flow:
//!
//! ```text
//!  kafka::source ──► event (decode, validate) ──► engine ──► kafka::sink
//!   (consumer,            │ rejects → DLQ          │  features (per-user windows, caps, stage)
//!    checkpoint,                                   │  scoring  (model::Model behind `Scorer`)
//!    restore)                                      │  alert    (episode rule, AlertId)
//!                                                  │  policy   (bands, tiers, actions, caps)
//! ```
//!
//! Layers, inner to outer (imports only point inward; `scripts/check-layers.py` checks it):
//!
//! - **core**, pure: [`time`], [`event`], [`mapping`] (a source's records to events),
//!   [`features`], [`scoring`], [`alert`], [`policy`], [`engine`], [`clock`], [`dedupe`],
//!   [`spans`], and the serving half of [`model`];
//! - **training**: the offline half of [`model`] (dataset, train phases, evaluate, cards);
//! - **adapters**: [`kafka`] (pipeline, checkpoint, restore, client, telemetry), [`metrics`],
//!   [`http`], [`api`] (the lookup API), `model::reload`;
//! - **tools**: [`history`] (events from JSONL, CSV and Parquet files), [`replay`],
//!   [`score_table`] (every user's view at a date), [`synth`], [`demo`], [`loadgen`];
//! - the command line lives in the binary (`src/main.rs`, `src/cli/`), not in this library.
//!
//! Everything between the source and the sink (event → features → model → alert) is pure and
//! knows nothing of Kafka: the service, `replay`, `train`, tests and benchmarks all drive the
//! same [`engine::Engine`], so what is trained is what is served.

pub mod alert;
pub mod api;
pub mod clock;
pub mod dedupe;
pub mod demo;
pub mod engine;
pub mod event;
pub mod features;
pub mod history;
pub mod http;
pub mod kafka;
pub mod loadgen;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod replay;
pub mod score_table;
pub mod scoring;
pub mod spans;
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
