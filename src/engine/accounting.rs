//! What an engine holds and has done, for metrics and benchmarks: sizes, counts and totals,
//! apart from the data path so the engine's main file reads as events in, decisions out.

use super::{Engine, EngineCounters, PendingOutcome, Slot};
use crate::features::StageStats;

impl Engine {
    /// Approximate heap bytes by part (benchmarks): slot table, user ids (those too long to sit
    /// in their slot), packed days, index,
    /// timer queue, pending outcomes.
    pub fn memory_breakdown(&self) -> [(&'static str, usize); 6] {
        let live = self.slots.iter().flatten();
        let ids: usize = live.clone().map(|s| s.user_id.heap_bytes()).sum();
        let days: usize = live.map(|s| s.state.windows().heap_bytes()).sum();
        [
            (
                "slots",
                self.slots.capacity() * std::mem::size_of::<Option<Slot>>(),
            ),
            ("user ids", ids),
            ("packed days", days),
            (
                "index",
                self.index.capacity() * (std::mem::size_of::<u32>() + 1),
            ),
            ("timers", self.timers.len() * 8),
            (
                "pending outcomes",
                self.outcomes.capacity() * (std::mem::size_of::<(u32, PendingOutcome)>() + 1),
            ),
        ]
    }

    /// Alerts whose outcome window is still open.
    pub fn outcomes_pending(&self) -> usize {
        self.outcomes.len()
    }

    /// Users per lifecycle stage now, and the transitions between stages so far.
    pub fn stage_stats(&self) -> StageStats {
        self.stages
    }

    /// Number of users in memory.
    pub fn users(&self) -> usize {
        self.index.len()
    }

    /// Timer entries queued (one per tracked user plus superseded entries not yet popped):
    /// memory accounting.
    pub fn timers_queued(&self) -> usize {
        self.timers.len()
    }

    /// Eviction and erasure totals.
    pub fn counters(&self) -> EngineCounters {
        EngineCounters {
            dedupe_forgotten: self.dedupe.forgotten(),
            ..self.counters
        }
    }

    /// Fingerprints the duplicate detector holds (memory accounting).
    pub fn dedupe_entries(&self) -> usize {
        self.dedupe.len()
    }
}
