//! `churnguard score` run as a binary on a scripted history: the table holds every user the
//! engine tracks at `--at`, sorted, each row equal to what an in-process engine's `describe`
//! returns for the same events and model; CSV and JSONL parse; `--at` before the history or
//! outside the time range is refused; a bad line is named by file and line. No broker needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use churnguard::engine::{Engine, EngineConfig, UserView};
use churnguard::event::{encode, Event, EventKind};
use churnguard::mapping::EventDecoder;
use churnguard::model::Model;
use churnguard::policy::Policy;
use churnguard::{Millis, DAY_MS};

const BIN: &str = env!("CARGO_BIN_EXE_churnguard");

/// 2025-01-01T00:00:00Z: the history is in the past, whatever the machine's clock says.
const START: Millis = 20_089 * DAY_MS;
/// `--at` of the tests: day 120 of the history.
const AT: &str = "2025-05-01";
const AT_DAY: i64 = 120;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn model_path() -> String {
    repo().join("models/churn-lr.json").display().to_string()
}

fn event(user: &str, day: i64, kind: EventKind, amount: f64) -> Event {
    Event {
        event_id: format!("{user}-{day}-{}", kind as u8),
        user_id: user.into(),
        kind,
        ts: START + day * DAY_MS + 9 * 3_600_000,
        amount,
    }
}

/// Who is at risk at day 120 is known by construction: `steady-*` users log in every other day
/// and buy every ten days until the day before; `lapsed-*` users did the same for their first
/// 30 days and then went silent (90 days of silence); `browser` only looks around until day 118;
/// `newcomer` arrives on day 130, after `--at`.
fn history() -> Vec<Event> {
    let mut events = Vec::new();
    for day in (0..AT_DAY).step_by(2) {
        for user in ["steady-a", "steady-b"] {
            events.push(event(user, day, EventKind::Login, 0.0));
            if day % 10 == 0 {
                events.push(event(user, day, EventKind::Purchase, 42.5));
            }
        }
        if day < 30 {
            for user in ["lapsed-a", "lapsed-b"] {
                events.push(event(user, day, EventKind::Login, 0.0));
                events.push(event(user, day, EventKind::Purchase, 60.0));
            }
        }
        events.push(event("browser", day, EventKind::PageView, 0.0));
    }
    events.push(event("newcomer", 130, EventKind::Login, 0.0));
    // Files are read in any order: write them newest first.
    events.reverse();
    events
}

fn write_history(dir: &Path, extra: &[(usize, &str)]) -> PathBuf {
    let mut lines: Vec<String> = history().iter().map(encode).collect();
    for (at, line) in extra {
        lines.insert(*at, line.to_string());
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn score(args: &[&str], events: &Path) -> Output {
    let model = model_path();
    let mut all = vec![
        "score",
        "--events",
        events.to_str().unwrap(),
        "--model",
        &model,
    ];
    all.extend_from_slice(args);
    Command::new(BIN)
        .args(&all)
        .output()
        .expect("the churnguard binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The views an in-process engine gives after the events at or before `at`, by user id.
fn in_process(events: &Path, at: Millis, policy: Option<&Path>) -> Vec<UserView> {
    let decoder = EventDecoder::native();
    let options = churnguard::history::ReadOptions::offline(&decoder);
    let loaded = churnguard::history::load(&[events.to_path_buf()], &options).unwrap();
    let model = Arc::new(Model::load(Path::new(&model_path())).unwrap());
    let mut config = EngineConfig::default();
    if let Some(p) = policy {
        config.policy = Arc::new(Policy::load(p).unwrap());
    }
    let mut engine = Engine::new(config, Some(model));
    let before: Vec<Event> = loaded.events.into_iter().filter(|e| e.ts <= at).collect();
    churnguard::replay::replay(&mut engine, &before, Some(at));
    let mut ids: Vec<String> = engine.user_ids().map(str::to_string).collect();
    ids.sort();
    ids.iter().map(|id| engine.describe(id).unwrap()).collect()
}

fn at_millis() -> Millis {
    START + AT_DAY * DAY_MS
}

fn jsonl_rows(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn jsonl_rows_equal_the_in_process_engine_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_history(dir.path(), &[]);
    let o = score(&["--at", AT], &events);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let rows = jsonl_rows(&o.stdout);
    let expected = in_process(&events, at_millis(), None);
    let users: Vec<&str> = rows
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["browser", "lapsed-a", "lapsed-b", "steady-a", "steady-b"],
        "every user known at --at, sorted; the newcomer comes later"
    );
    assert_eq!(rows.len(), expected.len());
    for (row, view) in rows.iter().zip(&expected) {
        let view = serde_json::to_value(view).unwrap();
        let (row, view) = (row.as_object().unwrap(), view.as_object().unwrap());
        assert_eq!(
            row.keys().collect::<Vec<_>>(),
            view.keys().collect::<Vec<_>>()
        );
        for (field, value) in view {
            assert_eq!(&row[field], value, "{} {field}", row["user_id"]);
        }
        assert_eq!(row["as_of"], "2025-05-01T00:00:00.000Z");
    }
    let above: Vec<&str> = rows
        .iter()
        .filter(|r| r["score"].as_f64().unwrap() >= r["threshold"].as_f64().unwrap())
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(above, ["lapsed-a", "lapsed-b"], "{rows:#?}");
    for says in [
        "scored 5 users at 2025-05-01T00:00:00.000Z",
        "1 after --at left out",
        "2 at or above the threshold",
    ] {
        assert!(err.contains(says), "the summary says {says:?}: {err}");
    }
}

#[test]
fn csv_rows_parse_into_the_flat_columns_and_agree_with_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_history(dir.path(), &[]);
    let out = dir.path().join("scores.csv");
    let o = score(
        &[
            "--at",
            "2025-05-01T00:00:00Z",
            "--format",
            "csv",
            "--output",
            out.to_str().unwrap(),
        ],
        &events,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "the table went to the file");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".partial")),
        "no partial file is left: {names:?}"
    );
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "user_id",
            "as_of",
            "score",
            "threshold",
            "risk_band",
            "lifecycle_stage",
            "value_tier",
            "recommended_action",
            "channel",
            "decision",
            "experiment_arm",
            "reasons",
            "last_activity_at",
            "last_purchase_at",
            "opted_out",
            "model_version"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let expected = in_process(&events, at_millis(), None);
    assert_eq!(rows.len(), expected.len());
    for (row, view) in rows.iter().zip(&expected) {
        let cell = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
        assert_eq!(cell("user_id"), view.user_id);
        assert_eq!(cell("as_of"), view.as_of);
        assert_eq!(cell("score").parse::<f64>().unwrap(), view.score.unwrap());
        assert_eq!(
            cell("threshold").parse::<f64>().unwrap(),
            view.threshold.unwrap()
        );
        assert_eq!(cell("risk_band"), view.risk_band.unwrap().as_str());
        assert_eq!(cell("lifecycle_stage"), view.lifecycle_stage.as_str());
        assert_eq!(cell("value_tier"), view.value_tier.as_str());
        assert_eq!(
            cell("recommended_action"),
            view.recommended_action.as_deref().unwrap()
        );
        assert_eq!(cell("channel"), view.channel.as_deref().unwrap());
        assert_eq!(cell("decision"), view.decision);
        assert_eq!(cell("experiment_arm"), view.experiment_arm.as_str());
        let reasons: Vec<String> = view
            .reasons
            .iter()
            .map(|r| format!("{}:{}", r.feature, r.contribution))
            .collect();
        assert_eq!(cell("reasons"), reasons.join(";"));
        assert_eq!(cell("last_activity_at"), view.last_activity_at);
        assert_eq!(
            cell("last_purchase_at"),
            view.last_purchase_at.as_deref().unwrap_or("")
        );
        assert_eq!(cell("opted_out"), view.opted_out.to_string());
        assert_eq!(
            cell("model_version"),
            view.model_version.as_deref().unwrap()
        );
    }
    let browser = &rows[0];
    assert_eq!(&browser[0], "browser");
    assert_eq!(&browser[13], "", "never bought: an empty cell");
}

#[test]
fn at_before_the_history_or_outside_the_time_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_history(dir.path(), &[]);
    for (at, says) in [
        (
            "2024-12-31",
            "no event at or before 2024-12-31T00:00:00.000Z: the history starts at \
             2025-01-01T09:00:00.000Z",
        ),
        (
            "2100-01-02",
            "--at 2100-01-02 is outside the representable time range",
        ),
        (
            "next tuesday",
            "--at: \"next tuesday\" is neither an RFC 3339 instant",
        ),
    ] {
        let o = score(&["--at", at], &events);
        let err = stderr(&o);
        assert!(!o.status.success(), "--at {at}: {err}");
        assert!(err.contains(says), "--at {at}: {err}");
        assert!(o.stdout.is_empty(), "--at {at}: no table");
    }
    // After the newest event is fine: timers fire on the way, as in the service.
    let o = score(&["--at", "2025-09-01"], &events);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = jsonl_rows(&o.stdout);
    assert_eq!(rows.len(), 6, "the newcomer is known by then");
    let steady = rows.iter().find(|r| r["user_id"] == "steady-a").unwrap();
    assert_eq!(steady["as_of"], "2025-09-01T00:00:00.000Z");
    assert!(
        steady["open_alert"].is_object()
            || !steady["caps"]["alert_days"].as_array().unwrap().is_empty(),
        "four months of silence raised an alert on the way: {steady}"
    );
}

#[test]
fn a_bad_line_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_history(
        dir.path(),
        &[(
            2,
            r#"{"event_id":"x","user_id":"steady-a","type":"teleport","ts":"2025-02-01T00:00:00Z"}"#,
        )],
    );
    let o = score(&["--at", AT], &events);
    let err = stderr(&o);
    assert!(
        o.status.success(),
        "one bad line is refused, not fatal: {err}"
    );
    assert!(
        err.contains("unknown_type") && err.contains("events.jsonl line 3"),
        "{err}"
    );
    assert_eq!(jsonl_rows(&o.stdout).len(), 5);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"event_id\":\"a\",\"type\":\"login\"}\nnot json\n").unwrap();
    let o = score(&["--at", AT], &bad);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    for says in ["no valid event in", "bad.jsonl line 1", "bad.jsonl line 2"] {
        assert!(err.contains(says), "{says}: {err}");
    }
    assert!(o.stdout.is_empty());
}

#[test]
fn the_policy_flag_reaches_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_history(dir.path(), &[]);
    let default = std::fs::read_to_string(repo().join("deploy/policy/default.toml")).unwrap();
    let all_control = default.replace("share = 0.10", "share = 1.0");
    assert_ne!(
        all_control, default,
        "the default policy still has its control share"
    );
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, all_control).unwrap();
    let o = score(&["--at", AT, "--policy", policy.to_str().unwrap()], &events);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = jsonl_rows(&o.stdout);
    let expected = in_process(&events, at_millis(), Some(&policy));
    assert_eq!(rows.len(), expected.len());
    for (row, view) in rows.iter().zip(&expected) {
        assert_eq!(row["experiment_arm"], "control", "{row}");
        assert_eq!(row, &serde_json::to_value(view).unwrap());
    }
}
