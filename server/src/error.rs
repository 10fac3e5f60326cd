//! The HTTP face of errors: every failure becomes a status and a JSON body
//! `{"error": "..."}` that says what is wrong. Server faults are logged here
//! with a request id; the client gets only the id (never SQLite's or the
//! OS's text, which can tell an attacker about the server). Client mistakes
//! are not logged.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::entry::ValidationError;
use crate::guest_links::Refusal;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not logged in: POST /api/auth with the shared secret first")]
    Unauthorized,
    #[error("the shared secret is wrong")]
    WrongSecret,
    #[error(
        "too many login attempts from this address; try again in {} s",
        retry_after_secs(*retry_after)
    )]
    TooManyAttempts { retry_after: std::time::Duration },
    /// One client holds too many requests or connections at once.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("not found")]
    NotFound,
    /// Allowed for nobody right now: a disabled or used-up guest link, a
    /// cross-origin request.
    #[error("{0}")]
    Forbidden(String),
    /// Gone for good: an expired guest link, a file past its download limit.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the requested range is outside the file ({size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    #[error("the server's disk is full; the upload was discarded")]
    InsufficientStorage,
    #[error("the server is shutting down; try again shortly")]
    ShuttingDown,
    /// The memory budget stayed full for the whole wait.
    #[error(transparent)]
    Busy(#[from] crate::budget::BudgetExhausted),
    /// A request body slower than `--min-body-rate`.
    #[error(transparent)]
    TooSlow(#[from] crate::serve::BodyTooSlow),
    /// A server fault; the message is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound,
            StorageError::GuestLinkRefused(r) => r.into(),
            e if e.is_disk_full() => {
                tracing::error!(error = %e, "disk full");
                ApiError::InsufficientStorage
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::upload::UploadError> for ApiError {
    fn from(e: crate::upload::UploadError) -> Self {
        match e {
            crate::upload::UploadError::Storage(e) => e.into(),
            crate::upload::UploadError::Busy(e) => e.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Expired(_) => ApiError::Gone(r.to_string()),
            Refusal::Disabled | Refusal::UploadLimit(_) => ApiError::Forbidden(r.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::WrongSecret => StatusCode::UNAUTHORIZED,
            ApiError::TooManyAttempts { .. } | ApiError::TooManyRequests(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::ShuttingDown | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(msg) => {
                let request_id = request_id();
                tracing::error!(%request_id, error = %msg, "request failed");
                serde_json::json!({
                    "error": format!("internal error (request id {request_id}); the server's log says more"),
                    "requestId": request_id,
                })
            }
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { size } = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        let retry_after = match &self {
            ApiError::TooManyAttempts { retry_after } => Some(*retry_after),
            ApiError::Busy(busy) => Some(busy.retry_after),
            ApiError::TooManyRequests(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        };
        if let Some(wait) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        response
    }
}

/// A random id tying an error answer to its log line (64 bits: unique
/// enough to find in a log, not a secret).
pub fn request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Whole seconds to wait, rounded up (Retry-After has no fractions; 0 would invite an instant retry).
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_answer_an_id_not_the_cause() {
        let response =
            ApiError::Internal("reading settings: no such table: settings".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msg = body["error"].as_str().unwrap();
        let id = body["requestId"].as_str().unwrap();
        assert!(msg.contains(&format!("request id {id}")), "{msg}");
        assert!(!msg.contains("settings"), "{msg}");
        assert_eq!(id.len(), 16);
    }
}
