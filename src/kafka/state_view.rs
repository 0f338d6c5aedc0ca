//! The live state as the lookup API reads it: the current pipeline's engines and what this
//! instance owns. The process keeps one `StateView` across pipeline restarts; each pipeline
//! attaches its engines when it starts, reports its assignment as it changes, and detaches
//! when it stops, so a lookup never reads the engines of a pipeline that is gone.

use std::sync::{Arc, Mutex};

use super::checkpoint::lock;
use super::state::Partitions;
use crate::api::{Answer, LocalLookup};
use crate::engine::{Engine, UserExport, UserView};

#[derive(Default)]
struct Inner {
    partitions: Option<Arc<Mutex<Partitions>>>,
    /// Input partitions assigned to this instance.
    assigned: Vec<i32>,
    /// Partitions of the input topic.
    topic_partitions: Option<usize>,
}

/// What this instance owns, for the member directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Assigned input partitions.
    pub assigned: Vec<i32>,
    /// Those whose state is restored here.
    pub restored: Vec<i32>,
}

/// Shared between the pipeline (writer) and the lookup API (reader).
#[derive(Default)]
pub struct StateView {
    inner: Mutex<Inner>,
}

impl StateView {
    pub fn new() -> Arc<StateView> {
        Arc::new(StateView::default())
    }

    /// A pipeline started with these engines.
    pub(super) fn attach(&self, partitions: Arc<Mutex<Partitions>>) {
        let mut inner = lock(&self.inner);
        inner.partitions = Some(partitions);
        inner.assigned.clear();
    }

    /// The pipeline's assignment changed, or the topic's partition count became known.
    pub(super) fn set_assignment(&self, assigned: &[i32], topic_partitions: Option<usize>) {
        let mut inner = lock(&self.inner);
        inner.assigned = assigned.to_vec();
        if topic_partitions.is_some() {
            inner.topic_partitions = topic_partitions;
        }
    }

    /// The pipeline stopped: its engines are no longer current.
    pub(super) fn detach(&self) {
        let mut inner = lock(&self.inner);
        inner.partitions = None;
        inner.assigned.clear();
    }

    /// What this instance owns now.
    pub fn ownership(&self) -> Ownership {
        let (partitions, assigned) = {
            let inner = lock(&self.inner);
            (inner.partitions.clone(), inner.assigned.clone())
        };
        let restored = match partitions {
            Some(p) => {
                let p = lock(&p);
                assigned
                    .iter()
                    .copied()
                    .filter(|a| p.contains(*a))
                    .collect()
            }
            None => Vec::new(),
        };
        Ownership { assigned, restored }
    }

    /// Looks the user up in every engine here; `NotHere` only when every assigned partition
    /// is restored.
    fn lookup<T>(&self, get: impl Fn(&Engine) -> Option<T>) -> Answer<T> {
        let (partitions, assigned) = {
            let inner = lock(&self.inner);
            (inner.partitions.clone(), inner.assigned.clone())
        };
        let Some(partitions) = partitions else {
            return Answer::Unavailable {
                reason: "the pipeline is starting".into(),
            };
        };
        let partitions = lock(&partitions);
        for (p, engine) in partitions.engines() {
            if assigned.contains(&p) {
                if let Some(found) = get(engine) {
                    return Answer::Found(found);
                }
            }
        }
        let restoring: Vec<i32> = assigned
            .iter()
            .copied()
            .filter(|p| !partitions.contains(*p))
            .collect();
        if restoring.is_empty() {
            Answer::NotHere {
                partitions: assigned,
            }
        } else {
            Answer::Unavailable {
                reason: format!("restoring partitions {restoring:?}"),
            }
        }
    }
}

impl LocalLookup for StateView {
    fn describe(&self, user_id: &str) -> Answer<UserView> {
        self.lookup(|e| e.describe(user_id))
    }

    fn export(&self, user_id: &str) -> Answer<UserExport> {
        self.lookup(|e| e.export(user_id))
    }

    fn partition_count(&self) -> Option<usize> {
        lock(&self.inner).topic_partitions
    }
}
