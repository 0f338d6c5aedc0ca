//! Loads history files as the offline tools do and prints how many events they held, how long
//! it took and the events' own size, so the peak resident memory of the whole run (measured
//! from outside, e.g. `/usr/bin/time -v`) can be set against the events the tools must keep.
//! The README's memory figure for "History from files" comes from this program.
//!
//! Usage: `cargo run --release --example history_memory -- FILE...`

use churnguard::history::{self, ReadOptions};
use churnguard::mapping::EventDecoder;

fn main() -> anyhow::Result<()> {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    anyhow::ensure!(!paths.is_empty(), "usage: history_memory FILE...");
    let decoder = EventDecoder::native();
    let started = std::time::Instant::now();
    let loaded = history::load(&paths, &ReadOptions::offline(&decoder))?;
    let secs = started.elapsed().as_secs_f64();
    // What the events themselves hold: the structs plus the bytes of their two strings.
    let strings: usize = loaded
        .events
        .iter()
        .map(|e| e.user_id.capacity() + e.event_id.capacity())
        .sum();
    let structs = loaded.events.capacity() * std::mem::size_of::<churnguard::event::Event>();
    println!(
        "{} events ({} refused) from {} in {secs:.1} s ({:.0} events/s); Vec<Event> {:.0} MiB + id strings {:.0} MiB",
        loaded.events.len(),
        loaded.refused(),
        loaded.files_label(),
        loaded.events.len() as f64 / secs.max(1e-9),
        structs as f64 / 1048576.0,
        strings as f64 / 1048576.0,
    );
    Ok(())
}
