//! The route table and its layers; handlers live in `handlers/`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::client::Client;
use crate::error::ApiError;
use crate::handlers::{auth, client_ip, debug, download, entries, guest_links, health, settings};
use crate::serve::HoldBody;
use crate::state::AppState;
use crate::{csrf, debug_access, web};

/// Bodies of every route but the uploads: login, settings, entry edits and
/// guest-link forms are a few hundred bytes (a note of 2,000 characters
/// fits); larger ones get 413 before they are read.
pub const SMALL_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    // Uploads read the body as a stream with no size cap (multi-GB files
    // are the point); their memory is bounded by the `upload` module and
    // drawn from the budget by the multipart guard and the upload sink. The
    // link's byte limit of guest uploads is enforced inside the stream.
    let uploads = Router::new()
        .route("/api/entry", post(entries::upload))
        .route("/api/guest/{id}", post(guest_links::upload))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::multipart_guard::guard,
        ));
    let small = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/auth", post(auth::login).delete(auth::logout))
        .route(
            "/api/sessions",
            axum::routing::delete(auth::logout_everywhere),
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
        .route("/api/settings", get(settings::get).put(settings::put))
        .merge(web::routes())
        // `/-{id}`: matched as one segment and checked for the dash in the handler.
        .route("/{token}", get(download::download))
        .route("/{token}/{filename}", get(download::download_named))
        .layer(middleware::from_fn_with_state(state.clone(), small_body))
        .layer(DefaultBodyLimit::max(SMALL_BODY_BYTES));
    uploads
        .merge(small)
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::refuse_cross_origin,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            abort_on_shutdown,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_per_client,
        ))
        .layer(middleware::map_response(response_headers))
        .with_state(state)
}

/// A small body is refused past [`SMALL_BODY_BYTES`] when its length says
/// so, before a byte is read; otherwise its buffer is reserved in the memory
/// budget while the request runs (the extractors read it whole).
async fn small_body(
    State(state): State<AppState>,
    client: Client,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > SMALL_BODY_BYTES as u64) {
        return ApiError::TooLarge(format!(
            "the request body is larger than {SMALL_BODY_BYTES} bytes, the most this endpoint takes"
        ))
        .into_response();
    }
    let has_body =
        declared.is_some_and(|len| len > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(request).await;
    }
    match state.budget.reserve(SMALL_BODY_BYTES as u64, client).await {
        Ok(_reserved) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Behind a proxy every connection comes from the proxy, so the accept
/// loop's per-address limit cannot tell clients apart: here requests in
/// flight are limited per forwarded address instead, until their response
/// body is done.
async fn limit_per_client(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    #[cfg(feature = "regressions")]
    crate::regressions::on_request();
    let Some(per_client) = &state.requests_per_client else {
        return next.run(request).await;
    };
    let ip = client_ip(peer, request.headers(), true)
        .parse()
        .unwrap_or(peer.ip());
    // Shares of the memory budget go by the forwarded address too.
    request.extensions_mut().insert(Client::of(ip));
    let Some(slot) = per_client.acquire(ip) else {
        return ApiError::TooManyRequests(format!(
            "too many requests in flight from this address ({} at once); retry when some finish",
            per_client.max()
        ))
        .into_response();
    };
    next.run(request)
        .await
        .map(|body| Body::new(HoldBody::new(body, slot)))
}

/// Routes of the debug listener; never mounted on the main port. Only
/// loopback `Host`s (and `allowed`) are answered; see [`debug_access`].
pub fn debug_router(state: AppState, allowed: debug_access::AllowedHosts) -> Router {
    Router::new()
        .route("/debug/stats", get(debug::stats))
        .route("/metrics", get(debug::metrics))
        .route("/debug/pprof/heap", get(debug::pprof_heap))
        .route("/debug/allocator/purge", post(debug::purge))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(allowed, debug_access::guard))
        .layer(middleware::map_response(response_headers))
        .with_state(state)
}

/// JSON answers (entries, settings, errors) are private and never cached;
/// no response is content-sniffed. A downloaded file (it has a
/// `Content-Disposition`) is not an answer of ours, whatever its type.
async fn response_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json && !headers.contains_key(header::CONTENT_DISPOSITION) {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
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
