//! Guest links: the owner's API (`/api/guest-links`) and the guests' upload
//! (`POST /api/guest/{id}`, no login).

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Authenticated;
use crate::client::Client;
use crate::error::ApiError;
use crate::guest_links::{FileLifetime, GuestLink, GuestLinkId, GuestLinkRequest, NewGuestLink};
use crate::handlers::{UploadAnswer, bad_json, expected_multipart};
use crate::state::AppState;
use crate::storage::{guest_links, settings};
use crate::upload_form::{self, GuestRules, UploadRules};

/// Room for the multipart framing around a guest's file (boundaries, part
/// headers with a 255-byte filename): a body longer than the link's byte
/// limit plus this cannot hold an allowed file, and is refused before it is read.
pub const GUEST_FORM_OVERHEAD_BYTES: u64 = 16 << 10;

fn parse_id(id: &str) -> Result<GuestLinkId, ApiError> {
    GuestLinkId::parse(id).ok_or(ApiError::NotFound)
}

/// `POST /api/guest-links`: JSON `{label, urlExpirationTime, fileLifetime,
/// maxFileBytes, maxFileUploads}` (all optional); answers the new link.
pub async fn create(
    State(state): State<AppState>,
    _auth: Authenticated,
    body: Result<Json<GuestLinkRequest>, JsonRejection>,
) -> Result<Json<GuestLink>, ApiError> {
    let Json(req) = body.map_err(|e| {
        bad_json(
            e,
            "JSON with any of label, urlExpirationTime, fileLifetime, maxFileBytes, maxFileUploads",
        )
    })?;
    let defaults = state.db.run(settings::get).await?;
    let link = NewGuestLink::from_request(
        &req,
        chrono::Utc::now(),
        FileLifetime::from_days(defaults.default_expiration_days),
    )?;
    let created = state
        .db
        .run(move |s| {
            let id = guest_links::create(s, &link, crate::storage::now_millis())?;
            guest_links::get(s, &id)
        })
        .await?;
    Ok(Json(created))
}

/// `GET /api/guest-links`: every link, newest first.
pub async fn list(
    State(state): State<AppState>,
    _auth: Authenticated,
) -> Result<Json<Vec<GuestLink>>, ApiError> {
    Ok(Json(state.db.run(guest_links::list).await?))
}

/// `DELETE /api/guest-links/{id}`: the files uploaded through it stay;
/// its uploads in progress stop and are removed.
pub async fn delete(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    {
        let id = id.clone();
        state.db.run(move |s| guest_links::delete(s, &id)).await?;
    }
    stop_uploads(&state, &id);
    Ok(StatusCode::NO_CONTENT)
}

/// After a link stopped taking uploads in the database: ends those in progress.
fn stop_uploads(state: &AppState, id: &GuestLinkId) {
    let stopped = state.live_uploads.stop_link(id);
    if stopped > 0 {
        tracing::info!(stopped, "stopped the uploads in progress of a guest link");
    }
}

/// `PUT /api/guest-links/{id}/enable`
pub async fn enable(
    state: State<AppState>,
    auth: Authenticated,
    id: Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(state, auth, id, false).await
}

/// `PUT /api/guest-links/{id}/disable`
pub async fn disable(
    state: State<AppState>,
    auth: Authenticated,
    id: Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(state, auth, id, true).await
}

async fn set_disabled(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    {
        let id = id.clone();
        state
            .db
            .run(move |s| guest_links::set_disabled(s, &id, disabled))
            .await?;
    }
    if disabled {
        stop_uploads(&state, &id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/guest/{id}`: a guest's upload, multipart with one `file` part.
/// Answers the download URL as plain text (for curl), or `{"id", "url"}` to
/// a client that accepts JSON.
pub async fn upload(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(expected_multipart)?;
    let rules = match guest_rules(&state, &id, &headers).await {
        Ok(rules) => rules,
        Err(e) => return Err(upload_form::refuse(multipart, &headers, e).await),
    };
    let id = upload_form::receive(&state, client, multipart, rules).await?;
    Ok(UploadAnswer::new(&state, &headers, &id, true).into_response())
}

/// Checks the link before the body is read (it is checked again, atomically,
/// when the upload's row is inserted) and derives the upload's rules.
async fn guest_rules(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<UploadRules, ApiError> {
    let id = parse_id(id)?;
    let link = {
        let id = id.clone();
        state.db.run(move |s| guest_links::get(s, &id)).await?
    };
    let now = chrono::Utc::now();
    if let Some(refusal) = link.refusal(now) {
        return Err(refusal.into());
    }
    if let Some(max) = link.max_file_bytes {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max.saturating_add(GUEST_FORM_OVERHEAD_BYTES)) {
            return Err(upload_form::too_large(max));
        }
    }
    Ok(UploadRules {
        expiration: link.file_lifetime.expiration_from(now),
        max_downloads: None,
        guest: Some(GuestRules {
            link: id,
            max_file_bytes: link.max_file_bytes,
        }),
    })
}
