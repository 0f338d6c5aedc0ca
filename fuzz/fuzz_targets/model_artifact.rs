//! Model artifacts, as hot reload reads a changed model file: arbitrary bytes are refused with a
//! reason, or load into a model that scores every user with a probability, explains it and can
//! drive an engine (scoring on events and on silence timers) without panicking.
#![no_main]

use std::sync::Arc;

use churnguard::features::Windows;
use churnguard::model::Model;
use churnguard::scoring::Scorer;
use churnguard_fuzz::{check_scored, drive, engine, script};
use libfuzzer_sys::fuzz_target;

/// Two users, a buyer and a browser, over two months: enough to reach every feature's code.
const SCRIPT: [u8; 40] = [
    0, 0, 0, 0, 0, 6, 5, 80, 1, 0, 24, 0, 1, 2, 1, 0, 0, 7, 200, 40, //
    0, 9, 48, 0, 1, 3, 100, 0, 0, 6, 30, 255, 1, 4, 2, 0, 0, 1, 250, 0,
];

fuzz_target!(|data: &[u8]| {
    let model = match Model::from_json_for(data, "fuzz.json", Windows::default()) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let model: Arc<dyn Scorer> = Arc::new(model);
    assert!((0.0..=1.0).contains(&model.threshold()));
    let mut e = engine(Some(Arc::clone(&model)));
    for s in drive(&mut e, &script(&SCRIPT), 150) {
        check_scored(&s);
    }
    for user in ["u0", "u1"] {
        if let Some(x) = e.features(user, e.clock()) {
            let _ = model.top_reasons(&x, 3);
        }
        let _ = e.describe(user);
    }
});
