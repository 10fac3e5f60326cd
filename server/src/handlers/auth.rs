//! `POST /api/auth` (log in) and `DELETE /api/auth` (log out).

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::handlers::{bad_json, client_ip, is_https};
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
    request: Request,
) -> Result<Response, ApiError> {
    // Before anything else, the body included, so a throttled client learns
    // nothing and costs no more than its headers.
    let ip = client_ip(peer, &headers, state.behind_proxy)
        .parse()
        .unwrap_or(peer.ip());
    state
        .login_limiter
        .attempt(ip)
        .map_err(|wait| ApiError::TooManyAttempts { retry_after: wait })?;
    let Json(login) = Json::<Login>::from_request(request, &state)
        .await
        .map_err(|e| bad_json(e, r#"JSON {"sharedSecret": "..."}"#))?;
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
