//! `POST /api/auth` with the shared secret, once per user: the session cookie lands in the
//! user's own cookie jar, as in a browser. A `guest-upload` user then creates its guest link
//! (`POST /api/guest-links`), kept in the user's session data as a [`GuestLink`].

use goose::goose::{GooseMethod, GooseUser, TransactionResult};
use reqwest::StatusCode;

use super::{Finished, Request, Sent, finish, send};
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
    let login = Request {
        method: GooseMethod::Post,
        path: "/api/auth",
        name: "/api/auth",
        expect: None,
    };
    let secret = serde_json::json!({ "sharedSecret": state.config.secret });
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, login, |b| b.json(&secret)).await?;
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
    finish(state, user, &mut metric, done, result).await?;
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
    let create = Request {
        method: GooseMethod::Post,
        path: "/api/guest-links",
        name: "/api/guest-links",
        expect: None,
    };
    let body = serde_json::json!({ "label": label });
    let Sent {
        mut metric,
        response,
        started,
    } = send(state, user, create, |b| b.json(&body)).await?;
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
    finish(state, user, &mut metric, done, result).await
}
