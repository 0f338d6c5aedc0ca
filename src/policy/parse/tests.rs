//! Tests of the parent module, kept in their own file so the module itself stays short.

use super::PolicyError;
use crate::policy::{Policy, DEFAULT_POLICY_TOML};

const CATCH_ALL: &str = "[[rules]]\nname = \"all\"\naction = \"member_perk\"\nchannel = \"push\"\n";

/// Asserts `src` is refused at `line` with a message containing `needle`.
fn refused(src: &str, line: usize, needle: &str) {
    let err = match Policy::parse("bad.toml", src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.line(), Some(line), "wrong line in {msg:?} for:\n{src}");
    assert!(msg.contains("bad.toml"), "{msg}");
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn invalid_policies_are_refused_with_the_line() {
    // Syntax and type errors (reported by the TOML parser, mapped to a line).
    refused("recent_complaint_days = \n", 1, "");
    refused(
        &format!("# c\n\n[caps]\ncooldown_days = \"seven\"\n{CATCH_ALL}"),
        4,
        "",
    );
    refused(
        &format!("[caps]\ncooldown_days = 7\nbogus = 1\n{CATCH_ALL}"),
        3,
        "unknown field `bogus`",
    );
    refused(
        &format!("{CATCH_ALL}frequency = 3\n"),
        5,
        "unknown field `frequency`",
    );
    // Unknown names in conditions.
    refused(
        &format!("[[rules]]\nname = \"x\"\nstages = [\"dormnt\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
        3,
        "unknown variant `dormnt`",
    );
    refused(
        &format!("[[rules]]\nname = \"x\"\ntiers = [\"diamond\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
        3,
        "unknown variant `diamond`",
    );
    refused(
        &format!("[[rules]]\nname = \"x\"\nbands = [\"extreme\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
        3,
        "unknown variant `extreme`",
    );
    // Bands: out of [0, 1], not ascending.
    refused(
        &format!("[risk_bands]\nmedium = 0.4\nhigh = 0.3\ncritical = 0.9\n{CATCH_ALL}"),
        3,
        "strictly ascending",
    );
    refused(
        &format!("[risk_bands]\nmedium = 0.4\nhigh = 0.6\ncritical = 1.5\n{CATCH_ALL}"),
        4,
        "out of range",
    );
    // Tiers not ascending.
    refused(
        &format!(
            "[value_tiers]\nsilver = {{ total = 100.0, recent_90d = 50.0 }}\n\
             gold = {{ total = 500.0, recent_90d = 40.0 }}\n\
             platinum = {{ total = 900.0, recent_90d = 800.0 }}\n{CATCH_ALL}"
        ),
        3,
        "recent_90d",
    );
    // Control share outside [0, 1], bad topic.
    refused(
        &format!("[control]\nshare = 1.2\n{CATCH_ALL}"),
        2,
        "control.share",
    );
    refused(
        &format!("[control]\n\nshare = -0.1\n{CATCH_ALL}"),
        3,
        "control.share",
    );
    refused(
        &format!("[control]\ntopic = \"a b\"\n{CATCH_ALL}"),
        2,
        "Kafka topic",
    );
    // Caps the state cannot enforce, or that never alert.
    refused(
        &format!("[caps]\nmax_per_30d = 5\n{CATCH_ALL}"),
        2,
        "above 4",
    );
    refused(
        &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\nmax_per_30d = 0\n{CATCH_ALL}"),
        6,
        "the minimum is 1",
    );
    refused(
        &format!("recent_complaint_days = 120\n{CATCH_ALL}"),
        1,
        "out of range",
    );
    // Empty or bad outputs.
    refused(
        &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"\"\nchannel = \"c\"\n{CATCH_ALL}"),
        4,
        "`action`",
    );
    refused(
        &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"Call Them\"\nchannel = \"c\"\n{CATCH_ALL}"),
        4,
        "`action`",
    );
    refused(
        &format!("[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\n{CATCH_ALL}"),
        1,
        "missing field `channel`",
    );
    // Conditions that never match.
    refused(
        &format!(
            "[[rules]]\nname = \"x\"\nstages = []\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"
        ),
        3,
        "`stages` is empty",
    );
    refused(
        &format!(
            "[[rules]]\nname = \"x\"\nmin_tenure_days = 30\nmax_tenure_days = 10\n\
             action = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"
        ),
        4,
        "max_tenure_days",
    );
    // Duplicate names.
    refused(
        &format!("[[rules]]\nname = \"all\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"),
        7,
        "duplicate rule name",
    );
    // Catch-all missing, or not last (rules after it are unreachable).
    refused(
        "[[rules]]\nname = \"x\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n\n\
         [[rules]]\nname = \"y\"\nstages = [\"new\"]\naction = \"a\"\nchannel = \"c\"\n",
        7,
        "catch-all",
    );
    refused(
        &format!("{CATCH_ALL}\n[[rules]]\nname = \"late\"\ntiers = [\"gold\"]\naction = \"a\"\nchannel = \"c\"\n"),
        6,
        "unreachable: the catch-all rule `all` at line 1",
    );
    refused("recent_complaint_days = 30\n", 2, "no [[rules]]");
    // A rule shadowed by a broader earlier one.
    refused(
        &format!(
            "[[rules]]\nname = \"gold\"\ntiers = [\"gold\", \"platinum\"]\naction = \"a\"\nchannel = \"c\"\n\
             [[rules]]\nname = \"gold-new\"\ntiers = [\"gold\"]\nstages = [\"new\"]\naction = \"b\"\nchannel = \"c\"\n{CATCH_ALL}"
        ),
        6,
        "rule `gold-new` is unreachable: rule `gold` at line 1",
    );
}

#[test]
fn narrower_rules_before_broader_ones_are_accepted() {
    let src = format!(
        "[[rules]]\nname = \"gold-new\"\ntiers = [\"gold\"]\nstages = [\"new\"]\naction = \"b\"\nchannel = \"c\"\n\
         [[rules]]\nname = \"gold\"\ntiers = [\"gold\", \"platinum\"]\naction = \"a\"\nchannel = \"c\"\n\
         [[rules]]\nname = \"short\"\nmax_tenure_days = 10\naction = \"a\"\nchannel = \"c\"\n\
         [[rules]]\nname = \"long\"\nmin_tenure_days = 5\naction = \"a\"\nchannel = \"c\"\n{CATCH_ALL}"
    );
    let p = Policy::parse("ok.toml", &src).unwrap();
    assert_eq!(p.rules().len(), 5);
    assert_eq!(p.rules()[0].line, 1);
    assert_eq!(p.rules()[1].line, 7);
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DEFAULT_POLICY_TOML).unwrap();
    assert_eq!(Policy::load(&path).unwrap(), Policy::default_embedded());
    std::fs::write(&path, "[control]\nshare = 2\n").unwrap();
    let msg = Policy::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("line 2"),
        "{msg}"
    );
    let missing = dir.path().join("nope.toml");
    assert!(matches!(
        Policy::load(&missing),
        Err(PolicyError::Read { .. })
    ));
}
