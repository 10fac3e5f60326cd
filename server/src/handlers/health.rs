//! Liveness for the rig and for Fly health checks.

use axum::extract::State;

use crate::error::ApiError;
use crate::state::AppState;

/// 200 "ok" when the database answers a query.
pub async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .db
        .run(|s| crate::storage::migrations::current_version(&*s.reader()?))
        .await?;
    Ok("ok\n")
}
