//! The route table and its layers; handlers live in `handlers/`.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::error::ApiError;
use crate::handlers::{auth, debug, download, entries, guest_links, health, settings};
use crate::state::AppState;
use crate::{csrf, web};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/auth", post(auth::login).delete(auth::logout))
        // Uploads read the body as a stream with no size cap (multi-GB files
        // are the point); memory stays bounded by `upload` module constants.
        .route(
            "/api/entry",
            post(entries::upload)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::map_request(crate::multipart_guard::guard)),
        )
        .route(
            "/api/entry/{id}",
            get(entries::get_entry)
                .put(entries::edit)
                .delete(entries::delete),
        )
        .route("/api/entry/{id}/downloads", get(entries::download_history))
        .route("/api/entries", get(entries::list))
        .route(
            "/api/guest-links",
            get(guest_links::list).post(guest_links::create),
        )
        .route(
            "/api/guest-links/{id}",
            axum::routing::delete(guest_links::delete),
        )
        .route("/api/guest-links/{id}/enable", put(guest_links::enable))
        .route("/api/guest-links/{id}/disable", put(guest_links::disable))
        // Guest uploads stream like owner uploads; the link's byte limit is
        // enforced inside the stream (`upload_form`).
        .route(
            "/api/guest/{id}",
            post(guest_links::upload)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::map_request(crate::multipart_guard::guard)),
        )
        .route("/api/settings", get(settings::get).put(settings::put))
        .merge(web::routes())
        // `/-{id}`: matched as one segment and checked for the dash in the handler.
        .route("/{token}", get(download::download))
        .route("/{token}/{filename}", get(download::download_named))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::refuse_cross_origin,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            abort_on_shutdown,
        ))
        .with_state(state)
}

/// Routes of the debug listener; never mounted on the main port.
pub fn debug_router(state: AppState) -> Router {
    Router::new()
        .route("/debug/stats", get(debug::stats))
        .route("/metrics", get(debug::metrics))
        .route("/debug/pprof/heap", get(debug::pprof_heap))
        .route("/debug/allocator/purge", post(debug::purge))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// Ends a request with 503 once the shutdown drain time is over. Dropping the
/// handler drops its upload, whose writer then removes the partial data.
async fn abort_on_shutdown(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    tokio::select! {
        response = next.run(request) => response,
        () = state.abort.cancelled() => ApiError::ShuttingDown.into_response(),
    }
}
