//! Broker conformance: checks, on the broker the suite runs against (private Tansu or
//! `CHURNGUARD_TEST_BROKERS`), exactly the Kafka behaviours churnguard relies on. A failure here
//! means the broker — not the service — is broken, and names the broken behaviour.
//!
//! Run alone with: `cargo test --release --test broker_conformance`

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use util::*;

fn broken(behaviour: &str, detail: impl std::fmt::Display) -> ! {
    panic!("BROKER CONFORMANCE FAILURE — {behaviour}: {detail}")
}

fn check(cond: bool, behaviour: &str, detail: impl FnOnce() -> String) {
    if !cond {
        broken(behaviour, detail());
    }
}

fn subscribed(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Synchronously commits `next` (partition -> next offset to read) for `topic`.
fn commit(c: &BaseConsumer, topic: &str, next: &BTreeMap<i32, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in next {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit {next:?}: {e}"));
}

/// (a) Keys, payloads and headers round-trip; same key -> same partition; per-key order kept.
#[test]
fn produce_consume_by_key() {
    const B: &str = "(a) produce/consume by key";
    let bs = shared().bootstrap();
    let topic = unique("conf-keys");
    create_topic(&bs, &topic, 4);

    let records: Vec<Record> = (0..200)
        .map(|i| {
            let key = format!("user-{}", i % 20);
            let headers = if i % 3 == 0 {
                vec![("trace".to_string(), format!("t{i}"))]
            } else {
                vec![]
            };
            (
                key.clone(),
                format!("{{\"key\":\"{key}\",\"seq\":{i}}}"),
                headers,
            )
        })
        .collect();
    let delivered = produce_with(&producer_config(&bs), &topic, &records);

    let mut key_parts: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for ((k, _, _), (p, _)) in records.iter().zip(&delivered) {
        key_parts.entry(k).or_default().insert(*p);
    }
    for (k, ps) in &key_parts {
        check(ps.len() == 1, B, || {
            format!("key {k} was delivered to several partitions {ps:?}")
        });
    }
    let used: BTreeSet<i32> = key_parts.values().flatten().copied().collect();
    check(used.len() > 1, B, || {
        format!("20 keys all landed in partitions {used:?} of 4")
    });

    let got = consume_records(&bs, &topic, records.len(), Duration::from_secs(30));
    check(got.len() == records.len(), B, || {
        format!("consumed {} records, produced {}", got.len(), records.len())
    });
    let mut want: Vec<_> = records
        .iter()
        .map(|(k, v, h)| (k.clone(), v.clone(), h.clone()))
        .collect();
    let mut have: Vec<_> = got
        .iter()
        .map(|c| (c.key.clone(), c.payload.clone(), c.headers.clone()))
        .collect();
    want.sort();
    have.sort();
    check(want == have, B, || {
        "consumed (key, payload, headers) differ from produced ones".into()
    });
    for c in &got {
        let p = *key_parts[c.key.as_str()].iter().next().unwrap();
        check(c.partition == p, B, || {
            format!(
                "key {} consumed from partition {} but delivered to {p}",
                c.key, c.partition
            )
        });
    }
    // Per-key order: within a partition, a key's seq numbers must increase with offset.
    let mut last_seq: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &got {
        let v: serde_json::Value = serde_json::from_str(&c.payload).unwrap();
        let seq = v["seq"].as_i64().unwrap();
        let prev = last_seq.insert(c.key.as_str(), seq).unwrap_or(-1);
        check(seq > prev, B, || {
            format!("key {} out of order: seq {seq} after {prev}", c.key)
        });
    }
}

/// (b) Two consumers in one group split a 4-partition topic; when one leaves, the other takes
/// over all partitions and consumes the rest, resuming from the leaver's commits.
#[test]
fn group_split_and_takeover() {
    const B: &str = "(b) consumer-group split and takeover";
    let bs = shared().bootstrap();
    let topic = unique("conf-group");
    let group = unique("conf-group-g");
    create_topic(&bs, &topic, 4);

    let a = subscribed(&bs, &group, &topic);
    let b = subscribed(&bs, &group, &topic);
    let t0 = Instant::now();
    // Wait for a stable split: both have partitions, disjoint, covering all 4.
    let split = wait_until(Duration::from_secs(30), || {
        for c in [&a, &b] {
            if let Some(Err(e)) = c.poll(Duration::from_millis(20)) {
                panic!("poll: {e}");
            }
        }
        let (pa, pb) = (assigned(&a), assigned(&b));
        !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && pa.len() + pb.len() == 4
    });
    check(split, B, || {
        format!(
            "two members did not split 4 partitions within 30s: A={:?} B={:?}",
            assigned(&a),
            assigned(&b)
        )
    });
    log(format!(
        "[conformance] group split after {:?}: A={:?} B={:?}",
        t0.elapsed(),
        assigned(&a),
        assigned(&b)
    ));

    // Phase 1: each member consumes only its own partitions.
    let phase1: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{i}"), format!("p1-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = phase1
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let delivered = produce(&bs, &topic, &refs);
    let parts: BTreeSet<i32> = delivered.iter().map(|d| d.0).collect();
    assert_eq!(
        parts.len(),
        4,
        "test setup: 40 keys should cover all 4 partitions, got {parts:?}"
    );

    let mut got: [Vec<(i32, String)>; 2] = [vec![], vec![]];
    let mut next: [BTreeMap<i32, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let done = wait_until(Duration::from_secs(30), || {
        for (i, c) in [&a, &b].into_iter().enumerate() {
            while let Some(r) = c.poll(Duration::from_millis(20)) {
                let m = r.unwrap_or_else(|e| panic!("poll: {e}"));
                next[i].insert(m.partition(), m.offset() + 1);
                got[i].push((m.partition(), to_consumed(&m).payload));
            }
        }
        got[0].len() + got[1].len() >= 40
    });
    check(done, B, || {
        format!(
            "members consumed {} + {} of 40 records",
            got[0].len(),
            got[1].len()
        )
    });
    check(!got[0].is_empty() && !got[1].is_empty(), B, || {
        format!(
            "one member got nothing: A={} B={} records",
            got[0].len(),
            got[1].len()
        )
    });
    let (pa, pb) = (assigned(&a), assigned(&b));
    for (i, own) in [&pa, &pb].into_iter().enumerate() {
        check(got[i].iter().all(|(p, _)| own.contains(p)), B, || {
            format!("member {i} received records from partitions it does not own ({own:?})")
        });
    }
    let all: BTreeSet<&String> = got.iter().flatten().map(|(_, v)| v).collect();
    check(
        all.len() == 40 && got[0].len() + got[1].len() == 40,
        B,
        || {
            format!(
                "phase 1: expected 40 distinct records exactly once, got {} distinct of {}",
                all.len(),
                got[0].len() + got[1].len()
            )
        },
    );
    commit(&a, &topic, &next[0]);
    commit(&b, &topic, &next[1]);

    // Phase 2 is produced while B is still a member but no longer polling: A consumes (and
    // commits) its share; B's share is "the rest" that A must pick up after B leaves.
    let phase2: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{i}"), format!("p2-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = phase2
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let delivered2 = produce(&bs, &topic, &refs);
    let a_share = delivered2.iter().filter(|d| pa.contains(&d.0)).count();
    let mut b_share: Vec<String> = phase2
        .iter()
        .zip(&delivered2)
        .filter(|(_, d)| pb.contains(&d.0))
        .map(|((_, v), _)| v.clone())
        .collect();
    let mut a_got = 0;
    let ok = wait_until(Duration::from_secs(30), || {
        while let Some(r) = a.poll(Duration::from_millis(20)) {
            let m = r.unwrap_or_else(|e| panic!("poll: {e}"));
            next[0].insert(m.partition(), m.offset() + 1);
            a_got += 1;
        }
        a_got >= a_share
    });
    check(ok, B, || {
        format!("A consumed {a_got} of its {a_share} phase-2 records")
    });
    commit(&a, &topic, &next[0]);

    // B leaves (close on drop = LeaveGroup); A must take over all 4 partitions and consume
    // exactly B's unconsumed records, starting from B's committed offsets.
    let t1 = Instant::now();
    drop(b);
    let mut rest: Vec<String> = vec![];
    let took_over = wait_until(Duration::from_secs(30), || {
        while let Some(r) = a.poll(Duration::from_millis(20)) {
            rest.push(to_consumed(&r.unwrap_or_else(|e| panic!("poll: {e}"))).payload);
        }
        assigned(&a).len() == 4 && rest.len() >= b_share.len()
    });
    check(took_over, B, || {
        format!(
            "after B left, A had partitions {:?} and consumed {} of B's {} unconsumed records",
            assigned(&a),
            rest.len(),
            b_share.len()
        )
    });
    log(format!(
        "[conformance] takeover + consume after {:?}",
        t1.elapsed()
    ));
    // Grace poll: nothing already committed may be redelivered.
    let _ = wait_until(Duration::from_millis(500), || {
        while let Some(r) = a.poll(Duration::from_millis(20)) {
            rest.push(to_consumed(&r.unwrap()).payload);
        }
        false
    });
    b_share.sort();
    rest.sort();
    check(rest == b_share, B, || {
        format!("after takeover A must consume exactly B's {} unconsumed records; got {} records: {rest:?}", b_share.len(), rest.len())
    });
}

/// (c) A new group member resumes exactly at a committed offset lying inside a multi-record
/// producer batch and receives every remaining record.
#[test]
fn resume_from_offset_inside_batch() {
    const B: &str = "(c) resume from committed offset inside a multi-record batch";
    const N: usize = 1000;
    const COMMIT_AT: i64 = 437;
    let bs = shared().bootstrap();
    let topic = unique("conf-resume");
    let group = unique("conf-resume-g");
    create_topic(&bs, &topic, 1);

    // Large linger/batch so the 1000 small records go out in a few multi-record batches.
    let mut pc = producer_config(&bs);
    pc.set("linger.ms", "200")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000");
    let records: Vec<Record> = (0..N)
        .map(|i| (format!("u{}", i % 7), format!("m{i:04}"), vec![]))
        .collect();
    let delivered = produce_with(&pc, &topic, &records);
    let offsets: Vec<i64> = delivered.iter().map(|d| d.1).collect();
    check(offsets == (0..N as i64).collect::<Vec<_>>(), B, || {
        "delivery offsets are not 0..1000 in order".into()
    });

    // First member reads up to COMMIT_AT, commits it, leaves.
    {
        let a = subscribed(&bs, &group, &topic);
        let mut seen = 0i64;
        let ok = wait_until(Duration::from_secs(30), || {
            while seen < COMMIT_AT {
                match a.poll(Duration::from_millis(50)) {
                    Some(r) => {
                        let m = r.unwrap_or_else(|e| panic!("poll: {e}"));
                        assert_eq!(m.offset(), seen, "first member: unexpected offset");
                        seen += 1;
                    }
                    None => return false,
                }
            }
            true
        });
        check(ok, B, || {
            format!("first member read only {seen} of {COMMIT_AT} records")
        });
        commit(&a, &topic, &BTreeMap::from([(0, COMMIT_AT)]));
    }
    let committed = committed_offsets(&bs, &group, &topic);
    check(committed == vec![COMMIT_AT], B, || {
        format!("committed offsets {committed:?}, expected [{COMMIT_AT}]")
    });

    // Second member must start exactly at COMMIT_AT and get every remaining record.
    let b = subscribed(&bs, &group, &topic);
    let mut got: Vec<(i64, String)> = vec![];
    let ok = wait_until(Duration::from_secs(30), || {
        while let Some(r) = b.poll(Duration::from_millis(50)) {
            let m = r.unwrap_or_else(|e| panic!("poll: {e}"));
            got.push((m.offset(), to_consumed(&m).payload));
        }
        got.len() >= N - COMMIT_AT as usize
    });
    check(ok, B, || {
        format!(
            "resumed member got {} of {} remaining records (first offset {:?})",
            got.len(),
            N as i64 - COMMIT_AT,
            got.first()
        )
    });
    check(got[0].0 == COMMIT_AT, B, || {
        format!(
            "resumed at offset {} instead of committed {COMMIT_AT}",
            got[0].0
        )
    });
    let want: Vec<(i64, String)> = (COMMIT_AT..N as i64)
        .map(|o| (o, format!("m{o:04}")))
        .collect();
    check(got == want, B, || {
        let missing = want.iter().filter(|w| !got.contains(w)).count();
        format!("resumed member's records differ from offsets {COMMIT_AT}..{N}: {} received, {missing} missing", got.len())
    });
}

/// (d) The reported high watermark equals the real end offset (records produced) per partition.
#[test]
fn high_watermark_is_end_offset() {
    const B: &str = "(d) high watermark equals end offset";
    let bs = shared().bootstrap();
    let topic = unique("conf-hw");
    create_topic(&bs, &topic, 3);
    check(high_watermarks(&bs, &topic) == vec![0, 0, 0], B, || {
        format!(
            "new topic has high watermarks {:?}, expected [0, 0, 0]",
            high_watermarks(&bs, &topic)
        )
    });

    let mut per_part = [0i64; 3];
    let mut total = 0;
    for (round, n) in [(0, 1usize), (1, 57), (2, 250)] {
        let recs: Vec<(String, String)> = (0..n)
            .map(|i| (format!("r{round}-{i}"), "x".repeat(i % 50)))
            .collect();
        let refs: Vec<(&str, &str)> = recs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (p, off) in produce(&bs, &topic, &refs) {
            check(off == per_part[p as usize], B, || {
                format!(
                    "partition {p}: delivered offset {off}, expected {}",
                    per_part[p as usize]
                )
            });
            per_part[p as usize] += 1;
        }
        total += n;
        let hw = high_watermarks(&bs, &topic);
        check(hw == per_part, B, || {
            format!("after {total} records: high watermarks {hw:?}, real end offsets {per_part:?}")
        });
    }
    let got = consume_records(&bs, &topic, total, Duration::from_secs(30));
    let mut counts = [0i64; 3];
    for c in &got {
        counts[c.partition as usize] += 1;
    }
    check(counts == per_part, B, || {
        format!("consumed per partition {counts:?}, high watermarks {per_part:?}")
    });
}

/// The harness's workaround for Tansu 0.6 scanning its `header` table on every fetched record
/// (`util::index_headers`, README "Known issues") is in place on the private broker.
#[test]
fn the_test_brokers_header_table_is_indexed() {
    let broker = shared();
    let Some(dir) = broker.dir() else {
        log(format!(
            "SKIPPED the_test_brokers_header_table_is_indexed: an external broker \
             ({EXTERNAL_BROKERS_ENV}) keeps its own storage"
        ));
        return;
    };
    let indexes = header_indexes(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        indexes.iter().any(|i| i == HEADER_INDEX),
        "no {HEADER_INDEX} among the header table's indexes {indexes:?}"
    );
}
