//! The checkpoint: the one protocol by which consumed input becomes committed input.
//!
//! A checkpoint writes every changed user's state to the changelog, makes sure everything
//! enqueued so far (alerts, dead letters, outcomes, churn-risk table records, changelog records)
//! is acknowledged, and only
//! then commits the input offsets those effects reflect. Committing first would let a crash lose
//! effects of consumed input for good; so no offset is ever committed past a message whose
//! effects, state included, are not durably written. That rule lives here and nowhere else: the
//! periodic checkpoint, the one before partitions are revoked and the one at shutdown all call
//! [`Checkpoint::run`], differing only in their [`Mode`]; offsets are committed by one function
//! (`Checkpoint::commit`) and the changelog is written by one
//! ([`Partitions::write_changes`], through `Checkpoint::write_changes`).
//!
//! The periodic checkpoint does not block the consumer: it closes a producer *epoch* and
//! commits the offsets of that moment once every message of the epoch is acknowledged
//! ([`Mode::Background`], then [`Mode::Settle`] on every tick). Revocation and shutdown wait
//! for the producer instead ([`Mode::Blocking`]).
//!
//! Once something the offsets would cover can no longer be written (a changelog record the
//! producer refuses, a message half applied when a send failed), the checkpoint is *blocked*:
//! every later call on every path skips, so a restart resumes from the last good checkpoint.
//!
//! Modelled on Quix Streams' `checkpointing/checkpoint.py` (flush sinks, produce changelogs,
//! flush the producer, commit; a failed store transaction aborts the checkpoint).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::sink::{Sink, SinkError, EPOCH_RING};
use super::state::Partitions;
use super::telemetry::{self, Emit};
use crate::metrics::{CommitResult, Metrics};

/// How a checkpoint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Periodic: write the changelog, close the producer epoch, commit its offsets once it is
    /// acknowledged (now, or at a later [`Mode::Settle`]). Never waits for the broker.
    Background,
    /// Commit the waiting background checkpoints whose messages are now acknowledged.
    Settle,
    /// Revocation and shutdown: write the changelog, wait (up to `timeout`) for every message
    /// to be acknowledged, commit synchronously.
    Blocking { timeout: Duration },
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Offsets were handed to the group coordinator.
    Committed,
    /// No partition moved since its last commit.
    NothingToCommit,
    /// Written; the offsets are committed once the broker acknowledges (background mode).
    Deferred,
    /// Nothing committed, for `reason`; a later checkpoint covers the same input.
    Skipped { reason: SkipReason },
}

/// Why a checkpoint committed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The producer did not drain within the timeout.
    FlushTimedOut,
    /// The commit call itself failed (the next checkpoint retries).
    CommitFailed,
    /// Checkpoints are blocked for good in this pipeline.
    Blocked(Blocked),
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::FlushTimedOut => "producer flush timed out",
            SkipReason::CommitFailed => "offset commit failed",
            SkipReason::Blocked(b) => b.as_str(),
        }
    }
}

/// Why no checkpoint of this pipeline may commit any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// A send failed while a message was being handled: its state is half applied, and a
    /// changelog record of it would reflect the message at a position that replays it.
    HalfAppliedMessage,
    /// A changelog record could not be enqueued: offsets would cover state never written.
    ChangelogWriteFailed,
}

impl Blocked {
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::HalfAppliedMessage => "a message was half applied when a send failed",
            Blocked::ChangelogWriteFailed => "a state changelog record could not be written",
        }
    }
}

/// Why a checkpoint failed (the pipeline stops; a fresh one resumes from the last commit).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "{0} message(s) could not be delivered to an output topic (alerts, outcomes, scores, \
         dead letters); stopping without committing past them so a restart reprocesses them \
         (check the topics exist and the producer's permissions)"
    )]
    DeliveryFailed(u64),
    #[error("cannot write the state changelog: {0}; no offset is committed past the state it would have carried")]
    Changelog(#[source] SinkError),
}

/// A periodic checkpoint waiting for its messages: once every message enqueued up to its epoch
/// is acknowledged, its offsets are committed. The consumer keeps going meanwhile.
struct PendingCommit {
    epoch: u64,
    /// Next input offset per partition when the checkpoint was taken.
    offsets: Vec<(i32, i64)>,
    taken: Instant,
}

/// The epoch bookkeeping of background checkpoints.
#[derive(Default)]
struct Book {
    /// Oldest first.
    pending: VecDeque<PendingCommit>,
    /// Every epoch up to this one is fully acknowledged.
    delivered_through: u64,
    blocked: Option<Blocked>,
}

/// The checkpoint of one pipeline, shared by the pipeline loop and the consumer's rebalance
/// callback.
pub struct Checkpoint {
    input_topic: String,
    sink: Sink,
    partitions: Arc<Mutex<Partitions>>,
    metrics: Arc<Metrics>,
    book: Mutex<Book>,
}

/// Locks a mutex; a panic elsewhere while holding it leaves the data usable (every update
/// under these locks is a whole operation).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Checkpoint {
    pub fn new(
        input_topic: &str,
        sink: Sink,
        partitions: Arc<Mutex<Partitions>>,
        metrics: Arc<Metrics>,
    ) -> Checkpoint {
        Checkpoint {
            input_topic: input_topic.to_string(),
            sink,
            partitions,
            metrics,
            book: Mutex::new(Book::default()),
        }
    }

    /// Runs a checkpoint in `mode`, committing through `consumer`.
    pub fn run<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
        mode: Mode,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        if let Some(blocked) = lock(&self.book).blocked {
            if mode != Mode::Settle {
                telemetry::Commit(CommitResult::Skipped).emit(&self.metrics);
            }
            return Ok(CheckpointOutcome::Skipped {
                reason: SkipReason::Blocked(blocked),
            });
        }
        let started = Instant::now();
        let result = match mode {
            Mode::Settle => return self.settle(consumer),
            Mode::Background => self.open(consumer),
            Mode::Blocking { timeout } => self.blocking(consumer, timeout),
        };
        telemetry::CheckpointTimed(started.elapsed()).emit(&self.metrics);
        result
    }

    /// Blocks every later checkpoint of this pipeline (see [`Blocked`]).
    pub fn block(&self, reason: Blocked) {
        let mut book = lock(&self.book);
        if book.blocked.is_none() {
            tracing::warn!(
                reason = reason.as_str(),
                "checkpoints blocked: no offset is committed from here on"
            );
            book.blocked = Some(reason);
        }
    }

    /// How long the oldest background checkpoint has waited for the broker's acknowledgements
    /// (`None` when none waits).
    pub fn oldest_waiting(&self) -> Option<Duration> {
        lock(&self.book).pending.front().map(|c| c.taken.elapsed())
    }

    /// Drops the state of partitions given away (revoked or lost). Waiting background
    /// checkpoints are dropped too: they may name partitions another member owns now, and the
    /// next checkpoint covers the rest.
    pub fn forget(&self, partitions: &[i32]) {
        lock(&self.partitions).retire(partitions);
        if !partitions.is_empty() {
            lock(&self.book).pending.clear();
        }
    }

    fn check_deliveries(&self) -> Result<(), CheckpointError> {
        match self.sink.failures() {
            0 => Ok(()),
            n => {
                telemetry::Commit(CommitResult::Skipped).emit(&self.metrics);
                Err(CheckpointError::DeliveryFailed(n))
            }
        }
    }

    /// Enqueues every changed user's record and returns the positions they reflect (the offsets
    /// to commit once they are acknowledged). A refused record blocks the checkpoint.
    fn write_changes(&self) -> Result<Vec<(i32, i64)>, CheckpointError> {
        let mut partitions = lock(&self.partitions);
        match partitions.write_changes(&self.sink, &self.metrics) {
            Ok(_) => Ok(partitions.uncommitted_positions()),
            Err(e) => {
                drop(partitions);
                self.block(Blocked::ChangelogWriteFailed);
                telemetry::Commit(CommitResult::Skipped).emit(&self.metrics);
                Err(CheckpointError::Changelog(e))
            }
        }
    }

    /// [`Mode::Background`].
    fn open<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        self.check_deliveries()?;
        let offsets = self.write_changes()?;
        {
            let mut book = lock(&self.book);
            if self.sink.open_epoch() - book.delivered_through < EPOCH_RING - 1 {
                let epoch = self.sink.close_epoch();
                book.pending.push_back(PendingCommit {
                    epoch,
                    offsets,
                    taken: Instant::now(),
                });
            } else {
                tracing::warn!(
                    waiting = book.pending.len(),
                    in_flight = self.sink.in_flight(),
                    "checkpoints are waiting for the broker to acknowledge; not opening another"
                );
            }
        }
        self.settle(consumer)
    }

    /// [`Mode::Settle`]: commits the newest waiting checkpoint whose messages (and all before)
    /// are acknowledged.
    fn settle<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        let ready = {
            let mut book = lock(&self.book);
            let mut ready = None;
            while let Some(front) = book.pending.front() {
                if !self.sink.delivered(book.delivered_through + 1, front.epoch) {
                    break;
                }
                book.delivered_through = front.epoch;
                ready = book.pending.pop_front();
            }
            match ready {
                Some(commit) => commit,
                None if book.pending.is_empty() => return Ok(CheckpointOutcome::NothingToCommit),
                None => return Ok(CheckpointOutcome::Deferred),
            }
        };
        self.check_deliveries()?;
        let offsets = lock(&self.partitions).owned(&ready.offsets);
        Ok(self.commit(consumer, &offsets, CommitMode::Async))
    }

    /// [`Mode::Blocking`].
    fn blocking<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
        timeout: Duration,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        let offsets = self.write_changes()?;
        if let Err(e) = self.sink.flush(timeout) {
            tracing::warn!(error = %e, in_flight = self.sink.in_flight(), "producer flush timed out; offsets not committed");
            telemetry::Commit(CommitResult::Skipped).emit(&self.metrics);
            return Ok(CheckpointOutcome::Skipped {
                reason: SkipReason::FlushTimedOut,
            });
        }
        self.check_deliveries()?;
        {
            // Everything enqueued so far is acknowledged: this commit covers whatever the
            // waiting background checkpoints would have.
            let mut book = lock(&self.book);
            book.pending.clear();
            book.delivered_through = self.sink.open_epoch().saturating_sub(1);
        }
        Ok(self.commit(consumer, &offsets, CommitMode::Sync))
    }

    /// Commits `offsets` (next input offset per partition): the only place offsets are
    /// committed.
    fn commit<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
        offsets: &[(i32, i64)],
        mode: CommitMode,
    ) -> CheckpointOutcome {
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.input_topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(error = %e, partition, offset, "cannot name an offset to commit");
            }
        }
        if tpl.count() == 0 {
            return CheckpointOutcome::NothingToCommit;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                lock(&self.partitions).mark_committed(offsets);
                telemetry::Commit(CommitResult::Ok).emit(&self.metrics);
                CheckpointOutcome::Committed
            }
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; will retry at the next checkpoint");
                telemetry::Commit(CommitResult::Error).emit(&self.metrics);
                CheckpointOutcome::Skipped {
                    reason: SkipReason::CommitFailed,
                }
            }
        }
    }
}
