//! What one pipeline hands to the next inside the process.
//!
//! The supervisor replaces a pipeline stopped by a transient failure with a fresh one that
//! resumes from the last checkpoint, so the messages between that checkpoint and the failure
//! are read and applied again. That is right for the state, but the counters of input messages
//! (`events_consumed_total`, `events_rejected_total`, …) must count each message once, and the
//! service must not look ready while pipeline after pipeline fails before a single checkpoint
//! gets through (each fresh one gets its partitions and would look healthy for a moment).
//! Liveness lives here too: a member left without partitions stays so across pipelines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared by the supervisor and the pipelines it starts.
#[derive(Debug, Clone)]
pub struct Continuity {
    inner: Arc<Mutex<Inner>>,
    /// What `/healthz` reports.
    alive: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per input partition, the offset after the last message counted.
    counted_through: HashMap<i32, i64>,
    /// Pipelines replaced since the last checkpoint that got through.
    replaced_since_checkpoint: u32,
}

impl Default for Continuity {
    /// Liveness reported nowhere.
    fn default() -> Self {
        Continuity::new(Arc::default())
    }
}

impl Continuity {
    /// Reports liveness through `alive`.
    pub fn new(alive: Arc<AtomicBool>) -> Continuity {
        alive.store(true, Ordering::Relaxed);
        Continuity {
            inner: Arc::default(),
            alive,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the message at `offset` of `partition` is handled for the first time in this
    /// process, i.e. whether its effects on the input counters are to be counted.
    pub fn first_time(&self, partition: i32, offset: i64) -> bool {
        let mut inner = self.lock();
        let next = inner.counted_through.entry(partition).or_insert(i64::MIN);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }

    /// A pipeline failed and is being replaced.
    pub fn pipeline_replaced(&self) {
        self.lock().replaced_since_checkpoint += 1;
    }

    /// A checkpoint got through: everything it covered is delivered (and committed, if there
    /// was anything to commit).
    pub fn checkpoint_succeeded(&self) {
        self.lock().replaced_since_checkpoint = 0;
    }

    /// Sets what `/healthz` reports.
    pub fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::Relaxed);
    }

    /// Whether a pipeline was replaced and no checkpoint has got through since: the service is
    /// restart-looping, or has not yet shown that it is past the failure.
    pub fn restart_looping(&self) -> bool {
        self.lock().replaced_since_checkpoint > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_message_is_counted_once_per_partition() {
        let c = Continuity::default();
        let first: Vec<bool> = (0..5).map(|o| c.first_time(0, o)).collect();
        assert_eq!(first, [true; 5]);
        assert!(c.first_time(1, 2), "partitions are apart");
        // A fresh pipeline resumes at the last checkpoint, offset 3.
        let replay: Vec<bool> = (3..8).map(|o| c.first_time(0, o)).collect();
        assert_eq!(replay, [false, false, true, true, true]);
    }

    #[test]
    fn restart_looping_until_a_checkpoint_gets_through() {
        let c = Continuity::default();
        assert!(!c.restart_looping());
        c.pipeline_replaced();
        c.pipeline_replaced();
        assert!(c.restart_looping());
        c.checkpoint_succeeded();
        assert!(!c.restart_looping());
    }
}
