//! Which alerts exist is a function of the events and the configuration: not of the order of
//! lines in a file, nor of how fast each input partition happens to be consumed.
//!
//! The file-order test uses `../shared/data/cdnow/CDNOW_master.txt` (or `data/cdnow/`, made by
//! `scripts/fetch-cdnow.sh`) and says loudly that it skipped when neither is there. The service
//! test runs two instances, one after the other, over the same three-partition backlog on Tansu,
//! with fetch sizes that make one consume the partitions in lock step and the other one
//! partition far ahead of the others.

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{encode, Event, EventKind};
use churnguard::mapping::EventDecoder;
use churnguard::model::Model;
use churnguard::{history, replay, synth, DAY_MS};
use util::service::{alert_ids_to_the_end, now_ms, produce_events};
use util::{create_topic, shared, unique};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CDNOW purchases as JSONL lines in the order of the raw file, or `None` with a printed reason.
fn cdnow_lines() -> Option<Vec<String>> {
    let jsonl = root().join("data/cdnow/events.jsonl");
    if let Ok(text) = std::fs::read_to_string(&jsonl) {
        return Some(text.lines().map(str::to_string).collect());
    }
    let raw = root().join("../shared/data/cdnow/CDNOW_master.txt");
    let Ok(text) = std::fs::read_to_string(&raw) else {
        eprintln!(
            "SKIPPED: CDNOW data not available (run scripts/fetch-cdnow.sh to create {}, or \
             provide {}); the file-order test did not run",
            jsonl.display(),
            raw.display()
        );
        return None;
    };
    // Same conversion as scripts/cdnow_to_events.py: purchases at 12:00 UTC of their day.
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 || !f[0].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let d = f[1];
        let ts = churnguard::time::parse_instant(&format!(
            "{}-{}-{}T12:00:00Z",
            &d[..4],
            &d[4..6],
            &d[6..]
        ))
        .expect("date");
        lines.push(encode(&Event {
            event_id: format!("cdnow-{}", i + 1),
            user_id: format!("c{:05}", f[0].parse::<u32>().expect("id")),
            kind: EventKind::Purchase,
            ts,
            amount: f[3].parse().expect("dollars"),
        }));
    }
    Some(lines)
}

fn replay_alert_ids(lines: &[String], model: &Arc<Model>) -> BTreeSet<String> {
    let mut f = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    let decoder = EventDecoder::native();
    let loaded = history::load(
        &[f.path().to_path_buf()],
        &history::ReadOptions::offline(&decoder),
    )
    .unwrap();
    assert_eq!(loaded.refused(), 0, "{}", loaded.refusal_summary());
    let until = churnguard::time::parse_instant("1998-10-01").unwrap();
    let mut engine = Engine::new(EngineConfig::default(), Some(model.clone()));
    replay::replay(&mut engine, &loaded.events, Some(until))
        .alerts
        .into_iter()
        .map(|a| a.alert_id.to_string())
        .collect()
}

#[test]
fn cdnow_alerts_do_not_depend_on_file_order() {
    let Some(lines) = cdnow_lines() else { return };
    let model = Arc::new(Model::load(&root().join("models/cdnow-lr.json")).unwrap());
    let reference = replay_alert_ids(&lines, &model);
    let mut reversed = lines.clone();
    reversed.reverse();
    let mut shuffled = lines.clone();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..shuffled.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        shuffled.swap(i, (state >> 33) as usize % (i + 1));
    }
    for (name, order) in [("reversed", reversed), ("shuffled", shuffled)] {
        let other = replay_alert_ids(&order, &model);
        let only_ref = reference.difference(&other).count();
        let only_other = other.difference(&reference).count();
        assert!(
            only_ref == 0 && only_other == 0,
            "{name} file: {} alerts vs {} in file order ({only_ref} only in file order, \
             {only_other} only {name})",
            other.len(),
            reference.len()
        );
    }
    util::log(format!(
        "CDNOW: {} alerts, identical in file, reversed and shuffled order",
        reference.len()
    ));
}

#[test]
fn alerts_do_not_depend_on_partition_consumption_speed() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let (_, events) = synth::generate(&synth::SynthConfig {
        users: 500,
        days: 150,
        // Further back than the retention: once caught up, the wall clock takes every user
        // through their last timer in both runs, whenever each run happens.
        end: now_ms() - 500 * DAY_MS,
        churn_share: 0.3,
        seed: 41,
    });
    let input = unique("determinism-in");
    create_topic(&bootstrap, &input, 3);
    produce_events(&bootstrap, &input, &events);
    // Small fetches: the three partitions advance in lock step.
    let lockstep = alert_ids_to_the_end(
        &bootstrap,
        &input,
        "lockstep",
        &["--kafka-option", "max.partition.fetch.bytes=2048"],
    );
    // Fetches large enough for a whole partition's backlog: one partition runs far ahead.
    let skewed = alert_ids_to_the_end(
        &bootstrap,
        &input,
        "skewed",
        &[
            "--kafka-option",
            "max.partition.fetch.bytes=104857600",
            "--kafka-option",
            "fetch.max.bytes=104857600",
        ],
    );
    let only_lockstep: Vec<_> = lockstep.difference(&skewed).take(5).collect();
    let only_skewed: Vec<_> = skewed.difference(&lockstep).take(5).collect();
    assert!(
        only_lockstep.is_empty() && only_skewed.is_empty(),
        "{} events: {} alerts in lock step, {} with one partition ahead; e.g. only in lock \
         step {only_lockstep:?}, only ahead {only_skewed:?}",
        events.len(),
        lockstep.len(),
        skewed.len()
    );
    assert!(!lockstep.is_empty(), "the stream has churners to alert");
    util::log(format!(
        "{} events over 3 partitions: the same {} alerts at both consumption speeds",
        events.len(),
        lockstep.len()
    ));
}
