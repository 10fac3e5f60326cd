//! `delete`: `DELETE /api/entry/{id}` (share-server answers 204 No Content), then
//! `GET /api/entry/{id}`, which must answer 404: an entry still found is a failure.
//!
//! Entries come from `known_uploads` and this run's uploads in order, each claimed by one user
//! only, so no entry is deleted twice. With none left, the user uploads one entry of `size` and
//! deletes that.

use goose::goose::{GooseMethod, GooseUser, TransactionError, TransactionResult};
use reqwest::StatusCode;

use super::{Finished, Request, Sent, finish, send, upload};
use crate::config::Scenario;
use crate::http::{Failure, status_failure};
use crate::recorder::Kind;
use crate::run_state::RunState;

pub(super) async fn transaction(state: &RunState, user: &mut GooseUser) -> TransactionResult {
    let record = match state.claim_for_deletion() {
        Some(record) => record,
        None => match upload::upload(state, user, Scenario::Delete).await? {
            Some(record) => record,
            None => return Ok(()),
        },
    };
    delete_confirmed(state, user, record.id, Scenario::Delete).await
}

/// Deletes `id`, checks it is gone, and records it as deleted; requests are recorded under
/// `scenario`. Each step returns an error (already recorded) when it fails, so only a deletion
/// that was answered and then confirmed is counted.
pub(super) async fn delete_confirmed(
    state: &RunState,
    user: &mut GooseUser,
    id: String,
    scenario: Scenario,
) -> TransactionResult {
    request(state, user, &id, Step::Delete, scenario).await?;
    request(state, user, &id, Step::CheckGone, scenario).await?;
    state.recorder.deleted(id);
    Ok(())
}

#[derive(Clone, Copy)]
enum Step {
    Delete,
    CheckGone,
}

impl Step {
    fn method(self) -> GooseMethod {
        match self {
            Step::Delete => GooseMethod::Delete,
            Step::CheckGone => GooseMethod::Get,
        }
    }

    /// The status share-server answers when all is well (`handlers::entries::delete`).
    fn expected(self) -> StatusCode {
        match self {
            Step::Delete => StatusCode::NO_CONTENT,
            Step::CheckGone => StatusCode::NOT_FOUND,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Step::Delete => Kind::Delete,
            Step::CheckGone => Kind::DeleteCheck,
        }
    }
}

async fn request(
    state: &RunState,
    user: &mut GooseUser,
    id: &str,
    step: Step,
    scenario: Scenario,
) -> Result<(), Box<TransactionError>> {
    let path = format!("/api/entry/{id}");
    let request = Request {
        method: step.method(),
        path: &path,
        name: "/api/entry/{id}",
        expect: Some(step.expected()),
    };
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, request, |b| b).await?;
    let result = match response {
        Ok(response) if response.status() == step.expected() => Ok(()),
        Ok(response) if matches!(step, Step::CheckGone) && response.status().is_success() => {
            Err(Failure::Protocol(format!(
                "the entry is still there after DELETE answered {} (GET answered {})",
                Step::Delete.expected(),
                response.status()
            )))
        }
        Ok(response) => Err(status_failure(response, &state.cancel).await),
        Err(e) => Err(Failure::transport(&e)),
    };
    let done = Finished {
        scenario,
        kind: step.kind(),
        started,
        bytes_sent: 0,
        bytes_received: 0,
    };
    finish(state, user, &mut metric, done, result).await
}
