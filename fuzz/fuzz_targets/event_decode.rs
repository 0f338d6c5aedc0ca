//! The native event decoder on arbitrary message payloads: it never panics, the decoder the
//! service uses agrees with it, and an accepted event survives its own wire form and the
//! engine's checks.
#![no_main]

use churnguard::event;
use churnguard::mapping::{Decoded, EventDecoder};
use churnguard_fuzz::{engine, NOW, SKEW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let direct = event::decode(data, NOW, SKEW);
    let via = EventDecoder::native().decode(data, NOW, SKEW);
    match (&direct, &via) {
        (Ok(e), Ok(Decoded::Event(v))) => assert_eq!(e, v),
        (Err(a), Err(b)) => assert_eq!(a.reason, b.reason),
        other => panic!("the native decoder disagrees with event::decode: {other:?}"),
    }
    let Ok(e) = direct else { return };
    let again = event::decode(event::encode(&e).as_bytes(), NOW, SKEW)
        .unwrap_or_else(|r| panic!("an accepted event's wire form is refused: {r}"));
    // serde_json parses floats to within one unit in the last place (exact round trips are an
    // opt-in feature the crate does not take): amounts compare to that precision.
    assert!(
        (again.amount - e.amount).abs() <= e.amount * 4.0 * f64::EPSILON,
        "amount {} becomes {} through its wire form",
        e.amount,
        again.amount
    );
    let again = event::Event {
        amount: e.amount,
        ..again
    };
    assert_eq!(again, e, "an accepted event changes through its wire form");
    // The engine refuses what it cannot hold (long ids) with a reason; it never panics.
    let _ = engine(None).apply(&e);
});
