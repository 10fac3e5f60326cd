//! The multipart form of an upload: one `file` part streamed into an
//! [`UploadSink`], and (for owners) an optional `note`. Owner uploads
//! (`POST /api/entry`) and guest uploads (`POST /api/guest/{id}`) both come
//! through here; [`UploadRules`] says what differs.
//!
//! Memory: file bytes go straight to the sink (its bound is in `upload.rs`);
//! the note is read incrementally and refused past [`MAX_NOTE_PART_BYTES`];
//! other parts are read past, not kept.

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::{HeaderMap, header};

use crate::client::Client;
use crate::entry::{EntryId, Expiration, MAX_NOTE_CHARS, validate_filename, validate_note};
use crate::error::ApiError;
use crate::guest_links::GuestLinkId;
use crate::state::AppState;
use crate::storage::entries::NewUpload;
use crate::storage::now_millis;
use crate::upload::UploadSink;

/// After a failed upload, the rest of the body is read and dropped, up to this
/// many bytes, before the error is sent: clients (curl, browsers) that are
/// still sending often miss a response that arrives before their body is done.
pub const MAX_DRAIN_BYTES: u64 = 64 << 20;

/// A note part longer than this (bytes) is rejected while it is read: 4 bytes
/// per character covers any UTF-8 note within [`MAX_NOTE_CHARS`].
pub const MAX_NOTE_PART_BYTES: usize = MAX_NOTE_CHARS * 4;

/// What an upload may be, decided before its body is read.
pub struct UploadRules {
    pub expiration: Expiration,
    pub max_downloads: Option<u64>,
    /// Guest uploads: the link (checked again when the row is inserted), its
    /// per-file byte limit, and no note or other parts.
    pub guest: Option<GuestRules>,
}

pub struct GuestRules {
    pub link: GuestLinkId,
    pub max_file_bytes: Option<u64>,
}

fn bad_multipart(e: MultipartError) -> ApiError {
    // The causes say what was wrong (e.g. a limit of `multipart_guard`), or
    // that the body was too slow (the client's fault, but not malformed).
    let mut msg = format!("malformed multipart body: {}", e.body_text());
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(slow) = c.downcast_ref::<crate::serve::BodyTooSlow>() {
            return ApiError::TooSlow(slow.clone());
        }
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    ApiError::BadRequest(msg)
}

/// Whether the client waits for `100 Continue` before sending its body.
/// hyper sends that only once the body is read, so an upload refused before
/// reading answers at once and the client never sends the file.
pub fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Refuses an upload before its body was read: drops up to
/// [`MAX_DRAIN_BYTES`] of the body so the client hears the error, unless it
/// is waiting for `100 Continue` (then nothing is read, nothing is sent).
pub async fn refuse(mut multipart: Multipart, headers: &HeaderMap, error: ApiError) -> ApiError {
    if !expects_continue(headers) {
        let mut budget = MAX_DRAIN_BYTES;
        drain(&mut multipart, &mut budget).await;
    }
    error
}

/// Streams the form into a new entry; on any failure nothing is kept.
pub async fn receive(
    state: &AppState,
    client: Client,
    mut multipart: Multipart,
    rules: UploadRules,
) -> Result<EntryId, ApiError> {
    let mut parts = Parts {
        sink: None,
        declared_type: None,
        note: None,
        drain_budget: MAX_DRAIN_BYTES,
    };
    let received = receive_parts(state, client, &mut multipart, &rules, &mut parts).await;
    if received.is_err() && parts.drain_budget > 0 {
        drain(&mut multipart, &mut parts.drain_budget).await;
    }
    let Some(sink) = parts.sink else {
        received?;
        return Err(ApiError::BadRequest("the body has no `file` part".into()));
    };
    let note = received.and_then(|()| Ok(validate_note(parts.note.as_deref().unwrap_or(""))?));
    match note {
        Ok(note) => Ok(sink.finish(note, parts.declared_type.as_deref()).await?),
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// What the multipart body held.
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
    client: Client,
    multipart: &mut Multipart,
    rules: &UploadRules,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        let received = match (field.name(), &rules.guest) {
            (Some("file"), _) => receive_file(state, client, &mut field, rules, parts).await,
            (Some("note"), None) => read_note(&mut field)
                .await
                .map(|note| parts.note = Some(note)),
            (Some("note"), Some(_)) => Err(ApiError::BadRequest(
                "guest uploads cannot have a note".into(),
            )),
            (name, Some(_)) => Err(ApiError::BadRequest(format!(
                "unexpected part {:?}: a guest upload has only a `file` part",
                name.unwrap_or("")
            ))),
            // Unknown parts (a browser may add some) are read past, not kept.
            (_, None) => loop {
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

/// Streams the `file` part into a new upload. A guest link's byte limit is
/// checked before each piece is stored: the piece that would pass it ends
/// the upload, so no more than the limit is ever written. A guest upload
/// also ends as soon as its link is disabled or deleted.
async fn receive_file(
    state: &AppState,
    client: Client,
    field: &mut Field<'_>,
    rules: &UploadRules,
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
        expiration: rules.expiration,
        max_downloads: rules.max_downloads,
        guest_link: rules.guest.as_ref().map(|g| g.link.clone()),
    };
    let max_bytes = rules.guest.as_ref().and_then(|g| g.max_file_bytes);
    // Before the row is inserted: see `LiveUploads::guest_upload`.
    let link = rules
        .guest
        .as_ref()
        .map(|g| state.live_uploads.guest_upload(&g.link));
    let sink = parts
        .sink
        .insert(UploadSink::start(state, upload, client).await?);
    loop {
        let next = match &link {
            Some(link) => tokio::select! {
                biased;
                () = link.cancelled.cancelled() => {
                    // Nothing more is read: the rest of the body is not wanted.
                    parts.drain_budget = 0;
                    return Err(ApiError::Forbidden(
                        "the guest link was disabled or deleted during the upload; \
                         nothing was kept".into(),
                    ));
                }
                next = field.chunk() => next,
            },
            None => field.chunk().await,
        };
        let Some(bytes) = next.map_err(bad_multipart)? else {
            break;
        };
        if let Some(max) = max_bytes
            && sink.size() + bytes.len() as u64 > max
        {
            return Err(too_large(max));
        }
        sink.write(&bytes).await?;
    }
    Ok(())
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the file is larger than this guest link allows ({max} bytes); nothing was kept"
    ))
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
    if *budget == 0 {
        return;
    }
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
