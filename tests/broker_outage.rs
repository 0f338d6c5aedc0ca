//! Fault test 3 (issue 6): the broker stops and comes back mid-run. The service waits, retries
//! with backoff, reports not-ready meanwhile, never exits or busy-loops, and resumes with
//! nothing lost: the final state equals a clean pass over every event.
//!
//! Uses its own broker (not the shared one), which the test stops and restarts on the same port
//! and data directory.

mod util;

use std::time::{Duration, Instant};

use churnguard::synth;
use util::changelog::{assert_same_features, changelog_state, committed_to_end, reference};
use util::service::{now_ms, produce_events, slow_read, Service, Topics};
use util::{wait_until, RestartableBroker};

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn the_service_rides_out_a_broker_restart() {
    let mut broker = RestartableBroker::start();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "outage", 4);
    let cfg = synth::SynthConfig {
        users: 900,
        days: 150,
        end: now_ms() - 60_000,
        churn_share: 0.3,
        seed: 31,
    };
    let (_, events) = synth::generate(&cfg);
    let users = events
        .iter()
        .map(|e| e.user_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // All history first: produced to a consumer that is caught up, old events would be late
    // against the wall clock (`too_late`), which is right for a live stream but not this test.
    produce_events(&bootstrap, &t.input, &events);
    let total = events.len() as u64;

    // Small fetches and a bounded prefetch keep the run going long enough for the outage to come
    // mid-run on a fast machine (each poll below also asks the broker for committed offsets).
    let mut s = Service::start_with(&bootstrap, &t, &slow_read(&["--commit-interval-ms", "200"]));
    let mid_run = wait_until(Duration::from_secs(120), || {
        s.try_metrics().is_some_and(|m| m.handled() >= total / 8)
            && util::committed_offsets(&bootstrap, &t.group, &t.input)
                .iter()
                .any(|&o| o > 0)
    });
    assert!(mid_run, "service did not get going; log:\n{}", s.log_text());
    assert!(
        !committed_to_end(&bootstrap, &t),
        "the outage comes mid-run"
    );

    broker.stop();
    let outage = Instant::now();
    let cpu_before = cpu_seconds(s.pid());
    let not_ready = wait_until(Duration::from_secs(30), || {
        s.get("/readyz").is_some_and(|(code, _)| code == 503)
    });
    assert!(
        not_ready,
        "/readyz still 200 with the broker down; log:\n{}",
        s.log_text()
    );
    // Stay down past the group session timeout (6 s), so the member must rejoin afterwards.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed()));
    let cpu_during = cpu_seconds(s.pid()) - cpu_before;
    let down_for = outage.elapsed().as_secs_f64();
    assert!(
        cpu_during < 0.5 * down_for,
        "no busy loop while the broker is down: {cpu_during:.2} CPU s in {down_for:.1} s"
    );
    assert!(s.get("/healthz").is_some(), "the process is still serving");

    broker.resume();
    util::log(format!(
        "broker down {down_for:.1} s; service used {cpu_during:.2} CPU s meanwhile"
    ));
    let recovered = Instant::now();
    let done = wait_until(Duration::from_secs(180), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(done, "service did not recover; log:\n{}", s.log_text());
    assert!(wait_until(Duration::from_secs(30), || {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    }));
    let m = s.metrics();
    util::log(format!(
        "recovered and committed to the end {:?} after the broker came back; pipeline restarts: {}, restored records: {}",
        recovered.elapsed(),
        m.sum("churnguard_pipeline_restarts_total", &[]),
        m.sum("churnguard_restore_records_total", &["result=\"applied\""]),
    ));
    assert!(s.terminate(Duration::from_secs(35)).success());
    let state = changelog_state(&bootstrap, &t);
    assert_same_features(&state, &reference(&events), users);
}
