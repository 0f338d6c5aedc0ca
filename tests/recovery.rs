//! Recovery of a restarted member: an instance killed mid-stream and restarted at once, well
//! within the group session timeout of its dead predecessor, must end up owning the partitions
//! nobody else consumes and process them to the end, by itself and without anyone waiting for
//! the broker to expire the dead member first.
//!
//! On Tansu 0.6.0 such a member joins a group whose leader is the dead predecessor: it is
//! assigned no partitions, and the dead member's expiry brings no rebalance. Every wait here is
//! on a condition (assignment, committed offsets), never a fixed sleep.

mod util;

use std::time::{Duration, Instant};

use churnguard::synth;
use util::changelog::committed_to_end;
use util::service::{now_ms, produce_events, slow_read, Service, Topics};
use util::{shared, wait_until};

#[test]
fn a_member_restarted_within_the_session_timeout_takes_the_partitions_and_finishes() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "restart", 4);
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 600,
        days: 150,
        end: now_ms() - 60_000,
        churn_share: 0.3,
        seed: 43,
    });
    let total = events.len() as u64;
    produce_events(&bootstrap, &t.input, &events);

    // Small fetches keep the first run going long enough for the kill to land mid-stream.
    let extra = slow_read(&["--commit-interval-ms", "100"]);
    let mut first = Service::start_with(&bootstrap, &t, &extra);
    // From the service's own metrics (a broker query per poll takes long enough for a quiet
    // machine to finish the whole input meanwhile).
    let mid_stream = wait_until(Duration::from_secs(180), || {
        first.try_metrics().is_some_and(|m| {
            m.handled() >= total / 20 && m.sum("churnguard_offset_commits_total", &["\"ok\""]) > 0.0
        })
    });
    assert!(
        mid_stream,
        "first run did not get going; log:\n{}",
        first.log_text()
    );
    first.kill();
    let killed = Instant::now();
    assert!(!committed_to_end(&bootstrap, &t), "killed mid-stream");

    // At once: the predecessor's session (6 s) is still open at the broker.
    let mut second = Service::start_with(&bootstrap, &t, &extra);
    let owns_all = wait_until(Duration::from_secs(60), || {
        second
            .try_metrics()
            .is_some_and(|m| m.sum("churnguard_assigned_partitions", &[]) == 4.0)
    });
    assert!(
        owns_all,
        "the restarted member owns {} of 4 partitions {:?} after the kill; log:\n{}",
        second
            .try_metrics()
            .map_or(-1.0, |m| m.sum("churnguard_assigned_partitions", &[])),
        killed.elapsed(),
        second.log_text()
    );
    let owned_after = killed.elapsed();
    let done = wait_until(Duration::from_secs(120), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(
        done,
        "the restarted member did not commit to the end; log:\n{}",
        second.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            second.get("/readyz").is_some_and(|(code, _)| code == 200)
        }),
        "ready once it owns and has caught up"
    );
    assert!(second.terminate(Duration::from_secs(35)).success());
    util::log(format!(
        "restart within the session timeout: the new member owned all 4 partitions {owned_after:?} after the kill; {total} events"
    ));
}
