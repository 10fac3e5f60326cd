//! `GET`/`HEAD /-{id}` and `/-{id}/{filename}`: a stored file, whole or in ranges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rand::distr::{Alphanumeric, SampleString};

use crate::client::Client;
use crate::download::{RangeRequest, Segment, Source, body_stream, buffer_bytes, plan_ranges};
use crate::entry::{Entry, EntryId};
use crate::error::ApiError;
use crate::handlers::client_ip;
use crate::state::AppState;
use crate::storage::downloads::{self, NewDownload};
use crate::storage::{entries, now_millis};

pub async fn download(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Client,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    serve(state, peer, client, method, headers, &token).await
}

/// The filename in the URL is for people and download managers; the id decides.
pub async fn download_named(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Client,
    method: Method,
    headers: HeaderMap,
    Path((token, _filename)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    serve(state, peer, client, method, headers, &token).await
}

async fn serve(
    state: AppState,
    peer: SocketAddr,
    client: Client,
    method: Method,
    headers: HeaderMap,
    token: &str,
) -> Result<Response, ApiError> {
    let id = token
        .strip_prefix('-')
        .and_then(EntryId::parse)
        .ok_or(ApiError::NotFound)?;
    let entry = {
        let id = id.clone();
        state
            .db
            .run(move |s| entries::get(s, &id, now_millis()))
            .await?
    };
    if let Some(max) = entry.max_downloads
        && entry.downloads >= max
    {
        return Err(download_limit_reached(max));
    }
    let validators = Validators::of(&entry);

    if header_str(&headers, header::IF_NONE_MATCH).is_some_and(|v| validators.etag_listed(v)) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        validators.apply(response.headers_mut());
        return Ok(response);
    }

    // If-Range: serve the range only if the client's copy is this one.
    let range = header_str(&headers, header::RANGE).filter(|_| {
        header_str(&headers, header::IF_RANGE).is_none_or(|v| validators.if_range_holds(v))
    });
    let (status, segments, content_type) = match plan_ranges(range, entry.size) {
        RangeRequest::Unsatisfiable => {
            return Err(ApiError::RangeNotSatisfiable { size: entry.size });
        }
        RangeRequest::Full => (
            StatusCode::OK,
            vec![Segment::File {
                start: 0,
                end: entry.size,
            }],
            entry.content_type.clone(),
        ),
        RangeRequest::Partial(ranges) if ranges.len() == 1 => (
            StatusCode::PARTIAL_CONTENT,
            vec![Segment::File {
                start: *ranges[0].start(),
                end: ranges[0].end() + 1,
            }],
            entry.content_type.clone(),
        ),
        RangeRequest::Partial(ranges) => {
            let boundary = Alphanumeric.sample_string(&mut rand::rng(), 24);
            let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
            for (i, r) in ranges.iter().enumerate() {
                let head = format!(
                    "{}--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    entry.content_type,
                    r.start(),
                    r.end(),
                    entry.size
                );
                segments.push(Segment::Literal(Bytes::from(head)));
                segments.push(Segment::File {
                    start: *r.start(),
                    end: r.end() + 1,
                });
            }
            segments.push(Segment::Literal(Bytes::from(format!(
                "\r\n--{boundary}--\r\n"
            ))));
            (
                StatusCode::PARTIAL_CONTENT,
                segments,
                format!("multipart/byteranges; boundary={boundary}"),
            )
        }
    };
    let length: u64 = segments.iter().map(Segment::len).sum();

    let mut response = if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        // Room first: a download refused for memory is not recorded.
        let reserved = state
            .budget
            .reserve(buffer_bytes(entry.chunk_size, &segments), client)
            .await?;
        match entry.max_downloads {
            Some(max) => record_limited_download(&state, &id, max, peer, &headers).await?,
            None => record_download(&state, &id, peer, &headers),
        }
        let source = Source {
            db: state.db.clone(),
            id,
            chunk_size: entry.chunk_size,
            counters: Arc::clone(&state.counters),
            abort: state.abort.clone(),
            reserved,
        };
        Response::new(Body::from_stream(body_stream(source, segments.clone())))
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    validators.apply(h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    insert(h, header::CONTENT_TYPE, &content_type);
    insert(
        h,
        header::CONTENT_DISPOSITION,
        &content_disposition(&entry.filename),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Uploaded HTML or SVG must never run scripts as our origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let [Segment::File { start, end }] = segments.as_slice()
        && status == StatusCode::PARTIAL_CONTENT
    {
        insert(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{}", end - 1, entry.size),
        );
    }
    Ok(response)
}

/// Queues the download's record for the download log; never waits (a
/// record that finds the queue full is dropped and counted).
fn record_download(state: &AppState, id: &EntryId, peer: SocketAddr, headers: &HeaderMap) {
    state
        .download_log
        .record(new_download(state, id, peer, headers));
}

fn new_download(
    state: &AppState,
    id: &EntryId,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> NewDownload {
    NewDownload::new(
        id.clone(),
        now_millis(),
        client_ip(peer, headers, state.behind_proxy),
        header_str(headers, header::USER_AGENT).unwrap_or(""),
    )
}

fn download_limit_reached(max: u64) -> ApiError {
    ApiError::Gone(format!(
        "this file has reached its limit of {max} download(s)"
    ))
}

/// For an entry with a download limit, the record is the permission: it is
/// written before the body is sent, and refused (410) once `max` exist.
/// Every GET counts, ranges included; HEAD does not.
async fn record_limited_download(
    state: &AppState,
    id: &EntryId,
    max: u64,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let d = new_download(state, id, peer, headers);
    let recorded = state
        .db
        .run(move |s| downloads::record_within_limit(s, &d, max))
        .await?;
    if recorded {
        Ok(())
    } else {
        Err(download_limit_reached(max))
    }
}

/// ETag and Last-Modified of an entry. Content never changes under an id, so
/// id, size and upload time make a strong validator.
struct Validators {
    etag: String,
    last_modified: SystemTime,
}

impl Validators {
    fn of(entry: &Entry) -> Self {
        let ms = entry.uploaded.timestamp_millis().max(0) as u64;
        Validators {
            etag: format!("\"{}-{:x}-{:x}\"", entry.id, entry.size, ms),
            // HTTP dates have whole seconds.
            last_modified: UNIX_EPOCH + Duration::from_secs(ms / 1000),
        }
    }

    fn apply(&self, h: &mut HeaderMap) {
        insert(h, header::ETAG, &self.etag);
        insert(
            h,
            header::LAST_MODIFIED,
            &httpdate::fmt_http_date(self.last_modified),
        );
    }

    /// If-None-Match: `*` or a list of (weakly compared) tags.
    fn etag_listed(&self, value: &str) -> bool {
        value
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == self.etag)
    }

    /// If-Range: a strong ETag equal to ours, or our exact Last-Modified date.
    fn if_range_holds(&self, value: &str) -> bool {
        let value = value.trim();
        if value.starts_with('"') {
            return value == self.etag;
        }
        httpdate::parse_http_date(value).is_ok_and(|t| t == self.last_modified)
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn insert(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => tracing::warn!(%name, "header value not representable; omitted"),
    }
}

/// `inline` so browsers play videos and show images (the sandbox CSP keeps
/// that safe); an ASCII fallback name plus the exact UTF-8 name (RFC 6266).
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "inline; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(filename, NON_ALPHANUMERIC)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_safe_and_exact() {
        assert_eq!(
            content_disposition("a \"b\".txt"),
            "inline; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22%2Etxt"
        );
        assert!(content_disposition("été.mp4").starts_with("inline; filename=\"_t_.mp4\""));
    }

    #[test]
    fn validators_compare() {
        let v = Validators {
            etag: "\"abc\"".into(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        assert!(v.etag_listed("\"x\", \"abc\""));
        assert!(v.etag_listed("W/\"abc\""));
        assert!(v.etag_listed("*"));
        assert!(!v.etag_listed("\"abd\""));
        assert!(v.if_range_holds("\"abc\""));
        assert!(
            !v.if_range_holds("W/\"abc\""),
            "If-Range needs a strong match"
        );
        assert!(v.if_range_holds(&httpdate::fmt_http_date(v.last_modified)));
        assert!(!v.if_range_holds("Tue, 15 Nov 1994 08:12:31 GMT"));
    }
}
