//! One history in every file format gives one model: a synthetic history is written as JSONL,
//! gzip JSONL, CSV and Parquet by an independent implementation (tests/history_files.py, pandas
//! and pyarrow), and as monthly parts that alternate between Parquet and gzip CSV; `churnguard
//! train` on each must write byte-identical model artifacts, and `churnguard replay` with that
//! model must print identical alerts.
//!
//! Needs python3 with pandas and pyarrow (`.ci/run` installs them). Without them the test fails
//! in CI (`CI=true`) and is skipped with a loud message elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use churnguard::event::encode;
use churnguard::synth::{generate, SynthConfig};
use churnguard::DAY_MS;

const BIN: &str = env!("CARGO_BIN_EXE_churnguard");

fn writer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/history_files.py")
}

/// Whether python3 with pandas and pyarrow is here; in CI their absence fails the test.
fn python_ready() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import pandas, pyarrow"])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => format!("python3 does not run: {e}"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("python3 with pandas and pyarrow is required in CI (.ci/run step 1): {why}");
    }
    // Straight to stderr: the test harness would swallow `eprintln!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!! SKIPPED history_files: python3 with pandas and pyarrow is missing ({}); \
         install them with `python3 -m pip install pandas pyarrow` !!!!\n",
        why.trim()
    );
    false
}

fn run(args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .args(args)
        .output()
        .expect("the churnguard binary runs");
    assert!(
        o.status.success(),
        "churnguard {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Trains on `events` and returns the artifact's bytes and what train said on stderr.
fn train(events: &[PathBuf], out: &Path) -> (Vec<u8>, String) {
    let mut args = vec!["train".to_string(), "--events".to_string()];
    args.extend(events.iter().map(|p| p.display().to_string()));
    args.extend(["--horizon-days", "60", "--out"].map(String::from));
    args.push(out.display().to_string());
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (
        std::fs::read(out).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Where two artifacts part, with some text of each around it.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let around = |s: &[u8]| {
        String::from_utf8_lossy(&s[at.saturating_sub(80)..(at + 80).min(s.len())]).into_owned()
    };
    format!("at byte {at}: ...{}... vs ...{}...", around(a), around(b))
}

fn replay(events: &[PathBuf], model: &Path) -> Vec<u8> {
    let mut args = vec!["replay".to_string(), "--events".to_string()];
    args.extend(events.iter().map(|p| p.display().to_string()));
    args.extend(["--until", "2026-03-01", "--model"].map(String::from));
    args.push(model.display().to_string());
    run(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout
}

#[test]
fn jsonl_gzip_csv_parquet_and_monthly_parts_train_the_same_model_and_replay_the_same_alerts() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, events) = generate(&SynthConfig {
        users: 500,
        days: 300,
        end: 20_454 * DAY_MS, // 2026-01-01
        churn_share: 0.4,
        seed: 11,
    });
    let source = dir.path().join("source.jsonl");
    let text: String = events.iter().map(|e| encode(e) + "\n").collect();
    std::fs::write(&source, text).unwrap();
    let written = Command::new("python3")
        .arg(writer_script())
        .arg(&source)
        .arg(dir.path())
        .output()
        .expect("python3 runs");
    assert!(
        written.status.success(),
        "the Python writer failed: {}",
        String::from_utf8_lossy(&written.stderr)
    );

    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.path().join("parts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    parts.reverse(); // file order must not matter
    assert!(parts.len() >= 10, "monthly parts: {parts:?}");
    assert!(parts.iter().any(|p| p.extension().unwrap() == "parquet"));
    assert!(parts.iter().any(|p| p.extension().unwrap() == "gz"));

    let histories: Vec<(&str, Vec<PathBuf>)> = vec![
        ("source.jsonl", vec![source.clone()]),
        ("history.jsonl", vec![dir.path().join("history.jsonl")]),
        (
            "history.jsonl.gz",
            vec![dir.path().join("history.jsonl.gz")],
        ),
        ("history.csv", vec![dir.path().join("history.csv")]),
        ("history.parquet", vec![dir.path().join("history.parquet")]),
        ("monthly parts", parts),
    ];
    let (reference, said) = train(&histories[0].1, &dir.path().join("model-source.json"));
    assert!(!said.contains("refused"), "{said}");
    let artifact: serde_json::Value = serde_json::from_slice(&reference).unwrap();
    assert_eq!(
        artifact["training"]["data"]["events"],
        serde_json::json!(events.len()),
        "the model saw every event"
    );
    let model = dir.path().join("model-source.json");
    let alerts = replay(&histories[0].1, &model);
    assert!(
        alerts.iter().filter(|&&b| b == b'\n').count() > 10,
        "the replay raises alerts to compare"
    );
    for (i, (name, files)) in histories.iter().enumerate().skip(1) {
        let out = dir.path().join(format!("model-{i}.json"));
        let (bytes, said) = train(files, &out);
        assert!(!said.contains("refused"), "{name}: {said}");
        assert!(
            bytes == reference,
            "{name}: the model artifact differs from the one trained on JSONL: {}",
            first_difference(&bytes, &reference)
        );
        assert!(
            replay(files, &model) == alerts,
            "{name}: replay prints other alerts"
        );
    }
}
