//! `churnguard demo`: the whole service with no external setup.
//!
//! Starts librdkafka's in-process mock cluster (a real Kafka-protocol broker; topics are created
//! through its own API because its admin API is not implemented), feeds it a synthetic history
//! plus a few malformed messages, runs the real consumer → engine → producer pipeline against it,
//! prints alerts as they arrive and serves /metrics. After the history it keeps a live trickle
//! of events going so the dashboards move.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::watch;

use crate::api::{ApiConfig, ApiMetrics, Tokens};
use crate::engine::EngineConfig;
use crate::event::{encode, Event, EventKind};
use crate::features::Windows;
use crate::http::{self, HttpState};
use crate::kafka::state_view::StateView;
use crate::kafka::{self, PipelineConfig, PipelineError, PipelineReport};
use crate::metrics::Metrics;
use crate::model::{Model, ModelError};
use crate::synth::{bad_payloads, generate, SynthConfig, SynthUser};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("embedded broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("cannot serve metrics on {addr}: {source} (pass --metrics-addr 127.0.0.1:0 for any free port)")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

const INPUT: &str = "activity";
const ALERTS: &str = "winback-alerts";
const DLQ: &str = "activity-dlq";
const CHANGELOG: &str = "churnguard-demo-state-changelog";
/// Bytes of history per input partition, well under the mock broker's 5 MB retention.
const MOCK_PARTITION_BUDGET_BYTES: usize = 3 * 1024 * 1024;

/// What the demo runs: the served model, the synthetic history and how long to go on.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Address of the HTTP server for /metrics, /healthz and /readyz (port 0: any free port).
    pub metrics_addr: SocketAddr,
    /// Model artifact to score with.
    pub model: PathBuf,
    /// Synthetic users in the generated history.
    pub users: usize,
    /// Days of history generated before now.
    pub days: u32,
    /// Live events per second produced after the history (0 = none).
    pub live_rate: u32,
    /// Stop after this long (`None`: run until `shutdown`).
    pub stop_after: Option<Duration>,
    /// Alerts printed in full; the rest are summarised.
    pub print_alerts: usize,
    /// Random seed of the synthetic stream.
    pub seed: u64,
    /// Sliding windows the engine keeps (the model must have been trained with them).
    pub windows: Windows,
    /// The lookup API, if served.
    pub api: Option<DemoApi>,
}

/// The demo's lookup API: one instance, so it answers from its own state.
#[derive(Clone)]
pub struct DemoApi {
    pub addr: SocketAddr,
    pub tokens: Arc<Tokens>,
    /// Where the token is, for the ready-to-paste `curl` line.
    pub token_file: PathBuf,
}

impl std::fmt::Debug for DemoApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoApi")
            .field("addr", &self.addr)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Runs the demo until `shutdown` or `stop_after`.
pub async fn run(demo: DemoConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), DemoError> {
    let model = Arc::new(Model::load_for(&demo.model, demo.windows)?);
    let now = chrono::Utc::now().timestamp_millis();
    let synth = SynthConfig {
        users: demo.users,
        days: demo.days,
        end: now - 60_000,
        churn_share: 0.25,
        seed: demo.seed,
    };
    let (users, history) = generate(&synth);
    let payloads: Vec<(&str, String)> = history
        .iter()
        .map(|e| (e.user_id.as_str(), encode(e)))
        .collect();
    let bad = bad_payloads(now);

    let (cluster, partitions) = start_cluster(&payloads)?;
    let brokers = cluster.bootstrap_servers();

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let server = serve_metrics(demo.metrics_addr, &metrics, &ready).await?;

    println!(
        "churnguard demo: embedded broker at {brokers} (topic {INPUT}, {partitions} partitions); {} users, \
         {} events over {} days (+{} malformed); metrics on http://{}/metrics",
        users.len(),
        history.len(),
        demo.days,
        bad.len(),
        server.addr
    );

    let state_view = StateView::new();
    let api = match &demo.api {
        Some(a) => Some(serve_api(a, &metrics, &state_view, &users, server.addr).await?),
        None => None,
    };

    let producer: BaseProducer = kafka::client::config(
        &brokers,
        &[
            ("linger.ms", "20"),
            ("queue.buffering.max.messages", "1000000"),
        ],
        &[],
    )
    .create()?;
    let backlog = produce_history(&producer, &payloads, &bad);

    let cfg = pipeline_config(&brokers, demo.windows);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The demo serves one model: no reload watcher, so the sender is dropped at once.
    let (_, models) = watch::channel(Arc::clone(&model));
    let pipeline = tokio::spawn(kafka::run(
        cfg,
        models,
        Arc::clone(&metrics),
        ready,
        kafka::continuity::Continuity::default(),
        state_view,
        stop_rx,
    ));
    let printer = tokio::spawn(print_alerts(
        brokers.clone(),
        demo.print_alerts,
        shutdown.clone(),
    ));

    let started = Instant::now();
    let deadline = demo.stop_after.map(|d| started + d);
    let mut backlog_done = false;
    let mut live = LiveEvents {
        users: users
            .iter()
            .filter(|u| u.churn_day.is_none())
            .map(|u| u.user_id.as_str())
            .collect(),
        rng: rand::rngs::SmallRng::seed_from_u64(demo.seed),
        seq: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !backlog_done && metrics.messages_handled() as usize >= backlog {
            backlog_done = true;
            print_backlog_done(backlog, started, demo.live_rate);
        }
        if backlog_done && demo.live_rate > 0 {
            live.produce(&producer, (demo.live_rate / 10).max(1));
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
    let _ = stop_tx.send(true);
    let report = match pipeline.await {
        Ok(result) => result?,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    printer.abort();
    let _ = printer.await;
    server.task.abort();
    if let Some(api) = api {
        api.stop();
    }
    drop(producer);
    print_summary(&report, started, &users);
    drop(cluster);
    Ok(())
}

/// Serves /metrics, /healthz and /readyz.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
) -> Result<http::HttpServer, DemoError> {
    let state = HttpState {
        metrics: Arc::clone(metrics),
        ready: Arc::clone(ready),
        alive: Arc::new(AtomicBool::new(true)),
    };
    http::serve(addr, state)
        .await
        .map_err(|source| DemoError::Http { addr, source })
}

/// Serves the lookup API over the demo's state and prints a ready-to-paste `curl` line.
async fn serve_api(
    a: &DemoApi,
    metrics: &Metrics,
    state_view: &Arc<StateView>,
    users: &[SynthUser],
    metrics_addr: SocketAddr,
) -> Result<crate::api::ApiServer, DemoError> {
    let config = ApiConfig {
        addr: a.addr,
        advertised_url: format!("http://{}", a.addr),
        max_concurrent: 64,
        request_timeout: Duration::from_secs(2),
        forward_timeout: Duration::from_secs(1),
        max_id_bytes: crate::event::DEFAULT_MAX_ID_BYTES,
    };
    let server = crate::api::serve(
        config,
        Arc::clone(&a.tokens),
        Arc::clone(state_view) as Arc<dyn crate::api::LocalLookup>,
        None,
        ApiMetrics::register(&metrics.registry),
    )?;
    // A user who goes quiet in the synthetic history: the most interesting first lookup.
    let example = users
        .iter()
        .find(|u| u.churn_day.is_some())
        .or(users.first())
        .map_or("u1", |u| u.user_id.as_str());
    println!(
        "lookup API on http://{addr} (token in {file}; metrics stay on {metrics_addr}). Ask about a user:\n  \
         curl -s -H \"Authorization: Bearer $(cat {file})\" http://{addr}/v1/users/{example}",
        addr = server.addr,
        file = a.token_file.display(),
    );
    Ok(server)
}

/// The line that marks the end of the history.
fn print_backlog_done(backlog: usize, started: Instant, live_rate: u32) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "history of {backlog} messages processed in {secs:.1} s ({:.0} messages/s, including group join); \
         now streaming live events at {}/s — Ctrl-C to stop",
        backlog as f64 / secs,
        live_rate
    );
}

/// The closing line: what went through and how many alerts came out.
fn print_summary(report: &PipelineReport, started: Instant, users: &[SynthUser]) {
    println!(
        "demo stopped: {} messages consumed ({} rejected to the DLQ), {} win-back alerts published in {:.1} s \
         (churners in the synthetic history: {})",
        report.messages,
        report.rejected,
        report.alerts,
        started.elapsed().as_secs_f64(),
        users.iter().filter(|u| u.churn_day.is_some()).count()
    );
}

/// Starts the embedded broker with the demo's topics; returns it and the input's partition count.
fn start_cluster(
    payloads: &[(&str, String)],
) -> Result<
    (
        MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        i32,
    ),
    DemoError,
> {
    // The mock broker keeps at most 100,000 messages / 5 MB per partition and silently drops the
    // oldest beyond that, so the input topic gets enough partitions to hold the whole history.
    let bytes: usize = payloads.iter().map(|(k, p)| k.len() + p.len() + 64).sum();
    let partitions =
        i32::try_from((bytes / MOCK_PARTITION_BUDGET_BYTES + 1).max(payloads.len() / 60_000 + 1))
            .unwrap_or(i32::MAX)
            .clamp(3, 256);
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(INPUT, partitions, 1)?;
    cluster.create_topic(ALERTS, 1, 1)?;
    cluster.create_topic(DLQ, 1, 1)?;
    // The mock cluster's admin API times out: the service would create its changelog through
    // it, so the demo creates it here (same partition count as the input).
    cluster.create_topic(CHANGELOG, partitions, 1)?;
    Ok((cluster, partitions))
}

/// Produces the generated history with the malformed messages spread evenly through it (so the
/// DLQ path runs under load); returns how many messages went.
fn produce_history(
    producer: &BaseProducer,
    payloads: &[(&str, String)],
    bad: &[(String, &str)],
) -> usize {
    let mut backlog = 0usize;
    // Malformed messages spread evenly through the history: the DLQ path runs under load.
    let every = (payloads.len() / (bad.len() + 1)).max(1);
    let mut bad_iter = bad.iter();
    for (i, (key, payload)) in payloads.iter().enumerate() {
        produce(producer, key, payload.as_bytes());
        backlog += 1;
        if (i + 1) % every == 0 {
            if let Some((payload, _)) = bad_iter.next() {
                produce(producer, "u-bad", payload.as_bytes());
                backlog += 1;
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(30));
    backlog
}

/// The service's configuration for the embedded broker.
fn pipeline_config(brokers: &str, windows: Windows) -> PipelineConfig {
    PipelineConfig {
        brokers: brokers.to_string(),
        group: "churnguard-demo".into(),
        input_topic: INPUT.into(),
        alert_topic: ALERTS.into(),
        dlq_topic: DLQ.into(),
        outcome_topic: None,
        scores_topic: None,
        changelog_topic: Some(CHANGELOG.into()),
        commit_interval: Duration::from_secs(2),
        session_timeout_ms: 6_000,
        fetch_wait_ms: 500,
        kafka_options: Vec::new(),
        engine: EngineConfig {
            windows,
            ..EngineConfig::default()
        },
        decoder: crate::mapping::EventDecoder::native(),
        max_future_skew: 3_600_000,
        max_event_bytes: crate::event::DEFAULT_MAX_EVENT_BYTES,
        shutdown_timeout: Duration::from_secs(10),
        unassigned_timeout: None,
    }
}

/// The live trickle after the history: random activity of the users who did not churn.
struct LiveEvents<'a> {
    users: Vec<&'a str>,
    rng: rand::rngs::SmallRng,
    seq: u64,
}

impl LiveEvents<'_> {
    /// Produces `count` events stamped now.
    fn produce(&mut self, producer: &BaseProducer, count: u32) {
        if self.users.is_empty() {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        for _ in 0..count {
            let user = self.users[self.rng.gen_range(0..self.users.len())];
            let kind = [
                EventKind::Login,
                EventKind::PageView,
                EventKind::PageView,
                EventKind::Search,
                EventKind::CartAdd,
                EventKind::Purchase,
            ][self.rng.gen_range(0..6)];
            let e = Event {
                event_id: format!("live-{}", self.seq),
                user_id: user.to_string(),
                kind,
                ts: now,
                amount: if kind == EventKind::Purchase {
                    self.rng.gen_range(5.0..150.0f64).round()
                } else {
                    0.0
                },
            };
            self.seq += 1;
            produce(producer, user, encode(&e).as_bytes());
        }
        producer.poll(Duration::ZERO);
    }
}

fn produce(producer: &BaseProducer, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(INPUT).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Prints the first `full` alerts as JSON and counts the rest.
async fn print_alerts(brokers: String, full: usize, mut shutdown: watch::Receiver<bool>) {
    let settings = [
        ("group.id", "churnguard-demo-printer"),
        ("auto.offset.reset", "earliest"),
        ("fetch.queue.backoff.ms", "100"),
    ];
    let consumer: StreamConsumer = match kafka::client::config(&brokers, &settings, &[]).create() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "alert printer unavailable");
            return;
        }
    };
    if consumer.subscribe(&[ALERTS]).is_err() {
        return;
    }
    let mut seen = 0usize;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            m = consumer.recv() => {
                let Ok(m) = m else { continue };
                seen += 1;
                let text = m.payload().map(String::from_utf8_lossy).unwrap_or_default();
                if seen <= full {
                    println!("ALERT {seen}: {text}");
                } else if seen.is_power_of_two() || seen % 100 == 0 {
                    println!("… {seen} alerts so far");
                }
            }
        }
    }
}
