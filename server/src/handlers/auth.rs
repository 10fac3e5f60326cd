//! `POST /api/auth` (log in) and `DELETE /api/auth` (log out).

use axum::Json;
use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::handlers::{client_ip, is_https};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    shared_secret: String,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Before anything else, so a throttled client learns nothing.
    let ip = client_ip(peer, &headers, state.behind_proxy)
        .parse()
        .unwrap_or(peer.ip());
    state
        .login_limiter
        .attempt(ip)
        .map_err(|wait| ApiError::TooManyAttempts { retry_after: wait })?;
    let Json(login) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON {{\"sharedSecret\": \"...\"}}: {}",
            e.body_text()
        ))
    })?;
    if !state.sessions.secret_matches(&login.shared_secret) {
        return Err(ApiError::WrongSecret);
    }
    state.login_limiter.succeeded(ip);
    let token = state.sessions.issue(crate::storage::now_millis());
    Ok((
        [(
            header::SET_COOKIE,
            state
                .sessions
                .cookie(&token, is_https(&headers, state.behind_proxy)),
        )],
        Json(serde_json::json!({ "ok": true })),
    )
        .into_response())
}

pub async fn logout(State(state): State<AppState>) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, state.sessions.clearing_cookie())],
    )
        .into_response()
}
