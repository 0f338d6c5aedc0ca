//! `churnguard demo` serves the lookup API with a token it generates, and the `curl` line it
//! prints at start works as printed: a newcomer asks about a user in the first minute. The
//! demo runs its own embedded broker (librdkafka's mock cluster), so this needs no Tansu.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn the_demo_prints_a_curl_line_that_answers_with_a_users_score() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args([
            "demo",
            "--metrics-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .args(["--users", "300", "--days", "60", "--live-rate", "0"])
        .args(["--duration-secs", "90", "--print-alerts", "0"])
        // The generated token file goes to the temporary directory: this test's own.
        .env("TMPDIR", tmp.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn churnguard demo");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let curl = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.trim_start().starts_with("curl ") => break line.trim().to_string(),
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no curl line within 60 s; demo printed:\n{seen}");
            }
        }
    };
    assert!(seen.contains("lookup API on http://"), "{seen}");
    let token_file = tmp.path().join("churnguard-demo-api-token");
    let token = std::fs::read_to_string(&token_file).expect("the token file exists");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
    }
    // The printed line, run as printed, until the user's history is consumed (404 before).
    let started = Instant::now();
    let answer = loop {
        let out = Command::new("bash")
            .args(["-c", &format!("{curl} -w '\\n%{{http_code}}'")])
            .output()
            .expect("run the printed curl line");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        if code == "200" {
            break body.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the curl line did not answer 200 within 60 s; last: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let view: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert!(view["score"].as_f64().is_some(), "{view}");
    assert!(
        curl.ends_with(view["user_id"].as_str().expect("user_id")),
        "{curl}"
    );
    // The same URL without the token: 401.
    let url = curl.split_whitespace().last().expect("URL");
    let code = reqwest::blocking::get(url)
        .expect("API answers")
        .status()
        .as_u16();
    assert_eq!(code, 401);
    assert!(!token.trim().is_empty());
    let _ = child.kill();
    let _ = child.wait();
}
