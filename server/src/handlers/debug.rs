//! The debug listener: stats, metrics, heap profiles, allocator purge.
//! Served only on `--debug-listen` (loopback by default), never on the main port.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::allocator::{self, AllocatorStats, HeapProfileError};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use crate::stats::{self, Stats};

async fn snapshot(state: &AppState) -> Result<Stats, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || stats::collect(&state, state.cgroup.as_deref()))
        .await
        .map_err(|_| ApiError::Internal("stats collection panicked".into()))
}

/// `GET /debug/stats`
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(snapshot(&state).await?))
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = snapshot(&state).await?;
    let text = metrics::render(&stats)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /debug/pprof/heap`: gzipped pprof protobuf of the live heap.
pub async fn pprof_heap() -> Response {
    match allocator::heap_profile().await {
        Ok(profile) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"heap.pb.gz\"",
                ),
            ],
            profile,
        )
            .into_response(),
        Err(e @ HeapProfileError::NotBuiltIn) => (
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// `POST /debug/allocator/purge`: returns unused dirty pages to the OS.
pub async fn purge() -> Response {
    let resident = || match allocator::stats() {
        AllocatorStats::Jemalloc { resident_bytes, .. } => Some(resident_bytes),
        _ => memstat::process::read(None).ok().map(|p| p.vm_rss_bytes),
    };
    let before = resident();
    match allocator::purge() {
        None => (
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({ "error": format!("the {} allocator cannot purge", allocator::NAME) })),
        )
            .into_response(),
        Some(Err(e)) => ApiError::Internal(e).into_response(),
        Some(Ok(())) => Json(json!({
            "allocator": allocator::NAME,
            "resident_before_bytes": before,
            "resident_after_bytes": resident(),
        }))
        .into_response(),
    }
}
