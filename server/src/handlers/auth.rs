//! `POST /api/auth` (log in) and `DELETE /api/auth` (log out).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    shared_secret: String,
}

pub async fn login(
    State(state): State<AppState>,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON {{\"sharedSecret\": \"...\"}}: {}",
            e.body_text()
        ))
    })?;
    if !state.sessions.secret_matches(&login.shared_secret) {
        return Err(ApiError::WrongSecret);
    }
    let token = state.sessions.issue(crate::storage::now_millis());
    Ok((
        [(header::SET_COOKIE, state.sessions.cookie(&token))],
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
