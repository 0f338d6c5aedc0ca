//! Shared integration-test harness (one harness for every test binary: `mod util;`).
//!
//! * [`TestBroker`]: a private Tansu broker (SQLite storage) on a free loopback port, or the
//!   external broker named by `CHURNGUARD_TEST_BROKERS`. [`shared`] gives one broker per test
//!   binary.
//! * Helpers for topics, producing, consuming, watermarks and committed offsets. They are
//!   synchronous (rdkafka `BaseConsumer`/`FutureProducer` + a tiny `block_on`), so they can be
//!   called from plain `#[test]`s; from async tests, call them via `spawn_blocking`.
//!
//! Every test must use its own topics and groups (see [`unique`]); tests never share state.
//!
//! Tansu notes: topics are not auto-created (use [`create_topic`]); group joins take about half
//! of `session.timeout.ms`, so consumers here use 6 s; `fetch.queue.backoff.ms=100` because
//! librdkafka's default (1000 ms) throttles fetching noticeably.
#![allow(dead_code)]

pub mod changelog;
pub mod dashboards;
pub mod schema;
pub mod service;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// `(key, payload, headers)` as produced/consumed by the helpers (lossy UTF-8).
pub type Record = (String, String, Vec<(String, String)>);

/// Env var naming an external broker (bootstrap list) to run the suite against instead of a
/// private Tansu.
pub const EXTERNAL_BROKERS_ENV: &str = "CHURNGUARD_TEST_BROKERS";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A running broker. For a private Tansu, dropping it stops the broker and removes its data dir.
pub struct TestBroker {
    bootstrap: String,
    proc: Option<BrokerProcess>,
}

struct BrokerProcess {
    /// `bash` supervisor; it kills tansu when its stdin reaches EOF, i.e. when `stdin` is dropped
    /// or when this test process dies in any way (even SIGKILL), so brokers never outlive tests.
    supervisor: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a private Tansu (or wraps `CHURNGUARD_TEST_BROKERS` if set) and waits until it
    /// answers Kafka metadata requests.
    pub fn start() -> TestBroker {
        if let Ok(ext) = std::env::var(EXTERNAL_BROKERS_ENV) {
            if !ext.trim().is_empty() {
                wait_for_metadata(&ext, START_TIMEOUT)
                    .unwrap_or_else(|e| panic!("external broker {ext} ({EXTERNAL_BROKERS_ENV}) not answering metadata: {e}"));
                return TestBroker {
                    bootstrap: ext,
                    proc: None,
                };
            }
        }
        let bin = tansu_binary();
        let mut last_err = String::new();
        // A free port can be grabbed by someone else between probe and bind: retry a few times.
        for _ in 0..3 {
            match start_tansu(&bin) {
                Ok(b) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start tansu ({}): {last_err}", bin.display());
    }

    /// Bootstrap servers, e.g. `127.0.0.1:40123`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// True when running against an external broker (`CHURNGUARD_TEST_BROKERS`).
    pub fn is_external(&self) -> bool {
        self.proc.is_none()
    }

    /// Data/log directory of a private broker.
    pub fn dir(&self) -> Option<PathBuf> {
        self.proc.as_ref().map(|p| p.dir.path().to_path_buf())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            stop_supervisor(p.stdin.take(), &mut p.supervisor);
        }
    }
}

/// Stops a supervised server: closing the supervisor's stdin makes it kill the server and wait
/// for it; a supervisor still running after 10 s is killed itself.
pub fn stop_supervisor(stdin: Option<ChildStdin>, supervisor: &mut Child) {
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match supervisor.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = supervisor.kill();
                let _ = supervisor.wait();
                break;
            }
            Ok(None) => std::thread::sleep(POLL),
        }
    }
}

/// One broker shared by all tests of a test binary. It is never dropped (statics aren't), but
/// the supervisor notices the test process exiting (stdin EOF) and stops tansu and removes its
/// data dir.
///
/// A start failure is remembered, so the other tests of the binary fail at once with the same
/// message instead of each waiting for the start timeout again.
pub fn shared() -> &'static TestBroker {
    static BROKER: OnceLock<Result<TestBroker, String>> = OnceLock::new();
    let res = BROKER.get_or_init(|| {
        std::panic::catch_unwind(TestBroker::start).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into())
        })
    });
    match res {
        Ok(b) => b,
        Err(e) => panic!("shared test broker failed to start: {e}"),
    }
}

fn tansu_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    });
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .or_else(|| {
            cargo_home
                .map(|c| c.join("bin").join("tansu"))
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("tansu not installed: run `bash scripts/broker.sh install`"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn start_tansu(bin: &std::path::Path) -> Result<TestBroker, String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("churnguard-tansu-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    // The supervisor runs tansu in the background, blocks reading stdin, and on EOF stops tansu
    // and deletes the data dir (needed for `shared()`, whose TempDir is never dropped).
    // sqlite:// paths are relative to the cwd, hence current_dir(dir).
    let script = r#"
        "$TANSU_BIN" broker --cluster-id churnguard-test --storage-engine sqlite://tansu.db \
            --listener-url "$TANSU_URL" --advertised-listener-url "$TANSU_URL" \
            </dev/null >tansu.log 2>&1 &
        pid=$!
        echo "$pid" > tansu.pid
        cat >/dev/null
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        cd / && rm -rf "$TANSU_DIR"
    "#;
    let mut supervisor = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("TANSU_BIN", bin)
        .env("TANSU_URL", &url)
        .env("TANSU_DIR", dir.path())
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn bash: {e}"))?;
    let stdin = supervisor.stdin.take();
    let bootstrap = format!("127.0.0.1:{port}");
    let log = dir.path().join("tansu.log");
    let broker = TestBroker {
        bootstrap: bootstrap.clone(),
        proc: Some(BrokerProcess {
            supervisor,
            stdin,
            dir,
        }),
    };
    let log_tail = || {
        std::fs::read_to_string(&log)
            .map(|s| tail(&s, 2000))
            .unwrap_or_default()
    };

    // 1. TCP port open (cheap, avoids librdkafka connection-refused noise).
    let tcp_ok = wait_until(START_TIMEOUT, || {
        TcpStream::connect_timeout(
            &("127.0.0.1", port)
                .to_socket_addrs()
                .unwrap()
                .next()
                .unwrap(),
            POLL,
        )
        .is_ok()
            || tansu_exited(&log)
    });
    if !tcp_ok || tansu_exited(&log) {
        return Err(format!(
            "tansu did not open port {port} within {START_TIMEOUT:?}; log:\n{}",
            log_tail()
        ));
    }
    // 2. Kafka metadata answers.
    if let Err(e) = wait_for_metadata(&bootstrap, START_TIMEOUT.saturating_sub(started.elapsed())) {
        return Err(format!(
            "tansu on {bootstrap} did not answer metadata: {e}; log:\n{}",
            log_tail()
        ));
    }
    index_headers(dir_of(&broker))?;
    eprintln!(
        "[test-broker] tansu up on {bootstrap} in {:?}",
        started.elapsed()
    );
    Ok(broker)
}

fn dir_of(broker: &TestBroker) -> &std::path::Path {
    broker
        .proc
        .as_ref()
        .map(|p| p.dir.path())
        .expect("a private broker has a data dir")
}

/// The index [`index_headers`] creates on Tansu's `header` table.
pub const HEADER_INDEX: &str = "churnguard_header_record";

/// Test-broker workaround, the same as `scripts/broker.sh start` makes (README, "Known
/// issues"): Tansu 0.6's SQLite engine looks up each fetched record's headers with a scan of
/// its `header` table, so once alerts and dead letters (which carry headers) accumulate,
/// fetches slow to a stop and long tests time out for the broker's sake, not the service's. An
/// index on the lookup's columns removes the scan. Runs once the broker answers (its schema
/// exists then); the index lives in the database file, so a restarted broker keeps it. Needs
/// the `sqlite3` program (`.ci/run` installs it).
fn index_headers(dir: &std::path::Path) -> Result<(), String> {
    let sql = format!("CREATE INDEX IF NOT EXISTS {HEADER_INDEX} ON header (topition, offset_id);");
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(dir.join("tansu.db"))
        .arg(&sql)
        .output()
        .map_err(|e| {
            format!(
                "cannot run sqlite3 to index the test broker's header table ({e}); install it \
                 (Debian: apt-get install sqlite3): without the index Tansu's fetches slow to a \
                 stop once records with headers accumulate"
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "sqlite3 could not index the test broker's header table: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The indexes on Tansu's `header` table of a private broker (what [`index_headers`] made).
pub fn header_indexes(dir: &std::path::Path) -> Result<Vec<String>, String> {
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(dir.join("tansu.db"))
        .arg("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'header';")
        .output()
        .map_err(|e| format!("cannot run sqlite3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// True if the tansu process (pid written by the supervisor next to the log) has exited.
fn tansu_exited(log: &std::path::Path) -> bool {
    let Some(pid) = std::fs::read_to_string(log.with_file_name("tansu.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return false; // not started yet
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after "(comm)"; Z = zombie (exited, not yet reaped by the supervisor)
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => true,
    }
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

fn wait_for_metadata(bootstrap: &str, timeout: Duration) -> Result<(), String> {
    let consumer: BaseConsumer = base_config(bootstrap).create().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err("metadata has no brokers".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Config and small utilities

/// Client config shared by all helpers: tuned for Tansu (and fine on Apache Kafka).
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "5000");
    c
}

/// Consumer config tuned for Tansu: 6 s session timeout (joins take ~3 s), fast fetch backoff,
/// no auto commit, read from the beginning when the group has no committed offset.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = base_config(bootstrap);
    c.set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.queue.backoff.ms", "100")
        .set("fetch.wait.max.ms", "100")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c
}

/// Producer config: idempotence off (simple), acks=all, short linger.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = base_config(bootstrap);
    c.set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    c
}

/// Unique name for a topic/group: `prefix-<pid>-<nanos>-<counter>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 50 ms until it is true (returns true) or `timeout` passes (returns false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Minimal executor for rdkafka's futures (they are completed by librdkafka's own threads, so
/// no async runtime is needed). Usable from any thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unparker(std::thread::Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unparker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Topics

/// Creates `name` with `partitions` partitions (replication factor 1) via the Kafka AdminClient
/// and waits until metadata shows the topic with all partitions. Panics on failure.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        base_config(bootstrap).create().expect("admin client");
    let topic =
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("create_topics({name}): {e}"));
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("create topic {t}: {code:?}"),
        }
    }
    let ok = wait_until(Duration::from_secs(30), || {
        partition_count(bootstrap, name) == Some(partitions as usize)
    });
    assert!(
        ok,
        "topic {name} did not show {partitions} partitions in metadata within 30s (got {:?})",
        partition_count(bootstrap, name)
    );
}

/// Number of partitions of `topic` per metadata, or None if unknown/erroring.
pub fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let c: BaseConsumer = base_config(bootstrap).create().ok()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    Some(t.partitions().len())
}

// ---------------------------------------------------------------------------------------------
// Producing

/// Produces `(key, payload)` records and waits for every delivery. Returns `(partition, offset)`
/// per record, in input order. Panics on any delivery failure.
pub fn produce(bootstrap: &str, topic: &str, records: &[(&str, &str)]) -> Vec<(i32, i64)> {
    let recs: Vec<Record> = records
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string(), vec![]))
        .collect();
    produce_with(&producer_config(bootstrap), topic, &recs)
}

/// Like [`produce`] with explicit producer config and headers.
pub fn produce_with(config: &ClientConfig, topic: &str, records: &[Record]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = config.create().expect("producer");
    let mut futures = Vec::with_capacity(records.len());
    for (key, payload, headers) in records {
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_str())
            .headers(hs);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    futures
        .into_iter()
        .map(|f| match block_on(f) {
            Ok(Ok(d)) => (d.partition, d.offset),
            Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
            Err(_) => panic!("delivery to {topic} cancelled"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Consuming

/// A consumed record with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: String,
    /// The record has no value (a tombstone); `payload` is then empty.
    pub null_payload: bool,
    pub headers: Vec<(String, String)>,
}

/// Converts a message (lossy UTF-8; missing key/payload become "").
pub fn to_consumed<M: Message>(m: &M) -> Consumed {
    let s = |b: Option<&[u8]>| {
        b.map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let headers = m
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key.to_string(), s(h.value))).collect())
        .unwrap_or_default();
    Consumed {
        partition: m.partition(),
        offset: m.offset(),
        key: s(m.key()),
        payload: s(m.payload()),
        null_payload: m.payload().is_none(),
        headers,
    }
}

/// Reads `topic` from the beginning of every partition (fresh group id, manual assignment, so no
/// group-join delay) until at least `expected_count` records arrived AND everything up to the
/// current high watermarks was read (so unexpected extra records are returned too), or until
/// `timeout`. Returns `(key, payload, headers)` sorted by (partition, offset).
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected_count: usize,
    timeout: Duration,
) -> Vec<Record> {
    consume_records(bootstrap, topic, expected_count, timeout)
        .into_iter()
        .map(|c| (c.key, c.payload, c.headers))
        .collect()
}

/// Like [`consume_all`] but returns partition/offset too.
pub fn consume_records(
    bootstrap: &str,
    topic: &str,
    expected_count: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let n = wait_partition_count(bootstrap, topic, timeout);
    let consumer: BaseConsumer = consumer_config(bootstrap, &unique("consume-all"))
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<Consumed> = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new(); // next offset to read per partition
    let mut targets: Option<Vec<i64>> = None;
    while Instant::now() < deadline {
        if let Some(r) = consumer.poll(Duration::from_millis(100)) {
            let m = r.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
            next.insert(m.partition(), m.offset() + 1);
            out.push(to_consumed(&m));
            continue;
        }
        if out.len() < expected_count {
            continue;
        }
        // Enough records: make sure we've read up to the high watermarks (catches extras).
        let hw = targets.get_or_insert_with(|| high_watermarks(bootstrap, topic));
        let caught_up = hw.iter().enumerate().all(|(p, &h)| {
            let pos = match consumer
                .position()
                .ok()
                .and_then(|t| t.find_partition(topic, p as i32).map(|e| e.offset()))
            {
                Some(Offset::Offset(o)) => o,
                _ => *next.get(&(p as i32)).unwrap_or(&0),
            };
            pos.max(*next.get(&(p as i32)).unwrap_or(&0)) >= h
        });
        if caught_up {
            break;
        }
    }
    drop(tpl);
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}

fn wait_partition_count(bootstrap: &str, topic: &str, timeout: Duration) -> usize {
    let mut n = None;
    wait_until(timeout, || {
        n = partition_count(bootstrap, topic);
        n.is_some()
    });
    n.unwrap_or_else(|| panic!("topic {topic} not found in metadata"))
}

/// High watermark (end offset) of every partition of `topic`, indexed by partition.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    let n = wait_partition_count(bootstrap, topic, Duration::from_secs(10));
    let c: BaseConsumer = base_config(bootstrap).create().expect("consumer");
    (0..n as i32)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("fetch_watermarks({topic}, {p}): {e}"))
                .1
        })
        .collect()
}

/// Committed offset of `group` for every partition of `topic` (-1 when nothing is committed).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<i64> {
    let n = wait_partition_count(bootstrap, topic, Duration::from_secs(10));
    let consumer: BaseConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed_offsets({group}, {topic}): {e}"));
    let out = (0..n as i32)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect();
    // The list must be dropped before the consumer, or librdkafka's destroy can hang.
    drop(committed);
    drop(consumer);
    out
}

/// Writes a line to stderr immediately (test output capture aside).
pub fn log(msg: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "{}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// A broker that a test can stop and start again

/// A private Tansu that a test stops and restarts on the same port and data directory (broker
/// outage tests). Its supervisor restarts tansu whenever it exits, unless a `hold` file exists;
/// like [`TestBroker`], everything stops when the test process goes away.
pub struct RestartableBroker {
    bootstrap: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl RestartableBroker {
    pub fn start() -> RestartableBroker {
        let bin = tansu_binary();
        let dir = tempfile::Builder::new()
            .prefix("churnguard-tansu-restartable-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let script = r#"
            (
                while true; do
                    while [ -e hold ]; do sleep 0.05; done
                    [ -e stopped ] && break
                    "$TANSU_BIN" broker --cluster-id churnguard-test --storage-engine sqlite://tansu.db \
                        --listener-url "$TANSU_URL" --advertised-listener-url "$TANSU_URL" \
                        </dev/null >>tansu.log 2>&1 &
                    echo "$!" > tansu.pid
                    wait "$!"
                    [ -e stopped ] && break
                done
            ) &
            loop=$!
            cat >/dev/null
            touch stopped
            rm -f hold
            kill "$(cat tansu.pid)" 2>/dev/null
            for _ in $(seq 100); do kill -0 "$loop" 2>/dev/null || break; sleep 0.05; done
            kill -9 "$(cat tansu.pid)" "$loop" 2>/dev/null
            cd / && rm -rf "$TANSU_DIR"
        "#;
        let mut supervisor = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .env("TANSU_BIN", &bin)
            .env("TANSU_URL", &url)
            .env("TANSU_DIR", dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bash");
        let stdin = supervisor.stdin.take();
        let broker = RestartableBroker {
            bootstrap: format!("127.0.0.1:{port}"),
            supervisor,
            stdin,
            dir,
        };
        wait_for_metadata(&broker.bootstrap, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("restartable tansu did not come up: {e}"));
        index_headers(broker.dir.path()).unwrap_or_else(|e| panic!("{e}"));
        broker
    }

    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("tansu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the broker (SIGTERM) and keeps it down until [`RestartableBroker::resume`].
    pub fn stop(&mut self) {
        std::fs::write(self.dir.path().join("hold"), b"").expect("hold file");
        let pid = self.pid().expect("tansu pid");
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let gone = wait_until(Duration::from_secs(20), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        assert!(gone, "tansu {pid} did not stop");
    }

    /// Starts the broker again on the same port and data, and waits until it answers.
    pub fn resume(&mut self) {
        let before = self.pid();
        std::fs::remove_file(self.dir.path().join("hold")).expect("remove hold file");
        assert!(
            wait_until(Duration::from_secs(20), || self.pid() != before),
            "tansu not restarted"
        );
        wait_for_metadata(&self.bootstrap, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("restarted tansu not answering: {e}"));
    }
}

impl Drop for RestartableBroker {
    fn drop(&mut self) {
        stop_supervisor(self.stdin.take(), &mut self.supervisor);
    }
}
