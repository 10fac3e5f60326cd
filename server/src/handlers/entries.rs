//! The entry API: upload, read, list, edit, delete, download history.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Authenticated;
use crate::client::Client;
use crate::entry::{
    Entry, EntryId, Expiration, parse_max_downloads, validate_filename, validate_max_downloads,
    validate_note,
};
use crate::error::ApiError;
use crate::handlers::{UploadAnswer, bad_json, expected_multipart};
use crate::state::AppState;
use crate::storage::downloads::{self, DEFAULT_PAGE, HistoryPage, HistoryQuery, MAX_PAGE};
use crate::storage::entries::{self, EntryEdit};
use crate::storage::{now_millis, settings};
use crate::upload_form::{self, UploadRules};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadParams {
    expiration: Option<String>,
    max_downloads: Option<String>,
}

fn parse_id(id: &str) -> Result<EntryId, ApiError> {
    EntryId::parse(id).ok_or(ApiError::NotFound)
}

/// `POST /api/entry?expiration=&maxDownloads=`: multipart with a `file` part
/// and an optional `note`. Answers `{"id", "url"}`, or the bare URL for a
/// client that asks for `text/plain`.
pub async fn upload(
    State(state): State<AppState>,
    client: Client,
    _auth: Authenticated,
    headers: HeaderMap,
    params: Result<Query<UploadParams>, QueryRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(expected_multipart)?;
    let rules = match upload_rules(&state, params).await {
        Ok(rules) => rules,
        Err(e) => return Err(upload_form::refuse(multipart, &headers, e).await),
    };
    let id = upload_form::receive(&state, client, multipart, rules).await?;
    Ok(UploadAnswer::new(&state, &headers, &id, false).into_response())
}

/// The query's expiration (else the default setting) and download limit.
async fn upload_rules(
    state: &AppState,
    params: Result<Query<UploadParams>, QueryRejection>,
) -> Result<UploadRules, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let max_downloads = parse_max_downloads(params.max_downloads.as_deref().unwrap_or(""))?;
    let now = chrono::Utc::now();
    let expiration = match params.expiration.as_deref() {
        Some(s) if !s.is_empty() => Expiration::parse_ahead(s, now, state.min_expiration)?,
        _ => {
            let settings = state.db.run(settings::get).await?;
            Expiration::days_after(settings.default_expiration_days, now)
        }
    };
    Ok(UploadRules {
        expiration,
        max_downloads,
        guest: None,
    })
}

/// `GET /api/entry/{id}`
pub async fn get_entry(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Entry>, ApiError> {
    let id = parse_id(&id)?;
    let entry = state
        .db
        .run(move |s| entries::get(s, &id, now_millis()))
        .await?;
    Ok(Json(entry))
}

/// `GET /api/entries`: complete, unexpired entries, newest first.
pub async fn list(
    State(state): State<AppState>,
    _auth: Authenticated,
) -> Result<Json<Vec<Entry>>, ApiError> {
    Ok(Json(
        state.db.run(|s| entries::list(s, now_millis())).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EditRequest {
    filename: Option<String>,
    /// RFC 3339 time or "never".
    expiration: Option<String>,
    /// An empty string clears the note.
    note: Option<String>,
    /// A number, or `null` to remove the limit (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    max_downloads: Option<Option<serde_json::Value>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<serde_json::Value>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn edit_max_downloads(v: Option<&serde_json::Value>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(validate_max_downloads(n)?)),
            None => Err(ApiError::BadRequest(format!(
                "maxDownloads must be a whole number of at least 1, or null for no limit; got {v}"
            ))),
        },
    }
}

/// `PUT /api/entry/{id}`: JSON with any of `filename`, `expiration`, `note`, `maxDownloads`.
pub async fn edit(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Result<Json<Entry>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body.map_err(|e| {
        bad_json(
            e,
            "JSON with any of filename, expiration, note, maxDownloads",
        )
    })?;
    let filename = req.filename.as_deref().map(validate_filename).transpose()?;
    let edit = EntryEdit {
        content_type: filename
            .as_deref()
            .and_then(|f| mime_guess::from_path(f).first())
            .map(|m| m.essence_str().to_owned()),
        filename,
        expiration: req
            .expiration
            .as_deref()
            .map(|e| Expiration::parse_ahead(e, chrono::Utc::now(), state.min_expiration))
            .transpose()?,
        note: req.note.as_deref().map(validate_note).transpose()?,
        max_downloads: req
            .max_downloads
            .as_ref()
            .map(|v| edit_max_downloads(v.as_ref()))
            .transpose()?,
    };
    let entry = state
        .db
        .run(move |s| entries::update(s, &id, &edit, now_millis()))
        .await?;
    Ok(Json(entry))
}

/// `DELETE /api/entry/{id}`
pub async fn delete(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    // Tracked, so a shutdown waits for the chunk deletion to finish.
    let store = std::sync::Arc::clone(state.db.store());
    state
        .tracker
        .spawn_blocking(move || entries::delete_complete(&store, &id))
        .await
        .map_err(|_| ApiError::Internal("delete task panicked".into()))??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct HistoryParams {
    #[serde(default)]
    unique: bool,
    limit: Option<String>,
    before: Option<String>,
}

impl HistoryParams {
    fn query(&self) -> Result<HistoryQuery, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(s) => s
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE}, not {s:?}"
                    ))
                })?,
        };
        let before = match self.before.as_deref() {
            None => None,
            Some(s) => Some(s.trim().parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "before must be the nextBefore of a previous page, not {s:?}"
                ))
            })?),
        };
        Ok(HistoryQuery {
            unique: self.unique,
            limit,
            before,
        })
    }
}

/// `GET /api/entry/{id}/downloads[?unique=true&limit=&before=]`: one page of
/// the entry's download history, newest first, with the cursor of the next.
pub async fn download_history(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let query = params.query()?;
    let page = state
        .db
        .run(move |s| {
            entries::get(s, &id, now_millis())?;
            downloads::page(s, &id, query)
        })
        .await?;
    Ok(Json(page))
}
