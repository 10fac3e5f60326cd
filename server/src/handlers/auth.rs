//! `POST /api/auth` (log in), `DELETE /api/auth` (log out) and
//! `DELETE /api/sessions` (log out everywhere).

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::{Authenticated, SESSION_LIFETIME, cookie};
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
    let token = state.sessions.start(&state.db).await?;
    let secure = is_https(&headers, state.behind_proxy);
    Ok((
        [(
            header::SET_COOKIE,
            cookie::set(&token, SESSION_LIFETIME.as_secs(), secure),
        )],
        Json(serde_json::json!({ "ok": true })),
    )
        .into_response())
}

/// Ends the session of the request's cookie (a copy of it, captured
/// anywhere, is then refused too) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.sessions.end(&state.db, &headers).await?;
    Ok(cleared(&state, &headers))
}

/// Ends every session, this one included.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    _auth: Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ended = state.sessions.end_all(&state.db).await?;
    tracing::info!(ended, "logged out everywhere");
    Ok(cleared(&state, &headers))
}

fn cleared(state: &AppState, headers: &HeaderMap) -> Response {
    let secure = is_https(headers, state.behind_proxy);
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie::clear(secure))],
    )
        .into_response()
}
