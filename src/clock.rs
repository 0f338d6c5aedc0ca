//! Which time drives each partition's engine: its own event time while it has a backlog, the
//! wall clock once it is caught up.
//!
//! Every input partition has its own engine, holding the users whose events come from it, so a
//! user's timers need only their own partition's time. While a partition has a backlog, its
//! engine moves with the latest event time read from that partition (as Kafka Streams' stream
//! time does): a timer fires before the partition's later events only if they are later in
//! event time, however fast other partitions are read. Which alerts exist is then a function of
//! each partition's events, not of fetch timing. Once the partition is caught up, nothing unread
//! can contradict the wall clock, which then drives it, so silent users are re-scored in real
//! time and a quiet partition never waits on the others.

use std::collections::BTreeMap;

use crate::Millis;

/// What the source knows about one assigned partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Latest event time read from the partition, if any.
    pub max_event_ts: Option<Millis>,
    /// Whether the consumer position has reached the partition's high watermark.
    pub caught_up: bool,
}

/// Per-partition progress of one consumer, and the engine time it implies.
#[derive(Debug, Clone, Default)]
pub struct PartitionClocks {
    partitions: BTreeMap<i32, PartitionProgress>,
}

impl PartitionClocks {
    /// Replaces the set of assigned partitions, keeping progress of those that stay.
    pub fn assign(&mut self, partitions: &[i32]) {
        self.partitions.retain(|p, _| partitions.contains(p));
        for p in partitions {
            self.partitions.entry(*p).or_default();
        }
    }

    /// Records an event read from `partition`. Events of partitions not (or no longer) assigned
    /// are ignored: only the assignment decides which partitions hold the clock.
    pub fn observe(&mut self, partition: i32, event_ts: Millis) {
        if let Some(entry) = self.partitions.get_mut(&partition) {
            entry.max_event_ts = Some(entry.max_event_ts.map_or(event_ts, |m| m.max(event_ts)));
        }
    }

    /// Records whether an assigned `partition` has been read up to its high watermark; returns
    /// whether that changed.
    pub fn set_caught_up(&mut self, partition: i32, caught_up: bool) -> bool {
        match self.partitions.get_mut(&partition) {
            Some(entry) if entry.caught_up != caught_up => {
                entry.caught_up = caught_up;
                true
            }
            _ => false,
        }
    }

    /// The time the engine of `partition` may move to: the latest event time read from it while
    /// it lags (`None` before its first event), the wall clock (or its latest event time, if
    /// ahead) once it is caught up; `None` for a partition not assigned.
    pub fn partition_now(&self, partition: i32, wall: Millis) -> Option<Millis> {
        let p = self.partitions.get(&partition)?;
        if p.caught_up {
            Some(p.max_event_ts.map_or(wall, |t| t.max(wall)))
        } else {
            p.max_event_ts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_unknown_partitions_do_not_move_the_clock() {
        let mut c = PartitionClocks::default();
        c.observe(0, 500);
        assert_eq!(c.partition_now(0, 1_000), None, "no assignment known yet");
        c.assign(&[0, 1]);
        assert_eq!(
            c.partition_now(0, 1_000),
            None,
            "the early event was not kept"
        );
        c.observe(0, 500);
        assert_eq!(c.partition_now(0, 1_000), Some(500));
    }

    /// A partition read ahead of the others keeps its own time (its timers fire in step with its
    /// own events), and one behind is not pushed past events it has not delivered yet.
    #[test]
    fn each_partition_runs_on_its_own_event_time_while_it_lags() {
        let mut c = PartitionClocks::default();
        c.assign(&[0, 1, 2]);
        assert_eq!(c.partition_now(0, 1_000_000), None, "nothing read yet");
        c.observe(0, 900);
        c.observe(1, 100);
        assert_eq!(
            c.partition_now(0, 1_000_000),
            Some(900),
            "ahead: its own time"
        );
        assert_eq!(
            c.partition_now(1, 1_000_000),
            Some(100),
            "behind: its own time"
        );
        assert_eq!(
            c.partition_now(2, 1_000_000),
            None,
            "no event of its own yet"
        );
        assert_eq!(c.partition_now(7, 1_000_000), None, "not assigned");
        c.set_caught_up(1, true);
        assert_eq!(
            c.partition_now(1, 1_000_000),
            Some(1_000_000),
            "caught up: the wall clock, whatever the others lag"
        );
        assert_eq!(c.partition_now(0, 1_000_000), Some(900));
        c.set_caught_up(2, true);
        assert_eq!(
            c.partition_now(2, 50),
            Some(50),
            "a quiet partition follows the wall"
        );
        c.observe(1, 2_000_000);
        assert_eq!(
            c.partition_now(1, 1_000_000),
            Some(2_000_000),
            "event time ahead of a slow wall clock wins"
        );
    }

    #[test]
    fn reassignment_forgets_revoked_partitions() {
        let mut c = PartitionClocks::default();
        c.assign(&[0, 1]);
        c.observe(0, 5);
        c.assign(&[1]);
        c.observe(1, 7);
        assert_eq!(c.partition_now(0, 0), None);
        assert_eq!(c.partition_now(1, 0), Some(7));
        c.assign(&[0, 1]);
        assert_eq!(c.partition_now(0, 0), None, "taken back: starts afresh");
    }
}
