//! Checkpoint faults on a real broker (Tansu): a write that cannot reach the broker must never
//! let an offset commit past the state it would have carried, a refused message too large to
//! dead-letter whole must not stop the consumer, and messages over the event size limit are
//! refused unparsed with a dead letter each.
//!
//! The tests drive `churnguard run` as a child process and judge it by what it leaves behind:
//! committed offsets, the state changelog (read as a restore would read it) and the DLQ.

mod util;

use std::collections::BTreeSet;
use std::time::Duration;

use churnguard::engine::changelog::Change;
use churnguard::engine::{Engine, EngineConfig};
use churnguard::event::{encode, Event, EventKind};
use sha2::{Digest, Sha256};
use util::changelog::{assert_same_features, changelog_state, committed_to_end, reference, DAY_MS};
use util::service::{now_ms, Service, Topics};
use util::{shared, wait_until};

/// The producer limit the first run of the changelog test is given: librdkafka's minimum.
const SMALL_MESSAGE_MAX_BYTES: usize = 1000;

/// One user with a long id and a purchase on each of 89 days (a changelog record larger than
/// [`SMALL_MESSAGE_MAX_BYTES`]), then `users` ordinary users with a few events each, all in time
/// order. The long-history user comes first, so it holds the engine's first slot and its record
/// is the first of the checkpoint's change set.
fn events(users: usize) -> (String, Vec<Event>) {
    let now = now_ms();
    let heavy = format!("heavy-{}", "h".repeat(194));
    let mut out = Vec::new();
    for day in 0..89i64 {
        let ts = now - (89 - day) * DAY_MS + 3_600_000;
        for (i, kind) in [
            EventKind::Login,
            EventKind::PageView,
            EventKind::CartAdd,
            EventKind::Purchase,
        ]
        .into_iter()
        .enumerate()
        {
            out.push(Event {
                event_id: format!("heavy-{day}-{i}"),
                user_id: heavy.clone(),
                kind,
                ts: ts + i as i64 * 60_000,
                amount: if kind == EventKind::Purchase {
                    10.0 + day as f64 * 1.37
                } else {
                    0.0
                },
            });
        }
    }
    for u in 0..users {
        for (i, kind) in [EventKind::Login, EventKind::PageView, EventKind::Login]
            .into_iter()
            .enumerate()
        {
            out.push(Event {
                event_id: format!("u{u}-{i}"),
                user_id: format!("u{u:03}"),
                kind,
                ts: now - 3_600_000 + (u * 3 + i) as i64 * 1_000,
                amount: 0.0,
            });
        }
    }
    out.sort_by_key(|e| e.ts);
    (heavy, out)
}

/// Wire size of each user's changelog record (key, value header, engine record).
fn changelog_record_sizes(events: &[Event]) -> Vec<(String, usize)> {
    let mut engine = Engine::new(EngineConfig::default(), None);
    engine.track_changes(true);
    for e in events {
        engine.apply(e).expect("the generated stream is accepted");
    }
    let mut sizes = Vec::new();
    engine.take_changes(|c| {
        if let Change::Upsert { user_id, record } = c {
            sizes.push((user_id.to_string(), user_id.len() + 9 + record.len()));
        }
    });
    sizes
}

/// A valid event whose changelog record cannot be enqueued (larger than the producer's
/// `message.max.bytes`) must not cost the state of the other users changed in the same
/// checkpoint interval: no path, the revoke callback on the way out included, may commit input
/// offsets past state that was not written. A restart with a limit the record fits then
/// reflects every event exactly once.
#[test]
fn a_changelog_write_that_fails_commits_no_offset_past_the_lost_state() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "ckfail", 1);
    let (heavy, events) = events(40);
    let sizes = changelog_record_sizes(&events);
    for (user, size) in &sizes {
        if *user == heavy {
            assert!(
                *size > SMALL_MESSAGE_MAX_BYTES,
                "the long-history user's record ({size} bytes) exceeds the limit"
            );
        } else {
            assert!(*size < SMALL_MESSAGE_MAX_BYTES / 2, "{user}: {size} bytes");
        }
    }
    let payloads: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.user_id.clone(), encode(e)))
        .collect();
    let records: Vec<(&str, &str)> = payloads
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let positions = util::produce(&bootstrap, &t.input, &records);

    let limit = format!("message.max.bytes={SMALL_MESSAGE_MAX_BYTES}");
    let mut first = Service::start_with(&bootstrap, &t, &["--kafka-option", &limit]);
    let stopped = wait_until(Duration::from_secs(90), || first.try_exit().is_some());
    let log = first.log_text();
    assert!(
        stopped,
        "a changelog record that cannot be written stops the pipeline; log:\n{log}"
    );
    let status = first.try_exit().expect("exited");
    util::log(format!("first run exited with {status}"));

    // Whatever was committed, the changelog must carry every event before it, exactly once.
    let committed = util::committed_offsets(&bootstrap, &t.group, &t.input)[0];
    let covered: Vec<Event> = events
        .iter()
        .zip(&positions)
        .filter(|(_, (_, offset))| *offset < committed)
        .map(|(e, _)| e.clone())
        .collect();
    let covered_users: BTreeSet<&str> = covered.iter().map(|e| e.user_id.as_str()).collect();
    let state = changelog_state(&bootstrap, &t);
    util::log(format!(
        "after the failed checkpoint: committed offset {committed} of {}, {} users in the \
         changelog at or before it, {} users' events before it",
        events.len(),
        state.len(),
        covered_users.len()
    ));
    assert_same_features(&state, &reference(&covered), covered_users.len());

    // A limit the record fits: everything is reflected once the run commits to the end.
    let mut second = Service::start(&bootstrap, &t);
    let done = wait_until(Duration::from_secs(120), || {
        committed_to_end(&bootstrap, &t)
    });
    assert!(
        done,
        "second run did not commit to the end; log:\n{}",
        second.log_text()
    );
    let status = second.terminate(Duration::from_secs(35));
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        second.log_text()
    );
    let state = changelog_state(&bootstrap, &t);
    let all_users: BTreeSet<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    assert_same_features(&state, &reference(&events), all_users.len());
}

fn header<'a>(headers: &'a [(String, String)], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A refused message whose DLQ copy (original bytes plus headers) exceeds the producer's
/// `message.max.bytes` is dead-lettered as a truncated prefix with its size and hash, reason
/// `too_large`, and the events after it are processed: a poison pill cannot block a partition.
#[test]
fn a_refused_message_too_large_to_dead_letter_whole_is_dead_lettered_truncated() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "poison", 1);
    let now = now_ms();
    let valid: Vec<Event> = (0..20)
        .map(|u| Event {
            event_id: format!("e{u}"),
            user_id: format!("u{u:03}"),
            kind: EventKind::Login,
            ts: now - 600_000 + u as i64 * 1_000,
            amount: 0.0,
        })
        .collect();
    // Not JSON: refused as malformed_json. Exactly 1,000,000 bytes: it fits a default fetch
    // (1 MiB) but not, with headers, a default `message.max.bytes` (1,000,000).
    let poison = format!("{{{}", "x".repeat(999_999));
    let poison_hash: String = Sha256::digest(poison.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut records: Vec<(String, String)> = Vec::new();
    for e in &valid[..10] {
        records.push((e.user_id.clone(), encode(e)));
    }
    records.push(("poison".into(), poison.clone()));
    for e in &valid[10..] {
        records.push((e.user_id.clone(), encode(e)));
    }
    let recs: Vec<util::Record> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), vec![]))
        .collect();
    let mut producer = util::producer_config(&bootstrap);
    producer.set("message.max.bytes", "4000000");
    let positions = util::produce_with(&producer, &t.input, &recs);
    let poison_offset = positions[10].1;

    // A size limit above the message, so it is parsed and refused for what it says (the size
    // limit's own refusal is the next test's).
    let mut svc = Service::start_with(&bootstrap, &t, &["--max-event-bytes", "2000000"]);
    let done = wait_until(Duration::from_secs(90), || {
        svc.try_exit().is_some() || committed_to_end(&bootstrap, &t)
    });
    if let Some(status) = svc.try_exit() {
        panic!(
            "the service exited ({status}) on the poison message; log:\n{}",
            svc.log_text()
        );
    }
    assert!(
        done,
        "not committed past the poison message; log:\n{}",
        svc.log_text()
    );
    let m = svc.metrics();
    assert_eq!(
        m.sum("churnguard_events_consumed_total", &[]),
        valid.len() as f64,
        "the events after the poison message are processed"
    );
    assert_eq!(
        m.sum(
            "churnguard_events_rejected_total",
            &["reason=\"malformed_json\""]
        ),
        1.0
    );

    let dlq = util::consume_records(&bootstrap, &t.dlq, 1, Duration::from_secs(30));
    assert_eq!(dlq.len(), 1, "one dead letter");
    let d = &dlq[0];
    assert_eq!(
        header(&d.headers, "churnguard.source_offset"),
        Some(poison_offset.to_string().as_str())
    );
    assert_eq!(header(&d.headers, "churnguard.reason"), Some("too_large"));
    assert_eq!(
        header(&d.headers, "churnguard.refused_reason"),
        Some("malformed_json"),
        "why it was refused in the first place"
    );
    assert_eq!(
        header(&d.headers, "churnguard.original_size"),
        Some(poison.len().to_string().as_str())
    );
    assert_eq!(
        header(&d.headers, "churnguard.original_sha256"),
        Some(poison_hash.as_str())
    );
    assert!(
        !d.payload.is_empty() && d.payload.len() < 64 * 1024 && poison.starts_with(&d.payload),
        "a prefix of the original ({} bytes)",
        d.payload.len()
    );
    assert_eq!(d.key, "poison", "the original key");

    let status = svc.terminate(Duration::from_secs(35));
    assert!(status.success(), "exit {status}; log:\n{}", svc.log_text());
}

/// Messages over `--max-event-bytes` (default 64 KiB) are refused as `too_large` without being
/// parsed, valid JSON or not: one of 100 KB is dead-lettered whole, one of 1 MB (over the
/// producer's `message.max.bytes` with its headers) truncated with its size and hash. Neither
/// changes any state, and the events after them are processed.
#[test]
fn messages_over_the_event_size_limit_are_refused_unparsed_and_dead_lettered() {
    let broker = shared();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&bootstrap, "oversized", 1);
    let now = now_ms();
    let valid: Vec<Event> = (0..20)
        .map(|u| Event {
            event_id: format!("e{u}"),
            user_id: format!("u{u:03}"),
            kind: EventKind::Login,
            ts: now - 600_000 + u as i64 * 1_000,
            amount: 0.0,
        })
        .collect();
    // Valid events but for their size: a `props` blob the decoder would otherwise skip.
    let oversized = |user: &str, bytes: usize| {
        let head = format!(
            r#"{{"event_id":"{user}","user_id":"{user}","type":"purchase","ts":"{}","amount":5,"props":{{"blob":""#,
            churnguard::time::rfc3339(now - 300_000)
        );
        let tail = r#""}}"#;
        format!(
            "{head}{}{tail}",
            "x".repeat(bytes - head.len() - tail.len())
        )
    };
    let medium = oversized("medium", 100_000);
    let huge = oversized("huge", 1_000_000);
    let hash = |text: &str| -> String {
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut records: Vec<util::Record> = Vec::new();
    let plain = |e: &Event| (e.user_id.clone(), encode(e), vec![]);
    records.extend(valid[..7].iter().map(plain));
    records.push(("medium".into(), medium.clone(), vec![]));
    records.extend(valid[7..14].iter().map(plain));
    records.push(("huge".into(), huge.clone(), vec![]));
    records.extend(valid[14..].iter().map(plain));
    let mut producer = util::producer_config(&bootstrap);
    producer.set("message.max.bytes", "4000000");
    let positions = util::produce_with(&producer, &t.input, &records);

    let mut svc = Service::start(&bootstrap, &t);
    let done = wait_until(Duration::from_secs(90), || {
        svc.try_exit().is_some() || committed_to_end(&bootstrap, &t)
    });
    assert!(
        done && svc.try_exit().is_none(),
        "not committed past the oversized messages (or exited); log:\n{}",
        svc.log_text()
    );
    let m = svc.metrics();
    assert_eq!(
        m.sum("churnguard_events_consumed_total", &[]),
        valid.len() as f64,
        "every valid event is processed, neither oversized one"
    );
    assert_eq!(
        m.sum(
            "churnguard_events_rejected_total",
            &["reason=\"too_large\""]
        ),
        2.0
    );
    assert_eq!(m.sum("churnguard_dlq_truncated_total", &[]), 1.0);

    let dlq = util::consume_records(&bootstrap, &t.dlq, 2, Duration::from_secs(30));
    assert_eq!(dlq.len(), 2, "one dead letter per refused message");
    let (whole, cut) = (&dlq[0], &dlq[1]);
    assert_eq!(
        header(&whole.headers, "churnguard.source_offset"),
        Some(positions[7].1.to_string().as_str())
    );
    assert_eq!(
        header(&whole.headers, "churnguard.reason"),
        Some("too_large")
    );
    assert!(
        header(&whole.headers, "churnguard.detail")
            .is_some_and(|d| d.contains("100000 bytes") && d.contains("65536")),
        "{:?}",
        whole.headers
    );
    assert_eq!(
        whole.payload, medium,
        "under message.max.bytes: the whole original"
    );
    assert_eq!(whole.key, "medium");

    assert_eq!(
        header(&cut.headers, "churnguard.source_offset"),
        Some(positions[15].1.to_string().as_str())
    );
    assert_eq!(header(&cut.headers, "churnguard.reason"), Some("too_large"));
    assert_eq!(
        header(&cut.headers, "churnguard.refused_reason"),
        Some("too_large")
    );
    assert_eq!(
        header(&cut.headers, "churnguard.original_size"),
        Some("1000000")
    );
    assert_eq!(
        header(&cut.headers, "churnguard.original_sha256"),
        Some(hash(&huge).as_str())
    );
    assert!(
        !cut.payload.is_empty() && cut.payload.len() < 64 * 1024 && huge.starts_with(&cut.payload),
        "a prefix of the original ({} bytes)",
        cut.payload.len()
    );

    let status = svc.terminate(Duration::from_secs(35));
    assert!(status.success(), "exit {status}; log:\n{}", svc.log_text());
}
