//! Alerts whose outcome window is still open: what the engine watches for a user's return,
//! and the outcome event it becomes when the user returns or the window ends.

use std::sync::Arc;

use crate::alert::{self, AlertId, Outcome, OutcomeEvent, ReturnKind};
use crate::policy::ExperimentArm;
use crate::Millis;

/// An alert being watched for the user's return.
#[derive(Debug, Clone)]
pub(super) struct PendingOutcome {
    pub(super) alert_id: AlertId,
    pub(super) arm: ExperimentArm,
    pub(super) alerted_at: Millis,
    pub(super) window_end: Millis,
    /// Shared by every alert of one model.
    pub(super) model_version: Arc<str>,
}

impl PendingOutcome {
    pub(super) fn resolve(
        self,
        user_id: &str,
        returned: Option<(Millis, ReturnKind)>,
    ) -> OutcomeEvent {
        OutcomeEvent {
            schema_version: alert::OUTCOME_SCHEMA_VERSION,
            alert_id: self.alert_id,
            user_id: user_id.to_string(),
            experiment_arm: self.arm,
            alerted_at: alert::rfc3339(self.alerted_at),
            window_ends_at: alert::rfc3339(self.window_end),
            outcome: if returned.is_some() {
                Outcome::WonBack
            } else {
                Outcome::NotReturned
            },
            returned_at: returned.map(|(t, _)| alert::rfc3339(t)),
            returned_by: returned.map(|(_, k)| k),
            model_version: self.model_version.to_string(),
        }
    }
}
