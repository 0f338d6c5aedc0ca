//! Win-back policy files: arbitrary text is refused with a reason that names a line of the text
//! (when it names one), or becomes a policy that an engine can decide alerts with.
#![no_main]

use std::sync::Arc;

use churnguard::engine::{Engine, EngineConfig};
use churnguard::policy::Policy;
use churnguard_fuzz::{check_scored, drive, script, shipped_model};
use libfuzzer_sys::fuzz_target;

const SCRIPT: [u8; 32] = [
    0, 0, 0, 0, 0, 6, 5, 80, 1, 0, 24, 0, 1, 9, 1, 0, 0, 7, 200, 40, 2, 0, 3, 0, 0, 6, 30, 255, 1,
    13, 2, 0,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::parse("fuzz.toml", text) {
        Ok(p) => p,
        Err(e) => {
            if let Some(line) = e.line() {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line} is not in a text of {} lines: {e}",
                    text.lines().count()
                );
            }
            return;
        }
    };
    for score in [0.0, 0.2, 0.5, 0.8, 1.0, f64::NAN] {
        let _ = policy.risk_band(score);
    }
    let _ = policy.value_tier(1e9, 0.0);
    let _ = policy.experiment_arm("u0");
    let config = EngineConfig {
        policy: Arc::new(policy),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, Some(shipped_model()));
    for s in drive(&mut e, &script(&SCRIPT), 150) {
        check_scored(&s);
    }
});
