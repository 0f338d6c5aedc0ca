//! The example subscriber (`examples/subscriber.rs`) against the real broker: it forwards
//! treatment alerts once each, skips duplicates, control-arm and expired alerts, and commits the
//! offsets of everything it handled.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use util::{committed_offsets, create_topic, produce, shared, unique, wait_until};

/// `cargo test` builds the examples next to the test binaries' directory.
fn subscriber_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join("subscriber");
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples; run the suite with cargo test",
        bin.display()
    );
    bin
}

fn alert(id: &str, user: &str, arm: &str, expires_at: &str) -> String {
    serde_json::json!({
        "schema_version": 1,
        "alert_id": id,
        "user_id": user,
        "experiment_arm": arm,
        "expires_at": expires_at,
        "recommended_action": "member_perk",
        "channel": "push",
        "score": 0.5,
    })
    .to_string()
}

#[test]
fn forwards_treatment_alerts_once_and_skips_control_expired_and_duplicates() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let topic = unique("sub-alerts");
    let group = unique("sub-group");
    create_topic(&bootstrap, &topic, 1);
    let future = "2999-01-01T00:00:00.000Z";
    let past = "2000-01-01T00:00:00.000Z";
    let records = [
        ("a", alert("id-a", "a", "treatment", future)),
        ("a", alert("id-a", "a", "treatment", future)), // redelivered duplicate
        ("b", alert("id-b", "b", "control", future)),
        ("c", alert("id-c", "c", "treatment", past)),
        ("d", alert("id-d", "d", "treatment", future)),
    ];
    let borrowed: Vec<(&str, &str)> = records.iter().map(|(k, v)| (*k, v.as_str())).collect();
    produce(&bootstrap, &topic, &borrowed);

    let mut child = Command::new(subscriber_binary())
        .args([
            "--brokers",
            &bootstrap,
            "--topic",
            &topic,
            "--group",
            &group,
        ])
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the subscriber example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let committed = wait_until(Duration::from_secs(60), || {
        committed_offsets(&bootstrap, &group, &topic) == vec![records.len() as i64]
    });
    let _ = child.kill();
    let _ = child.wait();
    let sent: Vec<serde_json::Value> = rx
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    assert!(
        committed,
        "the subscriber did not commit past every alert it handled"
    );
    let ids: Vec<&str> = sent.iter().filter_map(|v| v["alert_id"].as_str()).collect();
    assert_eq!(ids, ["id-a", "id-d"], "sent: {sent:?}");
}
