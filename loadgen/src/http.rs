//! Small HTTP helpers shared by the scenarios: why a request failed (in words that group well in
//! the summary), and reading a response body in bounded pieces.

use std::error::Error as _;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// Largest small response read whole (the upload's `{"id": ...}`, an error's JSON): 64 KiB.
pub(crate) const SMALL_BODY_LIMIT: usize = 64 * 1024;

/// Why one request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed (refused, reset, timed out): the server may be gone.
    Transport(String),
    /// The server answered, but not as share-server should (status, headers, body shape).
    Protocol(String),
    /// The bytes received are not the bytes uploaded.
    Mismatch { detail: String, offset: Option<u64> },
    /// Our side failed: reading `--file`, or the run was stopped.
    Local(String),
}

impl Failure {
    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        Failure::Transport(describe(e))
    }

    /// A short reason for the summary; ids and offsets stay out so reasons group.
    pub(crate) fn reason(&self, what: &str) -> String {
        match self {
            Failure::Transport(detail) | Failure::Protocol(detail) | Failure::Local(detail) => {
                format!("{what}: {detail}")
            }
            Failure::Mismatch { .. } => format!("{what}: content mismatch"),
        }
    }
}

/// A reqwest client builder for `host`. The TLS that goose turns on in reqwest (rustls with the
/// platform verifier) loads the system's CA certificates when a client is built, and fails with
/// a bare "builder error" where there are none: a minimal VM guest or container. A plain
/// `http://` host never does TLS, so its clients trust no CA and need no store.
pub fn client_builder(host: &str) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if is_plain_http(host) {
        builder.tls_certs_only(std::iter::empty())
    } else {
        builder
    }
}

/// `host` is an `http://` URL (no TLS).
pub(crate) fn is_plain_http(host: &str) -> bool {
    host.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// A reqwest error in words: its kind, then its innermost cause (which, unlike reqwest's own
/// message, does not repeat the URL).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else if e.is_request() {
        "request failed"
    } else {
        "error"
    };
    let mut cause = e.source();
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    match innermost {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_owned(),
    }
}

/// The next piece of a response body, or `Local` when the run is being stopped.
pub(crate) async fn next_chunk(
    response: &mut reqwest::Response,
    cancel: &CancellationToken,
) -> Result<Option<Bytes>, Failure> {
    tokio::select! {
        chunk = response.chunk() => chunk.map_err(|e| Failure::transport(&e)),
        () = cancel.cancelled() => Err(Failure::Local("the run was stopped".into())),
    }
}

/// A whole small body (at most `SMALL_BODY_LIMIT` bytes).
pub(crate) async fn read_small(
    response: &mut reqwest::Response,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(response, cancel).await? {
        if body.len() + chunk.len() > SMALL_BODY_LIMIT {
            return Err(Failure::Protocol(format!(
                "response body over {SMALL_BODY_LIMIT} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `HTTP 507 Insufficient Storage: <the server's error message>`, the message cut to 120
/// characters.
pub(crate) async fn status_failure(
    mut response: reqwest::Response,
    cancel: &CancellationToken,
) -> Failure {
    let status = response.status();
    let message = read_small(&mut response, cancel)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    match message {
        Some(m) => Failure::Protocol(format!(
            "HTTP {status}: {}",
            m.chars().take(120).collect::<String>()
        )),
        None => Failure::Protocol(format!("HTTP {status}")),
    }
}

/// The id in the server's `{"id": "..."}` answer to creating `what`.
pub(crate) async fn read_id(
    response: &mut reqwest::Response,
    cancel: &CancellationToken,
    what: &str,
) -> Result<String, Failure> {
    let body = read_small(response, cancel).await?;
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
        .ok_or_else(|| Failure::Protocol(format!("{what} answer without an \"id\"")))
}

#[cfg(test)]
mod tests {
    use super::is_plain_http;

    #[test]
    fn plain_http_hosts() {
        assert!(is_plain_http("http://127.0.0.1:4001"));
        assert!(is_plain_http("HTTP://example.org"));
        assert!(!is_plain_http("https://example.org"));
        assert!(!is_plain_http("http"));
    }
}
