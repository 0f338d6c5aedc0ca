//! Model hot reload: a new artifact replaces the served model without a restart, so a retrained
//! model can be rolled out without dropping user state (which lives in memory) or events.
//!
//! A watcher task re-reads the model file on SIGHUP and, every `--model-poll-secs`, when the file
//! changed. A change is any difference in modification time, length or SHA-256 of the content;
//! the content hash catches swaps that keep time and size (a Kubernetes ConfigMap update replaces
//! a symlink, `cp -p` keeps the time), and metadata is read through symlinks. Polling is used
//! rather than inotify (`notify`): it sees symlink swaps of mounted volumes, costs one small read
//! every few seconds, and needs no platform-specific code.
//!
//! A new artifact is fully loaded and validated ([`Model::from_json_for`]: format, kind, trees,
//! every feature computed under the engine's windows, finite scaling, threshold) *before* it is
//! published through a `tokio::sync::watch` channel; the pipeline picks it up between two
//! messages. A bad artifact
//! (unreadable, not JSON, unknown feature, inconsistent) keeps the old model, is logged with the
//! reason and counted in `churnguard_model_reloads_total{result="error"}`. The same bad file is
//! reported once, not at every poll; a SIGHUP always retries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Model, ModelError};
use crate::features::Windows;
use crate::metrics::Metrics;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The initial model is refused: the service must not start without a valid model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Without the handler, SIGHUP would terminate the process instead of reloading.
    #[error("cannot listen for SIGHUP (model reload): {0}")]
    Signal(std::io::Error),
}

/// One observed state of the model file: what changes when the file is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFingerprint {
    /// Modification time of the file the path resolves to (through symlinks).
    pub modified: Option<SystemTime>,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the content read.
    pub sha256: [u8; 32],
}

impl FileFingerprint {
    /// Fingerprint of `bytes` read from a file with metadata `meta`.
    fn new(meta: &std::fs::Metadata, bytes: &[u8]) -> FileFingerprint {
        FileFingerprint {
            modified: meta.modified().ok(),
            len: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }
}

/// What a poll saw at the model path: a file, or why it could not be read. Remembered so that
/// a poll only acts on a change and a broken file is reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    File(FileFingerprint),
    Unreadable(String),
}

/// Reads the model file once: its bytes and fingerprint, or the read error. The bytes that are
/// fingerprinted are the bytes that get parsed, so a concurrent writer cannot slip in between.
fn read_file(path: &Path) -> Result<(Vec<u8>, FileFingerprint), ModelError> {
    let read_err = |source| ModelError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let bytes = std::fs::read(path).map_err(read_err)?;
    let fp = FileFingerprint::new(&meta, &bytes);
    Ok((bytes, fp))
}

/// Loads and validates the model at `path`, with the fingerprint of the bytes it came from.
/// The model is checked against the features of `windows` (the engine's).
pub fn load_with_fingerprint(
    path: &Path,
    windows: Windows,
) -> Result<(Model, FileFingerprint), ModelError> {
    let (bytes, fp) = read_file(path)?;
    let model = Model::from_json_for(&bytes, &path.display().to_string(), windows)?;
    Ok((model, fp))
}

/// What made the watcher look at the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// SIGHUP: always reload, even if the file looks unchanged.
    Signal,
    /// The poll timer: reload only if the file changed since it was last seen.
    Poll,
}

/// Result of one look at the model file.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Nothing changed since the last look (polls only).
    Unchanged,
    /// A valid artifact was loaded and published.
    Reloaded(Arc<Model>),
    /// The file is unusable; the served model stays.
    Refused(ModelError),
    /// The same unusable state as at the last look (polls only): already reported.
    StillRefused,
}

/// The watcher's state, separate from its task so it can be driven step by step in tests.
pub struct Watcher {
    path: PathBuf,
    tx: watch::Sender<Arc<Model>>,
    metrics: Arc<Metrics>,
    /// The engine's windows: a new artifact must use only features they compute.
    windows: Windows,
    last_seen: Observed,
    /// The last look refused the file (so an unchanged file is not reported again).
    last_refused: bool,
}

impl Watcher {
    /// Loads and validates the model at `path` (the service's startup model) and returns the
    /// watcher together with the receiver the pipeline reads models from.
    pub fn new(
        path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Watcher, watch::Receiver<Arc<Model>>), ModelError> {
        Watcher::new_for(path, metrics, Windows::default())
    }

    /// [`Watcher::new`] for an engine running `windows`: the startup model and every reload
    /// are checked against the features those windows compute.
    pub fn new_for(
        path: &Path,
        metrics: Arc<Metrics>,
        windows: Windows,
    ) -> Result<(Watcher, watch::Receiver<Arc<Model>>), ModelError> {
        let (model, fp) = load_with_fingerprint(path, windows)?;
        let (tx, rx) = watch::channel(Arc::new(model));
        Ok((
            Watcher {
                path: path.to_path_buf(),
                tx,
                metrics,
                windows,
                last_seen: Observed::File(fp),
                last_refused: false,
            },
            rx,
        ))
    }

    /// Looks at the file once: on a SIGHUP, or on a poll that sees a change, loads and validates
    /// it, and publishes it only if it is valid. Counts and logs the result.
    pub async fn check(&mut self, trigger: ReloadTrigger) -> ReloadOutcome {
        let path = self.path.clone();
        let origin = path.display().to_string();
        // A panic in a blocking task (not expected) is treated like an unreadable file.
        let joined = |join: tokio::task::JoinError| ModelError::Read {
            path: origin.clone(),
            source: std::io::Error::other(join.to_string()),
        };
        let read = tokio::task::spawn_blocking(move || read_file(&path))
            .await
            .unwrap_or_else(|j| Err(joined(j)));
        let observed = match &read {
            Ok((_, fp)) => Observed::File(fp.clone()),
            Err(e) => Observed::Unreadable(e.to_string()),
        };
        let same = observed == self.last_seen;
        self.last_seen = observed;
        if trigger == ReloadTrigger::Poll && same {
            return if self.last_refused {
                ReloadOutcome::StillRefused
            } else {
                ReloadOutcome::Unchanged
            };
        }
        let loaded = match read {
            Ok((bytes, _)) => {
                let o = origin.clone();
                let windows = self.windows;
                tokio::task::spawn_blocking(move || Model::from_json_for(&bytes, &o, windows))
                    .await
                    .unwrap_or_else(|j| Err(joined(j)))
            }
            Err(e) => Err(e),
        };
        let by = match trigger {
            ReloadTrigger::Signal => "SIGHUP",
            ReloadTrigger::Poll => "file change",
        };
        self.last_refused = loaded.is_err();
        match loaded {
            Ok(model) => {
                let model = Arc::new(model);
                let previous = self.tx.borrow().version().to_string();
                self.tx.send_replace(Arc::clone(&model));
                self.metrics.model_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    path = %origin, trigger = by, previous_version = %previous,
                    version = model.version(), kind = %model.artifact().kind,
                    threshold = model.threshold(), "model reloaded"
                );
                ReloadOutcome::Reloaded(model)
            }
            Err(e) => {
                self.metrics
                    .model_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(
                    path = %origin, trigger = by, error = %e,
                    kept_version = self.tx.borrow().version(),
                    "model reload refused; keeping the loaded model"
                );
                ReloadOutcome::Refused(e)
            }
        }
    }

    /// Runs until every receiver is gone: reloads on SIGHUP and, if `poll` is non-zero, checks
    /// the file every `poll`. Registers the SIGHUP handler before returning, so a SIGHUP sent
    /// once this returns reloads rather than terminates.
    pub fn spawn(mut self, poll: Duration) -> Result<JoinHandle<()>, ReloadError> {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(ReloadError::Signal)?;
        let polling = !poll.is_zero();
        let mut timer = tokio::time::interval(if polling {
            poll
        } else {
            Duration::from_secs(3600)
        });
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            path = %self.path.display(), poll_secs = poll.as_secs_f64(),
            "watching the model file (SIGHUP or a file change reloads it)"
        );
        Ok(tokio::spawn(async move {
            timer.tick().await; // the first tick is immediate; the file was just loaded
            #[cfg(unix)]
            let mut signals = true;
            loop {
                #[cfg(unix)]
                let trigger = tokio::select! {
                    s = hup.recv(), if signals => match s {
                        Some(()) => ReloadTrigger::Signal,
                        None => { signals = false; continue; }
                    },
                    _ = timer.tick(), if polling => ReloadTrigger::Poll,
                    _ = self.tx.closed() => return,
                };
                #[cfg(not(unix))]
                let trigger = tokio::select! {
                    _ = timer.tick(), if polling => ReloadTrigger::Poll,
                    _ = self.tx.closed() => return,
                };
                self.check(trigger).await;
            }
        }))
    }
}

/// Loads the startup model from `path`, starts the watcher task (SIGHUP; file polling every
/// `poll`, zero = off) and returns the channel the pipeline reads the current model from.
pub fn start(
    path: &Path,
    poll: Duration,
    metrics: Arc<Metrics>,
    windows: Windows,
) -> Result<(watch::Receiver<Arc<Model>>, JoinHandle<()>), ReloadError> {
    let (watcher, rx) = Watcher::new_for(path, metrics, windows)?;
    let task = watcher.spawn(poll)?;
    Ok((rx, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");

    fn reloads(m: &Metrics, result: &str) -> u64 {
        m.model_reloads.with_label_values(&[result]).get()
    }

    /// Writes `text` to `path` atomically (rename), as deploy tools do.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn with_threshold(threshold: f64) -> String {
        let mut m = Model::load(Path::new(MODEL)).unwrap();
        let mut a = m.artifact().clone();
        a.threshold = threshold;
        a.version = a.compute_version();
        m = Model::new(a, "test", Windows::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        m.save(&p).unwrap();
        std::fs::read_to_string(&p).unwrap()
    }

    #[tokio::test]
    async fn a_changed_file_is_published_and_a_bad_one_keeps_the_old_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::copy(MODEL, &path).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (mut w, mut rx) = Watcher::new(&path, Arc::clone(&metrics)).unwrap();
        let v0 = rx.borrow_and_update().version().to_string();

        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::Unchanged
        ));
        assert!(!rx.has_changed().unwrap());

        replace(&path, &with_threshold(0.9));
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::Reloaded(_)
        ));
        assert!(rx.has_changed().unwrap());
        let v1 = rx.borrow_and_update().version().to_string();
        assert_ne!(v0, v1);
        assert_eq!(rx.borrow().threshold(), 0.9);
        assert_eq!(reloads(&metrics, "ok"), 1);

        // Unknown feature: refused with the reason, the old model stays, reported once.
        let bad = with_threshold(0.9).replace("\"days_since_last_activity\"", "\"shoe_size\"");
        replace(&path, &bad);
        match w.check(ReloadTrigger::Poll).await {
            ReloadOutcome::Refused(e) => assert!(e.to_string().contains("shoe_size"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(!rx.has_changed().unwrap());
        assert_eq!(rx.borrow().version(), v1);
        assert_eq!(reloads(&metrics, "error"), 1);
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::StillRefused
        ));
        // A SIGHUP retries and reports again.
        assert!(matches!(
            w.check(ReloadTrigger::Signal).await,
            ReloadOutcome::Refused(_)
        ));
        assert_eq!(reloads(&metrics, "error"), 2);

        // A missing file is refused too; its return (same content as served) reloads.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::Refused(_)
        ));
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::StillRefused
        ));
        replace(&path, &with_threshold(0.9));
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::Reloaded(_)
        ));
        assert_eq!(rx.borrow_and_update().version(), v1);
        assert_eq!(reloads(&metrics, "ok"), 2);
        assert_eq!(reloads(&metrics, "error"), 3);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_swap_is_seen_even_with_the_same_size_and_time() {
        // A ConfigMap update: `model.json -> ..data/model.json`, `..data -> v1`, swapped to v2.
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        let (a, b) = (with_threshold(0.25), with_threshold(0.75));
        assert_eq!(a.len(), b.len(), "same size, so only the hash can tell");
        std::fs::write(v1.join("model.json"), &a).unwrap();
        std::fs::write(v2.join("model.json"), &b).unwrap();
        let mtime = std::fs::metadata(v1.join("model.json"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(v2.join("model.json"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("v1", &data).unwrap();
        let path = dir.path().join("model.json");
        std::os::unix::fs::symlink("..data/model.json", &path).unwrap();

        let metrics = Arc::new(Metrics::new());
        let (mut w, rx) = Watcher::new(&path, metrics).unwrap();
        assert_eq!(rx.borrow().threshold(), 0.25);
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("v2", &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert!(matches!(
            w.check(ReloadTrigger::Poll).await,
            ReloadOutcome::Reloaded(_)
        ));
        assert_eq!(rx.borrow().threshold(), 0.75);
    }
}
