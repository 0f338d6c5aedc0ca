//! What a member does when it owns no partition while input waits that nobody consumes.
//!
//! A member that joins while its killed predecessor is still registered (a restart within the
//! session timeout) can be handed an empty assignment by a coordinator that then keeps the dead
//! member's assignment when that member expires: Tansu 0.6.0 leaves the group "formed" with the
//! dead member as leader and answers the survivor's rejoin with the same empty assignment, and
//! librdkafka, seeing a stable group, waits forever. Static membership (`group.instance.id`)
//! would let the restarted member take over its predecessor's identity, but it needs a stable,
//! unique id per replica that a plain deployment does not have.
//!
//! So the member watches for the symptom itself: it owns nothing, and some partition of the
//! input has lag whose committed offset has not moved for a whole window (longer than a session
//! timeout, so a dead member has expired by then). That is input nobody consumes: the member
//! rejoins (leave + join, which makes the broker drop expired members and form the group anew).
//! If it still owns nothing after the configured bound while that lag keeps standing, it
//! reports itself not alive (`/healthz`) so an orchestrator restarts it. A spare member in a
//! group with more members than partitions sees no standing lag and just waits.

use std::time::{Duration, Instant};

use super::broker_view::InputView;

/// The watch's bounds.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    /// How long committed offsets must stand still with lag before rejoining: longer than the
    /// session timeout, so whoever owned those partitions and died has expired.
    pub window: Duration,
    /// How long a member may own nothing while lag stands before it reports itself not alive;
    /// `None` never.
    pub unhealthy_after: Option<Duration>,
}

impl IdleLimits {
    /// The window for a group session timeout: twice the timeout (a dead member expires after
    /// one), at least 10 s.
    pub fn for_session_timeout(
        session_timeout: Duration,
        unhealthy_after: Option<Duration>,
    ) -> Self {
        IdleLimits {
            window: (session_timeout * 2).max(Duration::from_secs(10)),
            unhealthy_after,
        }
    }
}

/// What the pipeline should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleVerdict {
    /// Leave and rejoin the group.
    pub rejoin: bool,
    /// Partitions with standing lag at the last comparison (0 when owning partitions).
    pub stalled_partitions: usize,
    /// False once the member has owned nothing for longer than allowed while lag stands.
    pub alive: bool,
}

/// Tracks one member's time without partitions.
#[derive(Debug)]
pub struct IdleWatch {
    limits: IdleLimits,
    idle_since: Option<Instant>,
    /// The view a window started from.
    baseline: Option<InputView>,
    /// Partitions with standing lag at the last completed window.
    stalled: usize,
}

impl IdleWatch {
    pub fn new(limits: IdleLimits) -> Self {
        IdleWatch {
            limits,
            idle_since: None,
            baseline: None,
            stalled: 0,
        }
    }

    /// Called regularly with the number of input partitions this member owns and the latest
    /// broker view (if any).
    pub fn update(&mut self, owned: usize, view: Option<&InputView>, now: Instant) -> IdleVerdict {
        if owned > 0 {
            *self = IdleWatch::new(self.limits);
            return IdleVerdict {
                alive: true,
                ..IdleVerdict::default()
            };
        }
        let idle_since = *self.idle_since.get_or_insert(now);
        let mut rejoin = false;
        if let Some(view) = view.filter(|v| v.at >= idle_since) {
            match &self.baseline {
                None => self.baseline = Some(view.clone()),
                Some(base) if view.at.duration_since(base.at) >= self.limits.window => {
                    self.stalled = standing_lag(base, view);
                    rejoin = self.stalled > 0;
                    self.baseline = Some(view.clone());
                }
                Some(_) => {}
            }
        }
        let overdue = self
            .limits
            .unhealthy_after
            .is_some_and(|limit| now.duration_since(idle_since) >= limit);
        IdleVerdict {
            rejoin,
            stalled_partitions: self.stalled,
            alive: !(overdue && self.stalled > 0),
        }
    }
}

/// Partitions with lag in `now` whose committed offset is the same as in `before`.
fn standing_lag(before: &InputView, now: &InputView) -> usize {
    now.partitions
        .iter()
        .filter(|(p, view)| {
            view.lag() > 0
                && before
                    .partitions
                    .get(p)
                    .is_some_and(|b| b.committed == view.committed)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::broker_view::PartitionView;

    const WINDOW: Duration = Duration::from_secs(12);

    fn view(at: Instant, committed: &[i64], high: i64) -> InputView {
        InputView {
            at,
            partitions: committed
                .iter()
                .enumerate()
                .map(|(p, &c)| {
                    (
                        p as i32,
                        PartitionView {
                            low: 0,
                            high,
                            committed: c,
                        },
                    )
                })
                .collect(),
        }
    }

    fn watch(unhealthy_after: Option<Duration>) -> IdleWatch {
        IdleWatch::new(IdleLimits {
            window: WINDOW,
            unhealthy_after,
        })
    }

    #[test]
    fn rejoins_after_a_window_of_lag_nobody_consumes_then_reports_not_alive() {
        let t0 = Instant::now();
        let mut w = watch(Some(Duration::from_secs(30)));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!w.update(0, Some(&view(at(0), &[5, 7], 100)), at(0)).rejoin);
        let v = w.update(0, Some(&view(at(6), &[5, 7], 100)), at(6));
        assert!(!v.rejoin && v.alive, "{v:?}");
        let v = w.update(0, Some(&view(at(12), &[5, 7], 100)), at(12));
        assert!(v.rejoin && v.alive, "a whole window of standing lag: {v:?}");
        assert_eq!(v.stalled_partitions, 2);
        let v = w.update(0, Some(&view(at(12), &[5, 7], 100)), at(13));
        assert!(!v.rejoin, "once per window: {v:?}");
        let v = w.update(0, Some(&view(at(24), &[5, 7], 100)), at(24));
        assert!(v.rejoin && v.alive, "{v:?}");
        let v = w.update(0, Some(&view(at(24), &[5, 7], 100)), at(30));
        assert!(!v.alive, "idle past the bound with standing lag: {v:?}");
        let v = w.update(3, None, at(31));
        assert!(v.alive && !v.rejoin, "owning partitions again: {v:?}");
    }

    #[test]
    fn a_spare_member_beside_consuming_owners_stays_and_stays_alive() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = watch(Some(Duration::from_secs(20)));
        let mut committed = 10;
        for s in (0..120).step_by(2) {
            committed += 50;
            let v = w.update(0, Some(&view(at(s), &[committed, 100_000], 100_000)), at(s));
            assert!(!v.rejoin && v.alive, "at {s} s: {v:?}");
        }
        // Caught up: no lag at all, nothing to take over.
        let mut w = watch(Some(Duration::from_secs(20)));
        for s in (0..120).step_by(2) {
            let v = w.update(0, Some(&view(at(s), &[100, 100], 100)), at(s));
            assert!(!v.rejoin && v.alive, "at {s} s: {v:?}");
        }
    }

    #[test]
    fn no_view_from_the_broker_means_no_verdict() {
        let t0 = Instant::now();
        let mut w = watch(Some(Duration::from_secs(1)));
        for s in 0..60 {
            let v = w.update(0, None, t0 + Duration::from_secs(s));
            assert!(!v.rejoin && v.alive, "{v:?}");
        }
    }

    #[test]
    fn a_view_from_before_the_idle_time_is_not_a_baseline() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = watch(None);
        w.update(2, None, at(0));
        let old = view(at(1), &[5], 100);
        assert!(!w.update(0, Some(&old), at(2)).rejoin);
        assert!(
            !w.update(0, Some(&old), at(20)).rejoin,
            "still the old view"
        );
        assert!(!w.update(0, Some(&view(at(21), &[5], 100)), at(21)).rejoin);
        assert!(w.update(0, Some(&view(at(33), &[5], 100)), at(33)).rejoin);
    }
}
