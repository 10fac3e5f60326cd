//! `POST /api/auth` with the shared secret, once per user: the session cookie lands in the
//! user's own cookie jar, as in a browser. A `guest-upload` user then creates its guest link
//! (`POST /api/guest-links`), kept in the user's session data as a [`GuestLink`].

use std::time::Instant;

use goose::goose::{GooseMethod, GooseRequest, GooseResponse, GooseUser, TransactionResult};
use reqwest::StatusCode;

use super::{Finished, finish};
use crate::config::Scenario;
use crate::http::{Failure, read_id, status_failure};
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
    let logged_in = result.is_ok();
    finish(state, user, &mut request, done, result).await?;
    if logged_in && scenario == Scenario::GuestUpload {
        create_guest_link(state, user).await?;
    }
    Ok(())
}

/// The id of the guest link a `guest-upload` user uploads through.
#[derive(Debug, Clone)]
pub(super) struct GuestLink(pub String);

async fn create_guest_link(state: &RunState, user: &mut GooseUser) -> TransactionResult {
    let label = format!("loadgen guest-upload user {}", user.weighted_users_index);
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/guest-links")?
        .json(&serde_json::json!({ "label": label }))
        .timeout(state.config.timeout);
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name("/api/guest-links")
        .build();
    let started = Instant::now();
    let GooseResponse {
        mut request,
        response,
    } = user.request(request).await?;
    let result = match response {
        Ok(mut response) if response.status() == StatusCode::OK => {
            read_id(&mut response, &state.cancel, "guest link").await
        }
        Ok(response) => Err(status_failure(response, &state.cancel).await),
        Err(e) => Err(Failure::transport(&e)),
    };
    let result = result.map(|id| user.set_session_data(GuestLink(id)));
    let done = Finished {
        scenario: Scenario::GuestUpload,
        kind: Kind::Login,
        started,
        bytes_sent: 0,
        bytes_received: 0,
    };
    finish(state, user, &mut request, done, result).await
}
