//! The study state machine: the states of `studies.state` and which moves between them are
//! allowed. Every change of a study's state goes through [`transition`] or [`fail`], which
//! check the move in SQL (`WHERE state = ANY(allowed)`), so a stale or duplicate message
//! can never move a study backwards (a redelivered `imaging` message cannot turn an
//! `anonymised` study back into `retrieving`).
//!
//! ```text
//!  queued ──> retrieving ──> retrieved ──> anonymised ──> exported
//!    ^  ^         │  (not in the VNA: queued for the PACS)   │
//!    │  └─────────┘                                          │
//!    │      retrieved ──> queued (raw instances gone: retrieve again)
//!  failed <── any stage before exported; failed ──> queued | anonymised (pixl retry-failed)
//! ```

use sqlx::PgConnection;

use crate::ids::StudyId;
use crate::queues::WorkQueue;

/// A study's state (`study_state` in Postgres).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StudyState {
    Queued,
    Retrieving,
    Retrieved,
    Anonymised,
    Exported,
    Failed,
}

impl StudyState {
    pub const ALL: [StudyState; 6] = [Self::Queued, Self::Retrieving, Self::Retrieved, Self::Anonymised, Self::Exported, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrieving => "retrieving",
            Self::Retrieved => "retrieved",
            Self::Anonymised => "anonymised",
            Self::Exported => "exported",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// The states a study may move to `self` from (failures: see [`fail`]).
    pub fn allowed_from(self) -> &'static [StudyState] {
        use StudyState::*;
        match self {
            // Rerouted to the PACS, retried after a failure, or retrieved again because
            // its raw instances are gone.
            Queued => &[Retrieving, Failed, Retrieved],
            // A redelivery after a crash finds the study still `retrieving`.
            Retrieving => &[Queued, Retrieving],
            Retrieved => &[Retrieving],
            // `pixl retry-failed` resumes a failed export at the export queue.
            Anonymised => &[Retrieved, Failed],
            Exported => &[Anonymised],
            Failed => &[Queued, Retrieving, Retrieved, Anonymised, Failed],
        }
    }

    /// Whether the study has passed `queue`'s stage (so a message of that queue about it
    /// has nothing left to do).
    pub fn is_past(self, queue: WorkQueue) -> bool {
        use StudyState::*;
        match queue {
            WorkQueue::ImagingPrimary | WorkQueue::ImagingSecondary => matches!(self, Retrieved | Anonymised | Exported),
            WorkQueue::Anonymise => matches!(self, Anonymised | Exported),
            WorkQueue::Export => self == Exported,
            // The EHR has a state of its own (`studies.ehr_state`).
            WorkQueue::Ehr => false,
        }
    }
}

/// The states in which a study's next step is a message on `queue`: the studies that a
/// failure on that queue may mark failed, and that purging it leaves without a message.
pub fn waiting_on(queue: WorkQueue) -> &'static [StudyState] {
    match queue {
        WorkQueue::ImagingPrimary | WorkQueue::ImagingSecondary => &[StudyState::Queued, StudyState::Retrieving],
        WorkQueue::Anonymise => &[StudyState::Retrieved],
        WorkQueue::Export => &[StudyState::Anonymised],
        // The EHR has a state of its own (`studies.ehr_state`).
        WorkQueue::Ehr => &[],
    }
}

fn names(states: &[StudyState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// What a transition writes besides the state. `None` leaves a column as it is.
#[derive(Debug, Default, Clone)]
pub struct Changes<'a> {
    pub resolved_study_uid: Option<&'a str>,
    pub pseudo_study_uid: Option<&'a str>,
    pub pseudo_patient_id: Option<&'a str>,
    pub deid_summary: Option<&'a str>,
    pub exported_to: Option<&'a str>,
}

/// Moves study `id` to `to` if its state allows it; `Ok(false)` when it did not (another
/// delivery or process moved it meanwhile). Entering any state but `failed` clears the
/// failure reason; entering `exported` stamps `exported_at`; a state reached by progress
/// resets the attempt count.
pub async fn transition(conn: &mut PgConnection, id: StudyId, to: StudyState, changes: &Changes<'_>) -> Result<bool, sqlx::Error> {
    debug_assert!(to != StudyState::Failed, "failures go through fail()");
    let exported_at = if to == StudyState::Exported { "now()" } else { "exported_at" };
    let sql = format!(
        "UPDATE studies SET state = $2::study_state, failure_reason = NULL, failed_queue = NULL, attempts = 0, updated_at = now(),
                exported_at = {exported_at},
                resolved_study_uid = COALESCE($4, resolved_study_uid), pseudo_study_uid = COALESCE($5, pseudo_study_uid),
                pseudo_patient_id = COALESCE($6, pseudo_patient_id), deid_summary = COALESCE($7, deid_summary),
                exported_to = COALESCE($8, exported_to)
         WHERE id = $1 AND state::text = ANY($3)"
    );
    let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .bind(to.as_str())
        .bind(names(to.allowed_from()))
        .bind(changes.resolved_study_uid)
        .bind(changes.pseudo_study_uid)
        .bind(changes.pseudo_patient_id)
        .bind(changes.deid_summary)
        .bind(changes.exported_to)
        .execute(conn)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Marks study `id` failed on `queue` with `reason` (written by pixl, no identifier), if it
/// is still at that queue's stage; a study that got past it meanwhile (a duplicate delivery
/// failing after the original succeeded) is left alone. `Ok(false)` when nothing changed.
pub async fn fail(conn: &mut PgConnection, id: StudyId, queue: WorkQueue, reason: &str) -> Result<bool, sqlx::Error> {
    if queue == WorkQueue::Ehr {
        // The EHR's own state; a study whose EHR row was stored meanwhile is left alone.
        let updated = sqlx::query(
            "UPDATE studies SET ehr_state = 'failed', ehr_failure_reason = $2, updated_at = now()
             WHERE id = $1 AND (ehr_state IS NULL OR ehr_state = 'failed')",
        )
        .bind(id.0)
        .bind(reason)
        .execute(conn)
        .await?;
        return Ok(updated.rows_affected() == 1);
    }
    let mut allowed = waiting_on(queue).to_vec();
    allowed.push(StudyState::Failed);
    let updated = sqlx::query(
        "UPDATE studies SET state = 'failed', failure_reason = $2, failed_queue = $3, updated_at = now()
         WHERE id = $1 AND state::text = ANY($4)",
    )
    .bind(id.0)
    .bind(reason)
    .bind(queue.base_name())
    .bind(names(&allowed))
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Marks failed, with `reason`, every study whose next message was on `queue` (after the
/// queue was purged); returns how many.
pub async fn fail_waiting(conn: &mut PgConnection, queue: WorkQueue, reason: &str) -> Result<u64, sqlx::Error> {
    if queue == WorkQueue::Ehr {
        let updated =
            sqlx::query("UPDATE studies SET ehr_state = 'failed', ehr_failure_reason = $1, updated_at = now() WHERE ehr_state IS NULL AND ehr_wanted")
                .bind(reason)
                .execute(conn)
                .await?;
        return Ok(updated.rows_affected());
    }
    let updated = sqlx::query(
        "UPDATE studies SET state = 'failed', failure_reason = $2, failed_queue = $1, updated_at = now()
         WHERE waiting_queue = $1 AND state::text = ANY($3)",
    )
    .bind(queue.base_name())
    .bind(reason)
    .bind(names(waiting_on(queue)))
    .execute(conn)
    .await?;
    Ok(updated.rows_affected())
}

/// The state of study `id`, if it exists.
pub async fn current(conn: &mut PgConnection, id: StudyId) -> Result<Option<StudyState>, sqlx::Error> {
    let state: Option<String> = sqlx::query_scalar("SELECT state::text FROM studies WHERE id = $1").bind(id.0).fetch_optional(conn).await?;
    Ok(state.as_deref().and_then(StudyState::parse))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_state_moves_backwards_past_its_data() {
        use StudyState::*;
        // Nothing leaves `exported`; nothing reaches `exported` except from `anonymised`.
        for state in StudyState::ALL {
            assert!(!state.allowed_from().contains(&Exported), "{state:?} from exported");
        }
        assert_eq!(Exported.allowed_from(), [Anonymised]);
        // A stale imaging message cannot undo de-identification.
        assert!(!Retrieving.allowed_from().contains(&Anonymised));
        assert!(!Retrieving.allowed_from().contains(&Retrieved));
        assert_eq!(StudyState::parse("anonymised"), Some(Anonymised));
        assert_eq!(StudyState::parse("lost"), None);
        assert!(Anonymised.is_past(WorkQueue::ImagingPrimary));
        assert!(!Anonymised.is_past(WorkQueue::Export));
    }
}
