//! The offline tools (`replay`, `train`, `evaluate`) on small files in a temporary directory:
//! bad lines are refused and reported by line, never fatal; a file with nothing usable, or
//! with more refused lines than allowed, stops the tool with a clear message; training explains
//! its pitfalls; the default model is found from any working directory. No broker needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use churnguard::event::{encode, Event, EventKind};
use churnguard::model::card::model_card;
use churnguard::model::train::{self, TrainConfig, TrainError};
use churnguard::synth::{generate, SynthConfig};
use churnguard::DAY_MS;

const BIN: &str = env!("CARGO_BIN_EXE_churnguard");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Synthetic history ending 2026-01-01, as JSON lines.
fn synth_lines(users: usize) -> Vec<Vec<u8>> {
    synth_events(users)
        .iter()
        .map(|e| encode(e).into_bytes())
        .collect()
}

fn synth_events(users: usize) -> Vec<Event> {
    generate(&SynthConfig {
        users,
        days: 300,
        end: 20_454 * DAY_MS, // 2026-01-01
        churn_share: 0.4,
        seed: 5,
    })
    .1
}

fn write_lines(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the churnguard binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A line whose `user_id` holds a byte that is not UTF-8.
fn invalid_utf8_line() -> Vec<u8> {
    let mut l = br#"{"event_id":"bad","user_id":"u"#.to_vec();
    l.push(0xff);
    l.extend_from_slice(br#"","type":"login","ts":"2025-06-01T00:00:00Z"}"#);
    l
}

fn model_path() -> String {
    repo().join("models/churn-lr.json").display().to_string()
}

#[test]
fn an_invalid_utf8_line_is_refused_by_line_in_replay_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = synth_lines(400);
    lines.insert(2, invalid_utf8_line());
    let events = write_lines(dir.path(), "events.jsonl", &lines);
    let events = events.to_str().unwrap();
    let out = dir.path().join("m.json");
    let model = model_path();
    for args in [
        vec!["replay", "--events", events, "--model", &model],
        vec![
            "train",
            "--events",
            events,
            "--horizon-days",
            "60",
            "--out",
            out.to_str().unwrap(),
        ],
        vec![
            "evaluate",
            "--events",
            events,
            "--model",
            &model,
            "--cutoff",
            "2025-10-01",
        ],
    ] {
        let o = run(&args, dir.path());
        let err = stderr(&o);
        assert!(o.status.success(), "{}: {err}", args[0]);
        assert!(
            err.contains("malformed_json") && err.contains("line 3"),
            "{}: the refusal names its reason and line: {err}",
            args[0]
        );
    }
}

#[test]
fn replay_fails_when_every_line_is_refused_and_names_fields_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_lines(
        dir.path(),
        "bad.jsonl",
        &[
            br#"{"event_id":"a","type":"login","ts":"2025-06-01T00:00:00Z"}"#.to_vec(),
            br#"{"event_id":"b","user_id":"u","type":"teleport","ts":"2025-06-01T00:00:00Z"}"#
                .to_vec(),
            br#"{"event_id":"c","user_id":"u","type":"login"}"#.to_vec(),
        ],
    );
    let o = run(
        &[
            "replay",
            "--events",
            events.to_str().unwrap(),
            "--model",
            &model_path(),
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "nothing valid was read: {err}");
    assert!(err.contains("no valid event"), "{err}");
    for says in [
        "missing_field",
        "line 1",
        "\"user_id\"",
        "unknown_type",
        "line 2",
        "teleport",
        "line 3",
        "\"ts\"",
    ] {
        assert!(err.contains(says), "the summary names {says}: {err}");
    }
}

#[test]
fn refusals_above_the_allowed_fraction_stop_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Vec<u8>> = synth_lines(20).into_iter().take(10).collect();
    for i in 0..12 {
        lines.push(format!(r#"{{"event_id":"x{i}"}}"#).into_bytes());
    }
    let events = write_lines(dir.path(), "mostly-bad.jsonl", &lines);
    let events = events.to_str().unwrap();
    let model = model_path();
    let o = run(
        &["replay", "--events", events, "--model", &model],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "12 of 22 lines refused: {err}");
    assert!(err.contains("--max-refused-fraction"), "{err}");
    let o = run(
        &[
            "replay",
            "--events",
            events,
            "--model",
            &model,
            "--max-refused-fraction",
            "0.9",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn evaluate_reports_refused_lines_and_refuses_a_file_without_events() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_path();
    let empty = write_lines(dir.path(), "empty.jsonl", &[]);
    let o = run(
        &[
            "evaluate",
            "--events",
            empty.to_str().unwrap(),
            "--model",
            &model,
            "--cutoff",
            "2025-10-01",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("no valid event"), "{err}");
    assert!(
        !err.contains("1970-01-01"),
        "an empty file has no data end: {err}"
    );

    let mut lines = synth_lines(400);
    lines.push(br#"{"event_id":"x","user_id":"u","type":"login"}"#.to_vec());
    let events = write_lines(dir.path(), "events.jsonl", &lines);
    let o = run(
        &[
            "evaluate",
            "--events",
            events.to_str().unwrap(),
            "--model",
            &model,
            "--cutoff",
            "2025-10-01",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let line = format!("line {}", lines.len());
    assert!(
        err.contains("refused") && err.contains(&line) && err.contains("\"ts\""),
        "{err}"
    );
}

#[test]
fn several_history_files_of_mixed_formats_are_read_and_refusals_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = synth_lines(200);
    let (first, second) = lines.split_at(lines.len() / 2);
    let jsonl = write_lines(dir.path(), "first.jsonl", first);
    // The second half as CSV, with one row that lacks its user (line 4: header, 2 rows, it).
    let mut csv = String::from("event_id,user_id,type,ts,amount\n");
    for (i, l) in second.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        let cell = |k: &str| {
            v.get(k).map_or(String::new(), |x| {
                x.as_str().map_or(x.to_string(), String::from)
            })
        };
        if i == 2 {
            csv.push_str(&format!("bad,,login,{},\n", cell("ts")));
        }
        let row = ["event_id", "user_id", "type", "ts", "amount"]
            .map(cell)
            .join(",");
        csv.push_str(&format!("{row}\n"));
    }
    let csv_path = dir.path().join("second.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let o = run(
        &[
            "replay",
            "--events",
            csv_path.to_str().unwrap(),
            "--events",
            jsonl.to_str().unwrap(),
            "--model",
            &model_path(),
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("{} line 4: field \"user_id\"", csv_path.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("replayed {} events", lines.len())),
        "both files are read: {err}"
    );
}

#[test]
fn one_class_training_says_which_types_count_as_a_return() {
    // Page views only: nobody ever "returns", so every row is a churner.
    let events: Vec<Event> = synth_events(300)
        .into_iter()
        .map(|mut e| {
            e.kind = EventKind::PageView;
            e
        })
        .collect();
    let err = train::train(
        &events,
        &TrainConfig {
            horizon: 60 * DAY_MS,
            ..TrainConfig::default()
        },
    )
    .err()
    .expect("one class cannot be fitted");
    assert!(matches!(err, TrainError::OneClass { .. }), "{err}");
    let text = err.to_string();
    for says in ["purchase", "login", "map"] {
        assert!(text.contains(says), "{says}: {text}");
    }
}

#[test]
fn purchase_only_training_drops_duplicate_columns_with_a_note() {
    let events: Vec<Event> = synth_events(600)
        .into_iter()
        .filter(|e| e.kind == EventKind::Purchase)
        .collect();
    let trained = train::train(
        &events,
        &TrainConfig {
            horizon: 60 * DAY_MS,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = trained
        .artifact
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    for (a, b) in [
        ("events_30d", "purchases_30d"),
        ("events_90d", "purchases_90d"),
    ] {
        assert!(
            !(names.contains(&a) && names.contains(&b)),
            "{a} equals {b} on purchase-only data, only one is kept: {names:?}"
        );
    }
    let card = model_card(&trained.model().unwrap(), "purchases.jsonl", None);
    assert!(
        card.contains("duplicate") && card.contains("purchases_30d"),
        "the card says what was dropped: {card}"
    );
}

#[test]
fn replay_finds_the_default_model_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_lines(dir.path(), "events.jsonl", &synth_lines(20));
    let o = run(
        &["replay", "--events", events.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(
        &[
            "replay",
            "--events",
            events.to_str().unwrap(),
            "--model",
            "nowhere/m.json",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&dir.path().join("nowhere/m.json").display().to_string())
            && err.contains("--model"),
        "the error names the path tried and what to do: {err}"
    );
}
