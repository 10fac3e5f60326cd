//! `POST /api/auth` with the shared secret, once per user: the session cookie lands in the
//! user's own cookie jar, as in a browser.

use std::time::Instant;

use goose::goose::{GooseMethod, GooseRequest, GooseResponse, GooseUser, TransactionResult};
use reqwest::StatusCode;

use super::{Finished, finish};
use crate::config::Scenario;
use crate::http::{Failure, status_failure};
use crate::preflight::Fatal;
use crate::recorder::Kind;
use crate::run_state::RunState;

pub(super) async fn transaction(
    state: &RunState,
    user: &mut GooseUser,
    scenario: Scenario,
) -> TransactionResult {
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/auth")?
        .json(&serde_json::json!({ "sharedSecret": state.config.secret }))
        .timeout(state.config.timeout);
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name("/api/auth")
        .build();
    let started = Instant::now();
    let GooseResponse {
        mut request,
        response,
    } = user.request(request).await?;
    let result = match response {
        Ok(response) if response.status() == StatusCode::OK => Ok(()),
        Ok(response) => {
            if response.status() == StatusCode::UNAUTHORIZED {
                // The secret changed since the check before the run: nothing will work.
                state.stop(Fatal::WrongSecret);
            }
            Err(status_failure(response, &state.cancel).await)
        }
        Err(e) => Err(Failure::transport(&e)),
    };
    let done = Finished {
        scenario,
        kind: Kind::Login,
        started,
        bytes_sent: 0,
        bytes_received: 0,
    };
    finish(state, user, &mut request, done, result).await
}
