//! The HTML pages. Server-rendered askama templates (`server/templates/`),
//! which escape every value they print, so filenames, notes and labels are
//! shown as text, never as markup. The pages change nothing themselves: a
//! small script (`server/static/app.js`, no build step) calls the JSON API,
//! whose CSRF check (`csrf`) covers them too.
//!
//! Memory: a page is rendered into one `String`; the largest is the files
//! list, about 1 KiB per entry.

mod admin;
mod files;
mod guest;
mod view;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::auth::Authenticated;
use crate::state::AppState;
use crate::storage::StorageError;

/// Pages run only our own script and style, load nothing from elsewhere,
/// and cannot be framed. (Downloads keep their own `sandbox` policy.)
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(files::upload_page))
        .route("/login", get(admin::login_page))
        .route("/files", get(files::list_page))
        .route("/files/{id}", get(files::info_page))
        .route("/files/{id}/downloads", get(files::downloads_page))
        .route("/guest-links", get(guest::list_page))
        .route("/guest-links/new", get(guest::new_page))
        .route("/g/{id}", get(guest::upload_page))
        .route("/settings", get(admin::settings_page))
        .route("/system", get(admin::system_page))
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(style))
}

/// A logged-in visitor; anyone else is sent to the login page.
pub struct LoggedIn;

impl FromRequestParts<AppState> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Authenticated::from_request_parts(parts, state).await {
            Ok(Authenticated) => Ok(LoggedIn),
            Err(_) => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// Whether the visitor is logged in, for pages anyone may see.
async fn is_logged_in(parts: &mut Parts, state: &AppState) -> bool {
    Authenticated::from_request_parts(parts, state)
        .await
        .is_ok()
}

/// A rendered template with the page headers.
pub struct Page<T: Template>(pub StatusCode, pub T);

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.1.render() {
            Ok(html) => {
                let mut response = (self.0, html).into_response();
                let h = response.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(PAGE_CSP),
                );
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                h.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                );
                // Pages show private data (file names, notes, client IPs).
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "rendering a page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
    logged_in: bool,
}

/// A page that could not be shown: an HTML error page with the status.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
    /// Show the owner's navigation (not to guests).
    logged_in: bool,
}

impl PageError {
    pub fn not_found(what: &str) -> Self {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: format!("{what} does not exist (or no longer does)."),
            logged_in: true,
        }
    }

    /// The same error, on a page anyone may open.
    pub fn for_visitor(self, logged_in: bool) -> Self {
        PageError { logged_in, ..self }
    }
}

impl From<StorageError> for PageError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => PageError::not_found("This page"),
            e => {
                let request_id = crate::error::request_id();
                tracing::error!(%request_id, error = %e, "a page failed");
                PageError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: format!(
                        "Something went wrong on the server; its log says what (request id {request_id})."
                    ),
                    logged_in: true,
                }
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        Page(
            self.status,
            ErrorPage {
                title,
                message: self.message,
                logged_in: self.logged_in,
            },
        )
        .into_response()
    }
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    )
}

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
