//! Tests of [`super::table`]: a row when what it says changes and only then, tombstones when a
//! user goes, rows that agree with a lookup at the same instant, and the marker across restores.

use super::changelog::Change;
use super::tests::{ev, run_days, silence_model};
use super::*;
use crate::policy::{RiskBand, ValueTier};

fn engine_with(config: EngineConfig) -> Engine {
    Engine::new(
        EngineConfig {
            score_table: true,
            ..config
        },
        Some(silence_model()),
    )
}

fn engine() -> Engine {
    engine_with(EngineConfig::default())
}

fn drained(e: &mut Engine) -> Vec<TableChange> {
    let mut out = Vec::new();
    e.drain_table(&mut out);
    out
}

fn rows(changes: &[TableChange]) -> Vec<&ScoreRow> {
    changes
        .iter()
        .filter_map(|c| match c {
            TableChange::Row(r) => Some(r),
            TableChange::Tombstone { .. } => None,
        })
        .collect()
}

/// What makes a row worth writing again.
fn says(r: &ScoreRow) -> (RiskBand, Stage, ValueTier, &str, &str) {
    (
        r.risk_band,
        r.lifecycle_stage,
        r.value_tier,
        &r.recommended_action,
        &r.channel,
    )
}

#[test]
fn the_first_scoring_writes_a_row_and_an_unchanged_one_none() {
    let mut e = engine();
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    let first = drained(&mut e);
    let [TableChange::Row(row)] = first.as_slice() else {
        panic!("one row expected: {first:?}");
    };
    assert_eq!(row.user_id, "u");
    assert_eq!(row.as_of, crate::time::rfc3339(100 * DAY_MS));
    assert_eq!(row.lifecycle_stage, Stage::New);
    assert_eq!(row.risk_band, RiskBand::Low);
    assert_eq!(row.model_version, "sha256:test");
    assert_eq!(row.schema_version, table::SCORE_SCHEMA_VERSION);
    // Daily logins for a week: scored every day, the same row every time.
    let mut scorings = 0;
    for d in 101..108 {
        let applied = e.apply(&ev("u", d as f64, EventKind::Login)).unwrap();
        scorings += usize::from(matches!(applied, Applied::Updated { scored: Some(_) }));
    }
    assert_eq!(scorings, 7);
    assert_eq!(drained(&mut e), [], "nothing changed, nothing written");
}

#[test]
fn every_row_says_something_new_and_agrees_with_a_lookup_at_its_instant() {
    // The user falls silent: band and stage move as the silence grows.
    // One event, so the clock can be stopped at every row's instant below.
    let script = |e: &mut Engine| {
        e.apply(&ev("quiet", 100.0, EventKind::Purchase)).unwrap();
    };
    let mut e = engine();
    script(&mut e);
    let scorings = run_days(&mut e, 101, 200).len();
    let changes = drained(&mut e);
    let written = rows(&changes);
    assert!(written.len() >= 4, "{written:#?}");
    assert!(
        written.len() < scorings + 1,
        "some scorings change nothing ({scorings} timer scorings, {} rows)",
        written.len()
    );
    for pair in written.windows(2) {
        assert_ne!(says(pair[0]), says(pair[1]), "{pair:#?}");
    }
    let stages: std::collections::BTreeSet<_> = written.iter().map(|r| r.lifecycle_stage).collect();
    assert!(stages.contains(&Stage::AtRisk) && stages.contains(&Stage::Grace));
    let bands: std::collections::BTreeSet<_> = written.iter().map(|r| r.risk_band).collect();
    assert!(bands.len() >= 3, "{bands:?}");

    // The same history again, the clock stopped at each row's instant: the lookup says what the
    // row says.
    let mut again = engine();
    script(&mut again);
    for row in &written {
        let at = chrono::DateTime::parse_from_rfc3339(&row.as_of)
            .unwrap()
            .timestamp_millis();
        again.advance(at, &mut Vec::new());
        let view = again.describe("quiet").expect("tracked");
        assert_eq!(view.as_of, row.as_of);
        assert_eq!(view.score, Some(row.score), "{row:?}");
        assert_eq!(view.risk_band, Some(row.risk_band), "{row:?}");
        assert_eq!(view.lifecycle_stage, row.lifecycle_stage, "{row:?}");
        assert_eq!(view.value_tier, row.value_tier, "{row:?}");
        assert_eq!(
            view.recommended_action.as_deref(),
            Some(&*row.recommended_action)
        );
        assert_eq!(view.channel.as_deref(), Some(&*row.channel));
        assert_eq!(view.model_version.as_deref(), Some(&*row.model_version));
    }
    assert_eq!(
        rows(&drained(&mut again)),
        written,
        "the rows do not depend on how the clock moved"
    );
}

#[test]
fn erasure_writes_a_tombstone_even_for_a_user_not_tracked() {
    let mut e = engine();
    e.apply(&ev("gone", 100.0, EventKind::Login)).unwrap();
    drained(&mut e);
    e.apply(&ev("gone", 100.5, EventKind::Erase)).unwrap();
    e.apply(&ev("never-seen", 100.5, EventKind::Erase)).unwrap();
    let tombstone = |u: &str| TableChange::Tombstone { user_id: u.into() };
    assert_eq!(
        drained(&mut e),
        [tombstone("gone"), tombstone("never-seen")]
    );
}

#[test]
fn eviction_writes_a_tombstone_after_the_last_row() {
    let mut e = engine_with(EngineConfig {
        retention: 40 * DAY_MS,
        ..EngineConfig::default()
    });
    e.apply(&ev("old", 100.0, EventKind::Login)).unwrap();
    run_days(&mut e, 100, 160);
    assert_eq!(e.counters().evicted, 1);
    let changes = drained(&mut e);
    assert!(rows(&changes).len() >= 2, "{changes:#?}");
    assert_eq!(
        changes.last(),
        Some(&TableChange::Tombstone {
            user_id: "old".into()
        })
    );
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, TableChange::Tombstone { .. }))
            .count(),
        1
    );
}

#[test]
fn without_the_table_nothing_is_queued_or_marked() {
    let mut e = Engine::new(EngineConfig::default(), Some(silence_model()));
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    run_days(&mut e, 100, 130);
    assert_eq!(e.state("u").map(UserState::table_mark), Some(0));
    e.erase("u");
    assert_eq!(drained(&mut e), []);
}

#[test]
fn a_restored_user_writes_their_row_again_at_the_next_scoring() {
    let mut e = engine();
    e.track_changes(true);
    e.apply(&ev("u", 100.0, EventKind::Login)).unwrap();
    assert_eq!(rows(&drained(&mut e)).len(), 1);
    let mut records = Vec::new();
    e.take_changes(|c| {
        if let Change::Upsert { user_id, record } = c {
            records.push((user_id.to_string(), record.to_vec()));
        }
    });
    let mut restored = engine();
    for (user, record) in &records {
        restored.restore(user, record).unwrap();
    }
    assert_eq!(drained(&mut restored), [], "a restore writes nothing");
    // The next scoring finds the same band, stage, tier and action, and writes them anyway: the
    // row it would have skipped may be one that never reached the topic before the restart.
    for engine in [&mut e, &mut restored] {
        engine.apply(&ev("u", 101.0, EventKind::Login)).unwrap();
    }
    assert_eq!(drained(&mut e), []);
    let again = drained(&mut restored);
    assert_eq!(rows(&again).len(), 1, "{again:?}");
}

#[test]
fn markers_tell_every_row_of_the_default_policy_apart() {
    let policy = crate::policy::Policy::default_embedded();
    let mut seen = std::collections::BTreeMap::new();
    for rule in policy.rules() {
        for stage in Stage::ALL {
            for band in RiskBand::ALL {
                for tier in ValueTier::ALL {
                    let advice = alerting::Advice { band, tier, rule };
                    let mark = table::marker(&policy, stage, &advice);
                    assert_ne!(mark, table::UNPUBLISHED);
                    let says = (band, stage, tier, rule.action.clone(), rule.channel.clone());
                    if let Some(other) = seen.insert(mark, says.clone()) {
                        assert_eq!(other, says, "one marker for two different rows");
                    }
                }
            }
        }
    }
}

#[test]
fn rows_match_the_published_schema_and_it_refuses_broken_ones() {
    use crate::alert::schema::validate_score;
    let policy = crate::policy::Policy::default_embedded();
    let row = |stage, band, tier, rule: &crate::policy::ActionRule| ScoreRow {
        schema_version: table::SCORE_SCHEMA_VERSION,
        user_id: "u-1042".into(),
        score: 0.8123,
        risk_band: band,
        lifecycle_stage: stage,
        value_tier: tier,
        recommended_action: rule.action.clone(),
        channel: rule.channel.clone(),
        model_version: "sha256:0123456789abcdef".into(),
        as_of: crate::time::rfc3339(1_728_043_200_000),
    };
    // Every band, stage and tier the code can produce, and every action of the default policy.
    for rule in policy.rules() {
        for stage in Stage::ALL {
            for band in RiskBand::ALL {
                for tier in ValueTier::ALL {
                    let json = serde_json::to_value(row(stage, band, tier, rule)).unwrap();
                    validate_score(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
                }
            }
        }
    }
    let good = serde_json::to_value(row(
        Stage::Grace,
        RiskBand::High,
        ValueTier::Gold,
        &policy.rules()[0],
    ))
    .unwrap();
    let broken = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut j = good.clone();
        f(j.as_object_mut().unwrap());
        validate_score(&j)
    };
    for field in ["user_id", "score", "risk_band", "as_of", "model_version"] {
        assert!(broken(&|m| {
            m.remove(field);
        })
        .is_err());
    }
    assert!(broken(&|m| {
        m.insert("score".into(), 1.5.into());
    })
    .is_err());
    assert!(broken(&|m| {
        m.insert("lifecycle_stage".into(), "asleep".into());
    })
    .is_err());
    assert!(broken(&|m| {
        m.insert("as_of".into(), "next tuesday".into());
    })
    .is_err());
    assert!(broken(&|m| {
        m.insert("email".into(), "someone@example.com".into());
    })
    .is_err());
}
