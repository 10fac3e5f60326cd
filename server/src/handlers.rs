//! HTTP handlers, one module per resource. They translate requests into
//! calls on `storage`, `upload` and `download`, and results into responses.

pub mod auth;
pub mod debug;
pub mod download;
pub mod entries;
pub mod guest_links;
pub mod health;
pub mod settings;

use std::net::SocketAddr;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::entry::EntryId;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body that could not be read: 413 past the small-body limit,
/// else 400 saying what was `expected`.
pub fn bad_json(e: JsonRejection, expected: &str) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge(format!(
            "the request body is larger than {} bytes, the most this endpoint takes",
            crate::routes::SMALL_BODY_BYTES
        ));
    }
    ApiError::BadRequest(format!("expected {expected}: {}", e.body_text()))
}

pub fn expected_multipart(e: MultipartRejection) -> ApiError {
    ApiError::BadRequest(format!(
        "expected a multipart/form-data body: {}",
        e.body_text()
    ))
}

/// `scheme://host` as the client reached us: the Host header (it is the
/// client's own value, echoed back to it), `https` behind a proxy (which
/// terminates TLS). Empty if the request has no usable Host: links are then
/// relative.
pub fn base_url(headers: &HeaderMap, behind_proxy: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(h) => format!("{}://{h}", if behind_proxy { "https" } else { "http" }),
        None => String::new(),
    }
}

fn accept_has(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
        })
}

/// What a finished upload answers: JSON `{"id", "url"}`, or the bare
/// download URL and a newline (what a person running curl wants to see).
pub struct UploadAnswer {
    id: String,
    url: String,
    plain: bool,
}

impl UploadAnswer {
    /// `plain_by_default`: the bare URL unless the client asks for JSON (guest
    /// uploads); otherwise JSON unless it asks for `text/plain` (the API, whose
    /// clients read `id`).
    pub fn new(
        state: &AppState,
        headers: &HeaderMap,
        id: &EntryId,
        plain_by_default: bool,
    ) -> Self {
        let json = accept_has(headers, "application/json");
        let plain = if plain_by_default {
            !json
        } else {
            !json && accept_has(headers, "text/plain")
        };
        UploadAnswer {
            id: id.to_string(),
            url: format!("{}/-{id}", base_url(headers, state.behind_proxy)),
            plain,
        }
    }
}

impl IntoResponse for UploadAnswer {
    fn into_response(self) -> Response {
        if self.plain {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", self.url),
            )
                .into_response()
        } else {
            Json(serde_json::json!({ "id": self.id, "url": self.url })).into_response()
        }
    }
}

/// The client's IP: the peer address, or behind a proxy the last
/// X-Forwarded-For hop (the one our proxy appended; earlier hops are
/// whatever the client sent and can be forged).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, behind_proxy: bool) -> String {
    if behind_proxy
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| s.parse::<std::net::IpAddr>().is_ok())
    {
        return ip.to_owned();
    }
    peer.ip().to_string()
}

/// Whether the client reached us over HTTPS: only behind a proxy (which
/// terminates TLS) and only when it says so with `X-Forwarded-Proto: https`.
pub fn is_https(headers: &HeaderMap, behind_proxy: bool) -> bool {
    behind_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_behind_a_proxy() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(peer, &h, false), "10.0.0.1");
        assert_eq!(client_ip(peer, &h, true), "203.0.113.7");
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(peer, &h, true), "10.0.0.1");
    }

    #[test]
    fn base_url_from_host() {
        let mut h = HeaderMap::new();
        assert_eq!(base_url(&h, false), "");
        h.insert("host", "share.example:4001".parse().unwrap());
        assert_eq!(base_url(&h, false), "http://share.example:4001");
        assert_eq!(base_url(&h, true), "https://share.example:4001");
        h.insert("host", "evil\"><x".parse().unwrap());
        assert_eq!(base_url(&h, false), "");
    }

    #[test]
    fn accept_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            "text/html, application/json;q=0.9".parse().unwrap(),
        );
        assert!(accept_has(&h, "application/json"));
        assert!(!accept_has(&h, "text/plain"));
        h.insert("accept", "*/*".parse().unwrap());
        assert!(!accept_has(&h, "application/json"));
    }

    #[test]
    fn https_only_when_a_proxy_says_so() {
        let mut h = HeaderMap::new();
        assert!(!is_https(&h, true));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(is_https(&h, true));
        assert!(
            !is_https(&h, false),
            "a client cannot claim it without a proxy"
        );
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        assert!(!is_https(&h, true));
    }
}
