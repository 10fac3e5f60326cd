//! Guest link pages: the owner's list and new-link form, and the upload page
//! a guest opens from the link (no login).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::view::{self, ExpiryOption, GuestLinkRow};
use super::{LoggedIn, Page, PageError};
use crate::guest_links::{GuestLinkId, Refusal};
use crate::state::AppState;
use crate::storage::{StorageError, guest_links, settings};

#[derive(Template)]
#[template(path = "guest_links.html")]
pub struct GuestLinksPage {
    title: &'static str,
    logged_in: bool,
    links: Vec<GuestLinkRow>,
}

/// `GET /guest-links`
pub async fn list_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<GuestLinksPage>, PageError> {
    let links = state.db.run(guest_links::list).await?;
    let now = chrono::Utc::now();
    Ok(Page(
        StatusCode::OK,
        GuestLinksPage {
            title: "Guest links",
            logged_in: true,
            links: links.iter().map(|g| GuestLinkRow::of(g, now)).collect(),
        },
    ))
}

#[derive(Template)]
#[template(path = "guest_link_new.html")]
pub struct NewGuestLinkPage {
    title: &'static str,
    logged_in: bool,
    lifetime_options: Vec<ExpiryOption>,
}

/// `GET /guest-links/new`
pub async fn new_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<NewGuestLinkPage>, PageError> {
    let settings = state.db.run(settings::get).await?;
    Ok(Page(
        StatusCode::OK,
        NewGuestLinkPage {
            title: "New guest link",
            logged_in: true,
            lifetime_options: view::expiry_options(settings.default_expiration_days),
        },
    ))
}

#[derive(Template)]
#[template(path = "guest_upload.html")]
pub struct GuestUploadPage {
    title: &'static str,
    logged_in: bool,
    id: String,
    label: String,
    /// Why the link takes no upload; empty when it does.
    refusal: String,
    max_file_size: String,
    /// 0: no per-file limit (the script checks sizes before sending).
    max_file_bytes: u64,
    uploads_left: String,
    /// `for 30 days`, `until deleted`.
    kept: String,
}

/// `GET /g/{id}`: the guest's upload page. An inactive link shows why, with
/// the API's status (403 disabled or used up, 410 expired).
pub async fn upload_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Result<Page<GuestUploadPage>, PageError> {
    let logged_in = super::is_logged_in(&mut parts, &state).await;
    let not_found = || PageError::not_found("This guest link").for_visitor(logged_in);
    let id = GuestLinkId::parse(&id).ok_or_else(not_found)?;
    let link = state
        .db
        .run(move |s| guest_links::get(s, &id))
        .await
        .map_err(|e| match e {
            StorageError::NotFound => not_found(),
            e => PageError::from(e).for_visitor(logged_in),
        })?;
    let refusal = link.refusal(chrono::Utc::now());
    let status = match &refusal {
        None => StatusCode::OK,
        Some(Refusal::Expired(_)) => StatusCode::GONE,
        Some(_) => StatusCode::FORBIDDEN,
    };
    Ok(Page(
        status,
        GuestUploadPage {
            title: "Upload",
            logged_in,
            id: link.id.clone(),
            label: link.label.clone(),
            refusal: refusal.map(|r| r.to_string()).unwrap_or_default(),
            max_file_size: link
                .max_file_bytes
                .map_or_else(|| "no limit".to_owned(), view::bytes),
            max_file_bytes: link.max_file_bytes.unwrap_or(0),
            uploads_left: match link.max_file_uploads {
                Some(max) => max.saturating_sub(link.uploads_used).to_string(),
                None => "no limit".to_owned(),
            },
            kept: match link.file_lifetime {
                crate::guest_links::FileLifetime::Never => "until deleted".into(),
                l => format!("for {}", view::lifetime(l)),
            },
        },
    ))
}
