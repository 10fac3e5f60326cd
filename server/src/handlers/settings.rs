//! `GET`/`PUT /api/settings`: the default expiration of new uploads.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::handlers::bad_json;
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
    let Json(json) =
        body.map_err(|e| bad_json(e, "JSON with defaultExpirationDays or defaultNeverExpire"))?;
    let new = Settings::from_json(&json)?;
    state.db.run(move |s| settings::put(s, &new)).await?;
    Ok(Json(new.to_json()))
}
