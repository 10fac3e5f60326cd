//! Login, settings and system information pages.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::view;
use super::{LoggedIn, Page, PageError};
use crate::state::AppState;
use crate::storage::settings;
use crate::system_info;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    title: &'static str,
    logged_in: bool,
}

/// `GET /login` (logged-in visitors go to the upload page).
pub async fn login_page(State(state): State<AppState>, mut parts: Parts) -> Response {
    if super::is_logged_in(&mut parts, &state).await {
        return Redirect::to("/").into_response();
    }
    Page(
        StatusCode::OK,
        LoginPage {
            title: "Log in",
            logged_in: false,
        },
    )
    .into_response()
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    title: &'static str,
    logged_in: bool,
    never: bool,
    days: String,
}

/// `GET /settings`
pub async fn settings_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<SettingsPage>, PageError> {
    let s = state.db.run(settings::get).await?;
    Ok(Page(
        StatusCode::OK,
        SettingsPage {
            title: "Settings",
            logged_in: true,
            never: s.default_expiration_days.is_none(),
            days: s
                .default_expiration_days
                .unwrap_or(crate::settings::DEFAULT_EXPIRATION_DAYS)
                .to_string(),
        },
    ))
}

/// A label and a value on the system page.
pub struct Figure {
    label: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "system.html")]
pub struct SystemPage {
    title: &'static str,
    logged_in: bool,
    figures: Vec<Figure>,
    /// Percent of the volume used, for the meter; `None` when unreadable.
    used_percent: Option<u64>,
}

/// `GET /system`
pub async fn system_page(
    _: LoggedIn,
    State(state): State<AppState>,
) -> Result<Page<SystemPage>, PageError> {
    let info = state.db.run(system_info::collect).await?;
    let mut figures = vec![
        Figure {
            label: "Version",
            value: info.version.to_owned(),
        },
        Figure {
            label: "Allocator",
            value: info.allocator.to_owned(),
        },
        Figure {
            label: "Data directory",
            value: info.data_dir.clone(),
        },
    ];
    let mut used_percent = None;
    match &info.volume {
        Ok(v) => {
            // As `df` counts: of the space we could use (root's reserved blocks apart).
            let usable = v.used_bytes + v.available_bytes;
            used_percent = (usable > 0).then(|| v.used_bytes * 100 / usable);
            figures.push(Figure {
                label: "Disk used",
                value: format!(
                    "{} ({}%; the volume holds {})",
                    view::bytes(v.used_bytes),
                    used_percent.unwrap_or(0),
                    view::bytes(v.total_bytes)
                ),
            });
            figures.push(Figure {
                label: "Disk available",
                value: view::bytes(v.available_bytes),
            });
        }
        Err(e) => figures.push(Figure {
            label: "Disk usage",
            value: format!("unavailable: {e}"),
        }),
    }
    figures.extend([
        Figure {
            label: "Stored files, total",
            value: view::bytes(info.data_bytes),
        },
        Figure {
            label: "Database file",
            value: view::bytes(info.files.db_bytes),
        },
        Figure {
            label: "WAL file",
            value: view::bytes(info.files.wal_bytes),
        },
        Figure {
            label: "Shared-memory file",
            value: view::bytes(info.files.shm_bytes),
        },
    ]);
    let budget = state.budget.stats();
    figures.push(Figure {
        label: "Memory budget",
        value: format!(
            "{} in use of {} (peak {}; {} requests refused while full)",
            view::bytes(budget.in_use_bytes),
            view::bytes(budget.limit_bytes),
            view::bytes(budget.peak_in_use_bytes),
            budget.refusals_total
        ),
    });
    Ok(Page(
        StatusCode::OK,
        SystemPage {
            title: "System",
            logged_in: true,
            figures,
            used_percent,
        },
    ))
}
