//! `churn`: what a share server sees over a day, compressed for soak runs. Each iteration
//! uploads an entry that expires `expire_after` later, downloads it whole and one random range
//! (both verified), then deletes it with probability `delete_fraction`; the entries left expire
//! and the server's garbage collection removes them. Memory must stay flat through all of it.

use std::time::Instant;

use goose::goose::{
    GooseMethod, GooseRequest, GooseResponse, GooseUser, TransactionError, TransactionResult,
};
use reqwest::StatusCode;

use super::{Finished, download, finish, upload};
use crate::config::Scenario;
use crate::content::{SplitMix, purpose};
use crate::http::{Failure, status_failure};
use crate::recorder::Kind;
use crate::run_state::RunState;
use crate::summary::UploadRecord;

pub(super) async fn transaction(state: &RunState, user: &mut GooseUser) -> TransactionResult {
    let Some(record) = upload::upload(state, user, Scenario::Churn).await? else {
        return Ok(());
    };
    let mut rng = SplitMix::derive(
        state.config.seed,
        purpose::CHURN,
        user.weighted_users_index,
        user.get_iterations(),
    );
    let mut first_error = download::whole(state, user, &record, Scenario::Churn)
        .await
        .err();
    if record.size > 0 && !state.stopped() {
        let start = rng.below(record.size);
        let len = 1 + rng.below(state.config.range_size.bytes().min(record.size - start));
        if let Err(e) = download::range(
            state,
            user,
            &record,
            start,
            start + len - 1,
            Scenario::Churn,
        )
        .await
        {
            first_error.get_or_insert(e);
        }
    }
    // delete_fraction in [0, 1] (validated): a draw below it in millionths deletes.
    let deleting = rng.below(1_000_000) < (state.config.delete_fraction * 1e6) as u64;
    if deleting
        && !state.stopped()
        && let Err(e) = delete(state, user, &record).await
    {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}

/// `DELETE /api/entry/{id}`, expecting 204.
async fn delete(
    state: &RunState,
    user: &mut GooseUser,
    record: &UploadRecord,
) -> Result<(), Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Delete, &format!("/api/entry/{}", record.id))?
        .timeout(state.config.timeout);
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name("/api/entry/{id} (delete)")
        .expect_status_code(204)
        .build();
    let started = Instant::now();
    let GooseResponse {
        mut request,
        response,
    } = user.request(request).await?;
    let result = match response {
        Ok(response) if response.status() == StatusCode::NO_CONTENT => Ok(()),
        Ok(response) => Err(status_failure(response, &state.cancel).await),
        Err(e) => Err(Failure::transport(&e)),
    };
    let done = Finished {
        scenario: Scenario::Churn,
        kind: Kind::Delete,
        started,
        bytes_sent: 0,
        bytes_received: 0,
    };
    finish(state, user, &mut request, done, result).await
}
