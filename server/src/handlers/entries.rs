//! The entry API: upload, read, list, edit, delete, download history.

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::entry::{Entry, EntryId, Expiration, MAX_NOTE_CHARS, validate_filename, validate_note};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::downloads::{self, Download};
use crate::storage::entries::{self, EntryEdit, NewUpload};
use crate::storage::now_millis;
use crate::upload::UploadSink;

/// After a failed upload, the rest of the body is read and dropped, up to this
/// many bytes, before the error is sent: clients (curl, browsers) that are
/// still sending often miss a response that arrives before their body is done.
const MAX_DRAIN_BYTES: u64 = 64 << 20;

/// A note part longer than this (bytes) is rejected while it is read: 4 bytes
/// per character covers any UTF-8 note within [`MAX_NOTE_CHARS`].
const MAX_NOTE_PART_BYTES: usize = MAX_NOTE_CHARS * 4;

#[derive(Deserialize)]
pub struct UploadParams {
    expiration: Option<String>,
}

#[derive(Serialize)]
pub struct Created {
    id: String,
}

fn parse_id(id: &str) -> Result<EntryId, ApiError> {
    EntryId::parse(id).ok_or(ApiError::NotFound)
}

fn bad_multipart(e: MultipartError) -> ApiError {
    // The causes say what was wrong (e.g. a limit of `multipart_guard`).
    let mut msg = format!("malformed multipart body: {}", e.body_text());
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    ApiError::BadRequest(msg)
}

/// `POST /api/entry?expiration=`: multipart with a `file` part and an optional `note`.
pub async fn upload(
    State(state): State<AppState>,
    _auth: Authenticated,
    params: Result<Query<UploadParams>, QueryRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Created>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let mut parts = Parts {
        drain_budget: MAX_DRAIN_BYTES,
        ..Parts::default()
    };
    let received = match upload_expiration(&state, params.expiration.as_deref()).await {
        Ok(expiration) => receive_parts(&state, &mut multipart, expiration, &mut parts).await,
        Err(e) => Err(e),
    };
    if received.is_err() && parts.drain_budget > 0 {
        drain(&mut multipart, &mut parts.drain_budget).await;
    }
    let Some(sink) = parts.sink else {
        received?;
        return Err(ApiError::BadRequest("the body has no `file` part".into()));
    };
    let note = received.and_then(|()| Ok(validate_note(parts.note.as_deref().unwrap_or(""))?));
    match note {
        Ok(note) => {
            let id = sink.finish(note, parts.declared_type.as_deref()).await?;
            Ok(Json(Created { id: id.to_string() }))
        }
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// `?expiration=` if given, else the default from the settings.
async fn upload_expiration(state: &AppState, param: Option<&str>) -> Result<Expiration, ApiError> {
    let now = chrono::Utc::now();
    match param {
        Some(s) if !s.is_empty() => Ok(Expiration::parse_ahead(s, now, state.min_expiration)?),
        _ => {
            let days = state.db.run(entries::default_expiration_days).await?;
            Ok(Expiration::days_after(days, now))
        }
    }
}

/// What the multipart body held.
#[derive(Default)]
struct Parts {
    sink: Option<UploadSink>,
    declared_type: Option<String>,
    note: Option<String>,
    /// Bytes still to drop after a failure; 0 once spent (the rest of the
    /// body is then left unread and the connection closes).
    drain_budget: u64,
}

async fn receive_parts(
    state: &AppState,
    multipart: &mut Multipart,
    expiration: Expiration,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        let received = match field.name() {
            Some("file") => receive_file(state, &mut field, expiration, parts).await,
            Some("note") => read_note(&mut field)
                .await
                .map(|note| parts.note = Some(note)),
            // Unknown parts (a browser may add some) are read past, not kept.
            _ => loop {
                match field.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(bad_multipart(e)),
                }
            },
        };
        if let Err(e) = received {
            drain_field(&mut field, &mut parts.drain_budget).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Streams the `file` part into a new upload.
async fn receive_file(
    state: &AppState,
    field: &mut Field<'_>,
    expiration: Expiration,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    if parts.sink.is_some() {
        return Err(ApiError::BadRequest(
            "only one `file` part per upload".into(),
        ));
    }
    let filename = validate_filename(
        field
            .file_name()
            .ok_or_else(|| ApiError::BadRequest("the `file` part has no filename".into()))?,
    )?;
    parts.declared_type = field.content_type().map(str::to_owned);
    let upload = NewUpload {
        id: EntryId::generate(),
        filename,
        chunk_size: state.chunk_size,
        upload_time_ms: now_millis(),
        expiration,
    };
    let sink = parts.sink.insert(UploadSink::start(state, upload).await?);
    while let Some(bytes) = field.chunk().await.map_err(bad_multipart)? {
        sink.write(&bytes).await?;
    }
    Ok(())
}

/// Reads and drops what is left of a multipart body within `budget` bytes.
async fn drain(multipart: &mut Multipart, budget: &mut u64) {
    while *budget > 0
        && let Ok(Some(mut field)) = multipart.next_field().await
    {
        drain_field(&mut field, budget).await;
    }
}

/// Reads and drops the rest of one part within `budget` bytes; sets the
/// budget to 0 if the part is longer (so nothing skips through it later).
async fn drain_field(field: &mut Field<'_>, budget: &mut u64) {
    while let Ok(Some(chunk)) = field.chunk().await {
        match budget.checked_sub(chunk.len() as u64) {
            Some(left) if left > 0 => *budget = left,
            _ => {
                *budget = 0;
                return;
            }
        }
    }
}

/// Reads a `note` part, refusing it as soon as it is too long.
async fn read_note(field: &mut Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
        if bytes.len() + chunk.len() > MAX_NOTE_PART_BYTES {
            return Err(ApiError::BadRequest(format!(
                "note is longer than {MAX_NOTE_CHARS} characters"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest("note is not valid UTF-8".into()))
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
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    filename: Option<String>,
    /// RFC 3339 time or "never".
    expiration: Option<String>,
    /// An empty string clears the note.
    note: Option<String>,
}

/// `PUT /api/entry/{id}`: JSON with any of `filename`, `expiration`, `note`.
pub async fn edit(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Result<Json<Entry>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected JSON with any of filename, expiration, note: {}",
            e.body_text()
        ))
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

/// `GET /api/entry/{id}/downloads`: the entry's download history, newest first.
pub async fn download_history(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Vec<Download>>, ApiError> {
    let id = parse_id(&id)?;
    let history = state
        .db
        .run(move |s| {
            entries::get(s, &id, now_millis())?;
            downloads::list(s, &id)
        })
        .await?;
    Ok(Json(history))
}
