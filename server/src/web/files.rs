//! The owner's pages: upload (`/`), the files list, a file's info and edit
//! form, and its download history.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::view::{self, DownloadRow, EntryRow, ExpiryOption};
use super::{LoggedIn, Page, PageError};
use crate::entry::EntryId;
use crate::state::AppState;
use crate::storage::{downloads, entries, now_millis, settings};

#[derive(Template)]
#[template(path = "upload.html")]
pub struct UploadPage {
    title: &'static str,
    logged_in: bool,
    expiry_options: Vec<ExpiryOption>,
}

/// `GET /`: upload files (drop, paste, pick), with a note, an expiration and
/// a download limit; each file gets a progress bar, then its link.
pub async fn upload_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<UploadPage>, PageError> {
    let settings = state.db.run(settings::get).await?;
    Ok(Page(
        StatusCode::OK,
        UploadPage {
            title: "Upload",
            logged_in: true,
            expiry_options: view::expiry_options(settings.default_expiration_days),
        },
    ))
}

#[derive(Template)]
#[template(path = "files.html")]
pub struct FilesPage {
    title: &'static str,
    logged_in: bool,
    files: Vec<EntryRow>,
    total: String,
}

/// `GET /files`
pub async fn list_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<FilesPage>, PageError> {
    let list = state.db.run(|s| entries::list(s, now_millis())).await?;
    let total = view::bytes(list.iter().map(|e| e.size).sum());
    Ok(Page(
        StatusCode::OK,
        FilesPage {
            title: "Files",
            logged_in: true,
            files: list.iter().map(EntryRow::of).collect(),
            total,
        },
    ))
}

fn parse_id(id: &str) -> Result<EntryId, PageError> {
    EntryId::parse(id).ok_or_else(|| PageError::not_found("This file"))
}

#[derive(Template)]
#[template(path = "file.html")]
pub struct FilePage {
    title: String,
    logged_in: bool,
    file: EntryRow,
    content_type: String,
    size_bytes: u64,
}

/// `GET /files/{id}`: what is known about a file, and the form to edit it.
pub async fn info_page(
    _: LoggedIn,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Page<FilePage>, PageError> {
    let id = parse_id(&id)?;
    let entry = state
        .db
        .run(move |s| entries::get(s, &id, now_millis()))
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::NotFound => PageError::not_found("This file"),
            e => e.into(),
        })?;
    Ok(Page(
        StatusCode::OK,
        FilePage {
            title: entry.filename.clone(),
            logged_in: true,
            content_type: entry.content_type.clone(),
            size_bytes: entry.size,
            file: EntryRow::of(&entry),
        },
    ))
}

#[derive(Deserialize)]
pub struct HistoryParams {
    #[serde(default)]
    unique: bool,
    /// The cursor of an older page (the API's `nextBefore`).
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "downloads.html")]
pub struct DownloadsPage {
    title: String,
    logged_in: bool,
    file: EntryRow,
    unique: bool,
    downloads: Vec<DownloadRow>,
    /// A later page of this history (not the newest).
    older_page: bool,
    /// The link to the next older page, if there is one.
    older: Option<String>,
    page_size: u32,
    kept: u64,
}

/// `GET /files/{id}/downloads[?unique=true&before=]`: pages of
/// [`downloads::DEFAULT_PAGE`] rows, newest first.
pub async fn downloads_page(
    _: LoggedIn,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Page<DownloadsPage>, PageError> {
    let id = parse_id(&id)?;
    let query = downloads::HistoryQuery {
        unique: params.unique,
        limit: downloads::DEFAULT_PAGE,
        before: params.before,
    };
    let (entry, history) = state
        .db
        .run(move |s| {
            let entry = entries::get(s, &id, now_millis())?;
            Ok((entry, downloads::page(s, &id, query)?))
        })
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::NotFound => PageError::not_found("This file"),
            e => e.into(),
        })?;
    let older = history.next_before.map(|before| {
        let unique = if params.unique { "unique=true&" } else { "" };
        format!("/files/{}/downloads?{unique}before={before}", entry.id)
    });
    Ok(Page(
        StatusCode::OK,
        DownloadsPage {
            title: format!("Downloads of {}", entry.filename),
            logged_in: true,
            file: EntryRow::of(&entry),
            unique: params.unique,
            downloads: history.downloads.iter().map(DownloadRow::of).collect(),
            older_page: params.before.is_some(),
            older,
            page_size: downloads::DEFAULT_PAGE,
            kept: downloads::KEPT_PER_ENTRY,
        },
    ))
}
