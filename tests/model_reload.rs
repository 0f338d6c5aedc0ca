//! Model hot reload against the real broker: a new artifact is picked up on a file change or a
//! SIGHUP without dropping an event, an invalid one is refused with the old model kept, and the
//! version in use is visible in /metrics.

mod util;

use std::path::Path;
use std::time::Duration;

use churnguard::event::{Event, EventKind};
use churnguard::model::Model;
use churnguard::DAY_MS;
use util::service::{now_ms, produce_events, Metrics, Service, Topics, MODEL};
use util::{shared, wait_until};

/// `users` users of batch `batch`: daily logins and a weekly purchase over `days` days ending at
/// `end` (ms), in time order. Ids are unique per batch, so nothing is deduplicated.
fn batch(batch: &str, users: usize, days: i64, end: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for d in (0..days).rev() {
        for u in 0..users {
            let ts = end - d * DAY_MS - u as i64 * 1_000;
            let user = format!("{batch}-u{u}");
            out.push(Event {
                event_id: format!("{batch}-{u}-{d}"),
                user_id: user.clone(),
                kind: EventKind::Login,
                ts,
                amount: 0.0,
            });
            if d % 7 == 0 {
                out.push(Event {
                    event_id: format!("{batch}-{u}-{d}-p"),
                    user_id: user,
                    kind: EventKind::Purchase,
                    ts: ts + 500,
                    amount: 20.0,
                });
            }
        }
    }
    out.sort_by_key(|e| e.ts);
    out
}

/// The committed default model with another threshold: a valid artifact with a new version.
fn model_with_threshold(threshold: f64) -> (String, String) {
    let mut a = Model::load(Path::new(MODEL)).unwrap().artifact().clone();
    a.threshold = threshold;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.json");
    a.save(&p).unwrap();
    (a.version.clone(), std::fs::read_to_string(&p).unwrap())
}

/// Replaces the file atomically (write, then rename), as deploy tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn version_of(m: &Metrics) -> Option<String> {
    m.0.lines()
        .filter(|l| l.starts_with("churnguard_model_info{") && l.ends_with(" 1"))
        .find_map(|l| {
            let rest = l.split("model_version=\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
}

fn reloads(m: &Metrics, result: &str) -> f64 {
    m.sum(
        "churnguard_model_reloads_total",
        &[&format!("result=\"{result}\"")],
    )
}

/// Waits until every produced event was consumed (none refused) and returns the scrape.
fn wait_consumed(svc: &mut Service, produced: usize) -> Metrics {
    let done = wait_until(Duration::from_secs(90), || {
        svc.metrics().handled() >= produced as u64
    });
    assert!(
        done,
        "only {} of {produced} events handled; log:\n{}",
        svc.metrics().handled(),
        svc.log_text()
    );
    let m = svc.metrics();
    assert_eq!(
        m.sum("churnguard_events_rejected_total", &[]),
        0.0,
        "no event refused"
    );
    assert_eq!(
        m.sum("churnguard_events_consumed_total", &[]),
        produced as f64,
        "every produced event consumed exactly once"
    );
    m
}

/// Runs the reload scenario: `swap` makes the service notice the file (poll or SIGHUP).
fn scenario(prefix: &str, poll_secs: &str, swap: impl Fn(&Service)) {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, prefix, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    std::fs::copy(MODEL, &path).unwrap();
    let original = Model::load(&path).unwrap().version().to_string();
    let (new_version, new_text) = model_with_threshold(0.77);
    assert_ne!(original, new_version);

    let now = now_ms();
    let history = batch(&format!("{prefix}-h"), 40, 30, now - 3_600_000);
    let mut produced = history.len();
    produce_events(&bootstrap, &t.input, &history);
    let mut svc =
        Service::start_with_model(&bootstrap, &t, &path, &["--model-poll-secs", poll_secs]);
    let m = wait_consumed(&mut svc, produced);
    assert_eq!(version_of(&m).as_deref(), Some(original.as_str()));
    assert_eq!(reloads(&m, "ok") + reloads(&m, "error"), 0.0);

    // A valid new artifact, while events keep arriving.
    replace(&path, &new_text);
    let live = batch(&format!("{prefix}-l1"), 20, 1, now_ms());
    produced += live.len();
    produce_events(&bootstrap, &t.input, &live);
    swap(&svc);
    let reloaded = wait_until(Duration::from_secs(30), || {
        version_of(&svc.metrics()).as_deref() == Some(new_version.as_str())
    });
    assert!(
        reloaded,
        "new version {new_version} never shown; log:\n{}",
        svc.log_text()
    );
    let m = svc.metrics();
    assert_eq!(reloads(&m, "ok"), 1.0);
    assert_eq!(m.sum("churnguard_model_threshold", &[]), 0.77);

    // An invalid artifact (a feature this build does not compute): refused, old model kept.
    let bad = new_text.replacen("\"events_7d\"", "\"shoe_size\"", 1);
    assert_ne!(bad, new_text);
    replace(&path, &bad);
    let live = batch(&format!("{prefix}-l2"), 20, 1, now_ms());
    produced += live.len();
    produce_events(&bootstrap, &t.input, &live);
    swap(&svc);
    let refused = wait_until(Duration::from_secs(30), || {
        reloads(&svc.metrics(), "error") >= 1.0
    });
    assert!(
        refused,
        "bad artifact not refused; log:\n{}",
        svc.log_text()
    );
    let m = wait_consumed(&mut svc, produced);
    assert_eq!(version_of(&m).as_deref(), Some(new_version.as_str()));
    assert_eq!(reloads(&m, "ok"), 1.0);
    let log = svc.log_text();
    assert!(
        log.contains("model reload refused") && log.contains("shoe_size"),
        "the reason is logged; log:\n{log}"
    );
    let status = svc.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean exit after reloads: {status}");
}

#[test]
fn a_changed_model_file_is_reloaded_by_polling_and_a_bad_one_is_refused() {
    scenario("reload-poll", "1", |_| {});
}

#[test]
fn sighup_reloads_the_model_and_a_bad_one_is_refused() {
    // Polling off: only the signal can make the service look at the file.
    scenario("reload-hup", "0", |svc| svc.hangup());
}
