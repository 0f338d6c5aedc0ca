//! `churnguard backfill` on a real broker (Tansu): history from files becomes the state the
//! service restores, and the service goes on from the input topic's end.
//!
//! The main test splits a synthetic history at a cut: what comes before is written to files
//! and backfilled (its last days are in the topic too, as a topic's retention keeps them), what
//! comes after is produced live by a producer using the same partitioner, then the service runs.
//! The state it leaves in the changelog must equal a clean single pass over every event, user
//! for user; nothing is dead-lettered (no `too_late`); and the service counts the live events
//! only, never the history again.

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use churnguard::event::{encode, Event};
use churnguard::kafka::partitioner::Partitioner;
use churnguard::synth;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use util::changelog::{
    assert_same_features, changelog_of, changelog_state, committed_to_end, reference, DAY_MS,
};
use util::service::{now_ms, Service, Topics, MODEL};
use util::{shared, wait_until, Record};

fn history(users: usize, days: u32, end: i64, seed: u64) -> Vec<Event> {
    let cfg = synth::SynthConfig {
        users,
        days,
        end,
        churn_share: 0.3,
        seed,
    };
    synth::generate(&cfg).1
}

fn jsonl(events: &[&Event]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("temp file");
    for e in events {
        writeln!(f, "{}", encode(e)).expect("write history");
    }
    f.flush().expect("flush history");
    f
}

/// Runs `churnguard backfill` for the topics' group and input.
fn backfill(bootstrap: &str, t: &Topics, files: &[&Path], extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args(["backfill", "--brokers", bootstrap, "--group", &t.group])
        .args(["--input-topic", &t.input, "--model", MODEL])
        .arg("--events")
        .args(files)
        .args(extra)
        .env("RUST_LOG", "info,rdkafka=warn")
        .output()
        .expect("run churnguard backfill");
    util::log(format!(
        "backfill {extra:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    ));
    out
}

/// Produces `events` keyed by user id with librdkafka's `partitioner` setting `setting`, and
/// checks each landed where `partitioner` says.
fn produce_partitioned(
    bootstrap: &str,
    topic: &str,
    events: &[&Event],
    setting: &str,
    partitioner: Partitioner,
) {
    let mut cfg = util::producer_config(bootstrap);
    cfg.set("partitioner", setting);
    let records: Vec<Record> = events
        .iter()
        .map(|e| (e.user_id.clone(), encode(e), Vec::new()))
        .collect();
    let partitions = util::partition_count(bootstrap, topic).expect("topic exists") as u32;
    let delivered = util::produce_with(&cfg, topic, &records);
    for (e, (p, _)) in events.iter().zip(&delivered) {
        assert_eq!(
            *p,
            partitioner.partition(e.user_id.as_bytes(), partitions),
            "librdkafka's {setting} put {:?} on partition {p}",
            e.user_id
        );
    }
}

fn distinct_users<'a>(events: impl IntoIterator<Item = &'a Event>) -> usize {
    events
        .into_iter()
        .map(|e| e.user_id.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// The done-when test of the backfill: backfilled history plus a live tail equals a clean
/// single pass over both, user for user; no event refused, none counted twice.
#[test]
fn backfill_and_live_tail_equal_a_single_pass() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "backfill", 4);
    let end = now_ms() - DAY_MS;
    let events = history(300, 90, end, 31);
    let cut = end - 6 * DAY_MS;
    let (before, live): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| e.ts < cut);
    // The topic's retention still holds the history's last two days: they are in the files
    // and in the topic, and must be counted once.
    let retained: Vec<&Event> = before
        .iter()
        .copied()
        .filter(|e| e.ts >= cut - 2 * DAY_MS)
        .collect();
    assert!(
        !retained.is_empty() && live.len() > 500,
        "{} retained, {} live of {} events",
        retained.len(),
        live.len(),
        events.len()
    );
    produce_partitioned(
        &bootstrap,
        &t.input,
        &retained,
        "murmur2_random",
        Partitioner::Murmur2,
    );
    let ends = util::high_watermarks(&bootstrap, &t.input);

    // Two files, in no particular order.
    let (older, newer): (Vec<&Event>, Vec<&Event>) = before
        .iter()
        .rev()
        .copied()
        .partition(|e| e.ts < cut - 30 * DAY_MS);
    let files = [jsonl(&newer), jsonl(&older)];
    let paths: Vec<&Path> = files.iter().map(|f| f.path()).collect();
    let out = backfill(&bootstrap, &t, &paths, &[]);
    assert!(out.status.success(), "backfill failed");
    assert_eq!(
        util::committed_offsets(&bootstrap, &t.group, &t.input),
        ends,
        "the group resumes at the topic's end"
    );

    produce_partitioned(
        &bootstrap,
        &t.input,
        &live,
        "murmur2_random",
        Partitioner::Murmur2,
    );
    let mut service = Service::start(&bootstrap, &t);
    let done = wait_until(Duration::from_secs(180), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(
        done,
        "service did not commit to the end; log:\n{}",
        service.log_text()
    );
    let metrics = service.metrics();
    let status = service.terminate(Duration::from_secs(35));
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        service.log_text()
    );

    let consumed = metrics.sum("churnguard_events_consumed_total", &[]);
    let rejected = metrics.sum("churnguard_events_rejected_total", &[]);
    let restored = metrics.sum("churnguard_restore_records_total", &["result=\"applied\""]);
    assert_eq!(consumed, live.len() as f64, "the live events, each once");
    assert_eq!(rejected, 0.0, "nothing refused (no too_late)");
    assert_eq!(
        restored,
        distinct_users(before.iter().copied()) as f64,
        "every backfilled user restored"
    );
    let dead = util::consume_all(&bootstrap, &t.dlq, 0, Duration::from_secs(5));
    assert!(
        dead.is_empty(),
        "dead letters: {:?}",
        &dead[..dead.len().min(3)]
    );

    let state = changelog_state(&bootstrap, &t);
    let users = distinct_users(&events);
    assert_same_features(&state, &reference(&events), users);
    util::log(format!(
        "backfill: {} history events ({} also in the topic), {} live; {users} users equal to \
         the single pass; {restored} records restored, {consumed} events consumed",
        before.len(),
        retained.len(),
        live.len()
    ));
}

/// Commits `offset` for every partition of `topic` in `group`, as a service that consumed
/// would have.
fn commit_as_group(bootstrap: &str, group: &str, topic: &str, offsets: &[i64]) {
    let consumer: BaseConsumer = util::consumer_config(bootstrap, group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, &o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(o))
            .expect("offset");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A group that has consumed, or a changelog that has records, is refused with the reason and
/// nothing is written; `--force` rebuilds the state at the committed offsets.
#[test]
fn a_group_with_offsets_or_a_used_changelog_is_refused_without_force() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "backfill-refused", 3);
    let events = history(40, 30, now_ms() - DAY_MS, 5);
    let all: Vec<&Event> = events.iter().collect();
    let file = jsonl(&all);
    let files = [file.path()];
    let changelog = changelog_of(&t);

    // The group has consumed (a service ran): refused, nothing written.
    let committed = vec![3, 0, 7];
    commit_as_group(&bootstrap, &t.group, &t.input, &committed);
    let out = backfill(&bootstrap, &t, &files, &[]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("already has committed offsets") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(util::high_watermarks(&bootstrap, &changelog), vec![0; 3]);

    // With --force the state is rebuilt at the committed offsets.
    assert!(backfill(&bootstrap, &t, &files, &["--force"])
        .status
        .success());
    assert_eq!(
        util::committed_offsets(&bootstrap, &t.group, &t.input),
        committed
    );
    let written: i64 = util::high_watermarks(&bootstrap, &changelog).iter().sum();
    assert_eq!(
        written,
        distinct_users(&events) as i64,
        "one record per user"
    );

    // A new group pointed at that changelog: refused, it would mix two states.
    let other = Topics {
        group: util::unique("backfill-other-group"),
        ..t
    };
    let out = backfill(
        &bootstrap,
        &other,
        &files,
        &["--changelog-topic", &changelog],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("is not empty") && err.contains("mixed"),
        "{err}"
    );
    assert_eq!(
        util::committed_offsets(&bootstrap, &other.group, &other.input),
        vec![-1; 3],
        "nothing committed"
    );
    let after: i64 = util::high_watermarks(&bootstrap, &changelog).iter().sum();
    assert_eq!(after, written, "nothing written");
}

/// Producers that use another partitioner than `--partitioner` are found from the keys at the
/// end of the input topic: refused, naming the one that fits, and nothing is written.
#[test]
fn a_partitioner_other_than_the_producers_is_refused() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "backfill-partitioner", 4);
    let events = history(60, 20, now_ms() - DAY_MS, 9);
    let (before, recent): (Vec<&Event>, Vec<&Event>) =
        events.iter().partition(|e| e.ts < now_ms() - 3 * DAY_MS);
    // librdkafka's default partitioner, as a Python or Go client would use it.
    produce_partitioned(
        &bootstrap,
        &t.input,
        &recent,
        "consistent_random",
        Partitioner::Crc32,
    );
    let file = jsonl(&before);
    let changelog = changelog_of(&t);

    let out = backfill(&bootstrap, &t, &[file.path()], &[]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("--partitioner murmur2 computes")
            && err.contains("--partitioner consistent_random puts all of them where they are"),
        "{err}"
    );
    assert_eq!(util::high_watermarks(&bootstrap, &changelog), vec![0; 4]);
    assert_eq!(
        util::committed_offsets(&bootstrap, &t.group, &t.input),
        vec![-1; 4]
    );

    let out = backfill(
        &bootstrap,
        &t,
        &[file.path()],
        &["--partitioner", "consistent_random"],
    );
    assert!(out.status.success());
    assert_eq!(
        util::committed_offsets(&bootstrap, &t.group, &t.input),
        util::high_watermarks(&bootstrap, &t.input)
    );
}

/// Where librdkafka's partitioners put keys is where `--partitioner` computes them.
#[test]
fn each_partitioner_matches_where_librdkafka_delivers() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let topic = util::unique("backfill-partitioners");
    util::create_topic(&bootstrap, &topic, 7);
    // Keys of every length from 1 to 40 bytes (every murmur2 tail), non-ASCII ones included.
    let keys = (0..300).map(|i| match i % 3 {
        0 => format!("u{i:07}"),
        1 => format!("ü-ユーザー-{i}"),
        _ => "k".repeat(1 + i % 40),
    });
    let events: Vec<Event> = keys
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|user_id| Event {
            event_id: format!("{user_id}-1"),
            user_id,
            kind: churnguard::event::EventKind::Login,
            ts: now_ms(),
            amount: 0.0,
        })
        .collect();
    let one_per_user: Vec<&Event> = events.iter().collect();
    for (setting, partitioner) in [
        ("murmur2_random", Partitioner::Murmur2),
        ("murmur2", Partitioner::Murmur2),
        ("consistent_random", Partitioner::Crc32),
        ("consistent", Partitioner::Crc32),
        ("fnv1a_random", Partitioner::Fnv1a),
        ("fnv1a", Partitioner::Fnv1a),
    ] {
        produce_partitioned(&bootstrap, &topic, &one_per_user, setting, partitioner);
    }
    util::log(format!(
        "{} keys on 7 partitions land where each partitioner says",
        one_per_user.len()
    ));
}
