//! How many users are in each lifecycle stage, and how many moved between stages: the figures
//! the engine keeps about the lifecycle and the service exports as metrics.
//!
//! Indexed by [`Stage`] rather than by number, so a count can only be about a stage that exists,
//! and summed and differenced as whole values: partitions add up with [`StageStats::add`], and a
//! metrics exporter publishes the growth since its last look with [`StageStats::delta_since`].

use super::lifecycle::Stage;

const STAGES: usize = Stage::ALL.len();

/// A count per lifecycle stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts([u64; STAGES]);

impl StageCounts {
    /// The count of `stage`.
    pub fn get(&self, stage: Stage) -> u64 {
        self.0[stage as usize]
    }

    /// One more user in `stage`.
    pub fn enter(&mut self, stage: Stage) {
        self.0[stage as usize] += 1;
    }

    /// One user fewer in `stage` (never below zero).
    pub fn leave(&mut self, stage: Stage) {
        let n = &mut self.0[stage as usize];
        *n = n.saturating_sub(1);
    }

    /// Adds `other`'s counts, stage by stage.
    pub fn add(&mut self, other: &StageCounts) {
        for (n, a) in self.0.iter_mut().zip(other.0) {
            *n += a;
        }
    }

    /// Growth of each count since `previous` (0 where it shrank).
    pub fn delta_since(&self, previous: &StageCounts) -> StageCounts {
        let mut out = *self;
        for (n, p) in out.0.iter_mut().zip(previous.0) {
            *n = n.saturating_sub(p);
        }
        out
    }

    /// The sum over all stages.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every stage with its count, in [`Stage::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, u64)> + '_ {
        Stage::ALL.into_iter().zip(self.0)
    }
}

/// A count per pair of distinct stages (`from` → `to`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTransitions([[u64; STAGES]; STAGES]);

impl StageTransitions {
    /// The count of moves from `from` to `to`.
    pub fn get(&self, from: Stage, to: Stage) -> u64 {
        self.0[from as usize][to as usize]
    }

    /// Counts one move from `from` to `to`.
    pub fn record(&mut self, from: Stage, to: Stage) {
        self.0[from as usize][to as usize] += 1;
    }

    /// Adds `other`'s counts, pair by pair.
    pub fn add(&mut self, other: &StageTransitions) {
        for (row, add) in self.0.iter_mut().zip(&other.0) {
            for (n, a) in row.iter_mut().zip(add) {
                *n += a;
            }
        }
    }

    /// Growth of each count since `previous` (0 where it shrank).
    pub fn delta_since(&self, previous: &StageTransitions) -> StageTransitions {
        let mut out = *self;
        for (row, prev) in out.0.iter_mut().zip(&previous.0) {
            for (n, p) in row.iter_mut().zip(prev) {
                *n = n.saturating_sub(*p);
            }
        }
        out
    }

    /// Every pair with its count (`from`, `to`, count), `from` then `to` in [`Stage::ALL`]
    /// order, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, Stage, u64)> + '_ {
        Stage::ALL.into_iter().flat_map(move |from| {
            Stage::ALL
                .into_iter()
                .map(move |to| (from, to, self.get(from, to)))
        })
    }
}

/// The lifecycle figures of one engine (or of several, added up): users per stage now, and the
/// cumulative transitions between stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Users per stage (a level: goes up and down).
    pub users: StageCounts,
    /// Moves between stages since the engine started (only ever grows).
    pub transitions: StageTransitions,
}

impl StageStats {
    /// Adds `other`'s figures.
    pub fn add(&mut self, other: &StageStats) {
        self.users.add(&other.users);
        self.transitions.add(&other.transitions);
    }

    /// What grew since `previous`, for exporters that publish increments: transitions that
    /// happened since, and per stage the users gained (a level, so exporters usually publish
    /// [`StageStats::users`] as it is instead).
    pub fn delta_since(&self, previous: &StageStats) -> StageStats {
        StageStats {
            users: self.users.delta_since(&previous.users),
            transitions: self.transitions.delta_since(&previous.transitions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_difference_by_stage() {
        let mut a = StageCounts::default();
        a.enter(Stage::New);
        a.enter(Stage::New);
        a.enter(Stage::AtRisk);
        a.leave(Stage::Churned); // never below zero
        assert_eq!(a.get(Stage::New), 2);
        assert_eq!(a.get(Stage::Churned), 0);
        let mut b = a;
        b.add(&a);
        b.leave(Stage::AtRisk);
        assert_eq!(b.total(), 5);
        let d = b.delta_since(&a);
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [
                (Stage::New, 2),
                (Stage::Active, 0),
                (Stage::AtRisk, 0),
                (Stage::Grace, 0),
                (Stage::Dormant, 0),
                (Stage::Churned, 0)
            ]
        );
    }

    #[test]
    fn transitions_add_and_difference_by_pair() {
        let mut before = StageTransitions::default();
        before.record(Stage::Active, Stage::AtRisk);
        let mut now = before;
        now.record(Stage::Active, Stage::AtRisk);
        now.record(Stage::AtRisk, Stage::Active);
        let mut stats = StageStats {
            transitions: now,
            ..StageStats::default()
        };
        stats.add(&StageStats {
            transitions: before,
            ..StageStats::default()
        });
        assert_eq!(stats.transitions.get(Stage::Active, Stage::AtRisk), 3);
        let d = now.delta_since(&before);
        let moved: Vec<_> = d.iter().filter(|&(_, _, n)| n > 0).collect();
        assert_eq!(
            moved,
            [
                (Stage::Active, Stage::AtRisk, 1),
                (Stage::AtRisk, Stage::Active, 1)
            ]
        );
        assert_eq!(d.iter().count(), 36);
    }
}
