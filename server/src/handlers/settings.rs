//! `GET`/`PUT /api/settings`: the default expiration of new uploads.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::settings::{Settings, SettingsJson};
use crate::state::AppState;
use crate::storage::settings;

pub async fn get(
    State(state): State<AppState>,
    _auth: Authenticated,
) -> Result<Json<SettingsJson>, ApiError> {
    Ok(Json(state.db.run(settings::get).await?.to_json()))
}

/// JSON `{"defaultExpirationDays": 1..3650}` or `{"defaultNeverExpire": true}`;
/// answers the saved settings.
pub async fn put(
    State(state): State<AppState>,
    _auth: Authenticated,
    body: Result<Json<SettingsJson>, JsonRejection>,
) -> Result<Json<SettingsJson>, ApiError> {
    let Json(json) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON with defaultExpirationDays or defaultNeverExpire: {}",
            e.body_text()
        ))
    })?;
    let new = Settings::from_json(&json)?;
    state.db.run(move |s| settings::put(s, &new)).await?;
    Ok(Json(new.to_json()))
}
