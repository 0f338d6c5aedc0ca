//! The lookup API over real HTTP against a group of `churnguard run` processes on a real
//! Kafka-protocol broker (Tansu): every user asked of every member gets the answer the engine
//! computes in-process for the same events at the same instant, field by field; bearer tokens
//! are required; unknown and erased users are 404; bad ids are refused before any lookup; and
//! while a member restores its state it answers 503 with `Retry-After`, never a wrong 404.

mod util;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{Event, EventKind};
use churnguard::features::Windows;
use churnguard::model::Model;
use churnguard::synth;
use util::service::{free_port, now_ms, produce_events, Service, Topics, MODEL};
use util::{shared, unique, wait_until};

const TOKEN: &str = "lookup-test-token-0123456789";

/// A member with the API on, its API port and the token file.
struct Member {
    svc: Service,
    api: String,
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, format!("# test\ncrm {TOKEN}\n")).expect("token file");
    path
}

fn start_member(bootstrap: &str, t: &Topics, tokens: &Path, members: &str) -> Member {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tokens = tokens.to_str().expect("utf-8 path");
    let svc = Service::start_with(
        bootstrap,
        t,
        &[
            "--api-addr",
            &addr,
            "--api-token-file",
            tokens,
            "--api-members-topic",
            members,
        ],
    );
    let api = format!("http://{addr}");
    // The API binds once the member directory is joined, just after /healthz answers.
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    assert!(up, "the API did not bind {addr}; log:\n{}", svc.log_text());
    Member { svc, api }
}

/// `GET {api}{path}` with `token` (none: no Authorization header).
fn get(api: &str, path: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = reqwest::blocking::Client::new()
        .get(format!("{api}{path}"))
        .timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().expect("API answers");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.text().unwrap_or_default(), retry)
}

/// Asks until the answer is not 503 (a rebalance settling), within a bound.
fn settled(api: &str, path: &str) -> (u16, serde_json::Value) {
    let mut last = (0, String::new());
    let ok = wait_until(Duration::from_secs(60), || {
        let (status, body, retry) = get(api, path, Some(TOKEN));
        if status == 503 {
            assert_eq!(retry.as_deref(), Some("1"), "503 carries Retry-After");
        }
        last = (status, body);
        status != 503
    });
    assert!(ok, "{api}{path} still 503 after 60 s: {}", last.1);
    let json = serde_json::from_str(&last.1).unwrap_or_else(|e| panic!("JSON ({e}): {}", last.1));
    (last.0, json)
}

/// The view the engine computes in-process: the user's events in time order, the clock moved
/// to `as_of` as the service's partition clock was. Users' states are independent and timers
/// are evaluated at their deadlines, so the user's own events give what the partition gave.
fn reference_view(
    events: &[Event],
    model: &Arc<Model>,
    user: &str,
    as_of: &str,
) -> serde_json::Value {
    let at = chrono::DateTime::parse_from_rfc3339(as_of)
        .expect("as_of is RFC 3339")
        .timestamp_millis();
    let mut engine = Engine::new(EngineConfig::default(), Some(Arc::clone(model) as _));
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.user_id == user) {
        engine.advance(e.ts, &mut out);
        engine.apply(e).expect("the scripted stream is accepted");
    }
    engine.advance(at, &mut out);
    let mut view =
        serde_json::to_value(engine.describe(user).expect("user in the reference")).expect("JSON");
    // A partition restored from its changelog restarts its clock at the latest activity it
    // holds, which state keeps to the second: an answer given before the partition's clock
    // moved on is as of that second, while the in-process clock passed the event's
    // milliseconds. Everything else must be equal.
    let last = engine.state(user).map(|s| s.last_activity_ms());
    let latest_event = events
        .iter()
        .filter(|e| e.user_id == user)
        .map(|e| e.ts)
        .max();
    if last == Some(at) && latest_event.is_some_and(|ts| ts > at && ts - at < 1_000) {
        view["as_of"] = serde_json::json!(as_of);
    }
    view
}

#[test]
fn every_member_answers_for_every_user_as_the_engine_does() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "lookup", 3);
    let end = now_ms() - 60_000;
    let mut events = synth::scripted(end, 120, 8, 6, 45);
    let erased = "steady-0";
    events.push(Event {
        event_id: "erase-steady-0".into(),
        user_id: erased.into(),
        kind: EventKind::Erase,
        ts: end + 1_000,
        amount: 0.0,
    });
    events.sort_by_key(|e| e.ts);
    produce_events(&bootstrap, &t.input, &events);
    let mut users: Vec<String> = events.iter().map(|e| e.user_id.clone()).collect();
    users.sort();
    users.dedup();

    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(dir.path());
    let directory = unique("lookup-members");
    let mut a = start_member(&bootstrap, &t, &tokens, &directory);
    let mut b = start_member(&bootstrap, &t, &tokens, &directory);
    let consumed = wait_until(Duration::from_secs(120), || {
        util::changelog::committed_to_end(&bootstrap, &t)
    });
    assert!(
        consumed,
        "group did not consume the stream; log A:\n{}",
        a.svc.log_text()
    );

    let model = Arc::new(Model::load_for(Path::new(MODEL), Windows::default()).expect("model"));
    let mut compared = 0;
    for user in users.iter().filter(|u| u.as_str() != erased) {
        for member in [&a, &b] {
            let (status, got) = settled(&member.api, &format!("/v1/users/{user}"));
            assert_eq!(status, 200, "{user} from {}: {got}", member.api);
            let as_of = got["as_of"].as_str().expect("as_of");
            let expected = reference_view(&events, &model, user, as_of);
            assert_eq!(
                got, expected,
                "{user} from {} differs from the engine",
                member.api
            );
            compared += 1;
        }
    }
    // Some answers were found in the other member's state.
    let forwarded: f64 = [&mut a, &mut b]
        .into_iter()
        .map(|m| {
            m.svc
                .metrics()
                .sum("churnguard_api_forwards_total", &["result=\"found\""])
        })
        .sum();
    assert!(
        forwarded > 0.0,
        "no lookup was answered by the other member"
    );

    // Unknown, erased: 404 with a JSON error, from both members.
    for member in [&a, &b] {
        for user in ["nobody-at-all", erased] {
            let (status, got) = settled(&member.api, &format!("/v1/users/{user}"));
            assert_eq!(status, 404, "{user}: {got}");
            assert!(got["error"]
                .as_str()
                .is_some_and(|e| e.contains("unknown user")));
        }
    }
    // Credentials: none or wrong is 401 and says nothing about the user.
    let path = format!("/v1/users/{}", users[1]);
    for token in [None, Some("wrong-token-0123456789abcdef")] {
        let (status, body, _) = get(&a.api, &path, token);
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("score"), "{body}");
    }
    // Ids are checked before any lookup.
    let long = "x".repeat(300);
    let (status, body, _) = get(&a.api, &format!("/v1/users/{long}"), Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = get(&a.api, "/v1/users/a%0Ab", Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    // The export: every stored day, no props; counted by token id.
    let churner = users
        .iter()
        .find(|u| u.starts_with("churner"))
        .expect("a churner");
    let (status, export) = settled(&b.api, &format!("/v1/users/{churner}/export"));
    assert_eq!(status, 200, "{export}");
    assert!(
        export["days"].as_array().is_some_and(|d| !d.is_empty()),
        "{export}"
    );
    assert!(!export.to_string().contains("props"));
    let exports = b
        .svc
        .metrics()
        .sum("churnguard_api_exports_total", &["token_id=\"crm\""]);
    assert!(exports >= 1.0, "the export is counted under the token id");
    assert!(
        b.svc.log_text().contains("user data export requested"),
        "the export is logged"
    );
    assert!(
        !b.svc.log_text().contains(TOKEN),
        "the token never reaches the log"
    );
    util::log(format!(
        "lookup: {compared} answers equal to the engine's over 2 members; {forwarded} forwarded"
    ));
}

/// A member restoring a large state answers 503 with `Retry-After` (naming the restore) for a
/// user it cannot see yet, never 404; once restored, 200.
#[test]
fn a_member_restoring_answers_503_never_a_wrong_404() {
    use std::io::Write;
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "lookup-restore", 2);
    // Many users, one event each: a changelog that takes seconds to restore.
    let users = 120_000;
    let at = now_ms() - 3_600_000;
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("temp file");
    for i in 0..users {
        let e = Event {
            event_id: format!("e{i}"),
            user_id: format!("u{i}"),
            kind: EventKind::Login,
            ts: at + i as i64,
            amount: 0.0,
        };
        writeln!(file, "{}", churnguard::event::encode(&e)).expect("write history");
    }
    file.flush().expect("flush");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["backfill", "--brokers", &bootstrap, "--group", &t.group])
        .args(["--input-topic", &t.input, "--model", MODEL, "--events"])
        .arg(file.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run churnguard backfill");
    assert!(
        out.status.success(),
        "backfill: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(dir.path());
    let m = start_member(&bootstrap, &t, &tokens, &unique("lookup-restore-members"));
    let user = format!("u{}", users - 1);
    let (mut restoring, mut other_503, mut statuses) = (0, 0, Vec::new());
    let answered = wait_until(Duration::from_secs(120), || {
        let (status, body, retry) = get(&m.api, &format!("/v1/users/{user}"), Some(TOKEN));
        statuses.push(status);
        match status {
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                if body.contains("restoring partitions") {
                    restoring += 1;
                } else {
                    other_503 += 1;
                }
                false
            }
            200 => true,
            other => panic!("answer {other} before the user's state was restored: {body}"),
        }
    });
    assert!(answered, "no 200 within 120 s; log:\n{}", m.svc.log_text());
    assert!(
        restoring > 0,
        "no 503 named the restore ({other_503} other 503s): the restore was not observed"
    );
    util::log(format!(
        "lookup during restore of {users} users: {restoring} answers 503 (restoring), \
         {other_503} 503 (joining), then 200"
    ));
}
