//! Who may use the debug listener.
//!
//! It has no login: being able to connect is the permission (loopback by
//! default). Two browser tricks could still reach it from a web page:
//! - DNS rebinding: a page on `evil.example` re-points that name at
//!   127.0.0.1 and reads the answers as same-origin. The request then says
//!   `Host: evil.example`, so only loopback names, IP addresses (rebinding
//!   needs a name) and names the operator allows (`--debug-allowed-host`)
//!   are answered.
//! - A cross-origin form or `fetch` POST, which browsers send without asking
//!   first when it looks like a form. POSTs must carry
//!   `Content-Type: application/json` or `X-Sharerig-Debug: 1`, which no
//!   page can send cross-origin without a CORS preflight we never grant.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The header a debug POST may carry instead of a JSON content type.
pub const DEBUG_HEADER: &str = "x-sharerig-debug";

/// Host names answered besides the loopback ones and IP addresses.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    pub fn new(names: &[String]) -> Self {
        AllowedHosts(Arc::new(
            names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        ))
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
            || self.0.contains(&name)
    }
}

/// The name part of a `Host` value: without its port, brackets kept.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Refuses requests the debug listener must not answer (403, saying why).
pub async fn guard(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    match check(request.method(), request.headers(), &allowed) {
        Ok(()) => next.run(request).await,
        Err(msg) => ApiError::Forbidden(msg).into_response(),
    }
}

/// The decision, apart from the middleware so it can be tested alone.
pub fn check(method: &Method, headers: &HeaderMap, allowed: &AllowedHosts) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !allowed.allows(host) {
        return Err(format!(
            "the debug listener answers only Host 127.0.0.1, localhost, [::1], an IP address \
             or a name given with --debug-allowed-host; not {host:?}"
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json || headers.contains_key(DEBUG_HEADER) {
        return Ok(());
    }
    Err(format!(
        "a debug {method} needs Content-Type: application/json or an X-Sharerig-Debug: 1 header \
         (so that no web page can send it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_ips_and_allowed_names_only() {
        let allowed = AllowedHosts::new(&["Metrics.Internal".to_owned()]);
        let get = |host: &'static str| check(&Method::GET, &headers(&[("host", host)]), &allowed);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:6060",
            "localhost:6060",
            "LOCALHOST",
            "[::1]:6060",
            "[::1]",
            "[fdaa::3]:6060",
            "10.0.0.7:6060",
            "metrics.internal:6060",
        ] {
            assert!(get(ok).is_ok(), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:6060",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            let msg = get(refused).unwrap_err();
            assert!(msg.contains("--debug-allowed-host"), "{msg}");
        }
        assert!(check(&Method::GET, &HeaderMap::new(), &allowed).is_err());
    }

    #[test]
    fn posts_need_what_a_form_cannot_send() {
        let allowed = AllowedHosts::default();
        let post = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![("host", "127.0.0.1:6060")];
            pairs.extend_from_slice(extra);
            check(&Method::POST, &headers(&pairs), &allowed)
        };
        let msg = post(&[("content-type", "text/plain")]).unwrap_err();
        assert!(msg.contains("application/json"), "{msg}");
        assert!(post(&[]).is_err());
        assert!(post(&[("content-type", "application/x-www-form-urlencoded")]).is_err());
        assert!(post(&[("content-type", "application/json; charset=utf-8")]).is_ok());
        assert!(post(&[("x-sharerig-debug", "1")]).is_ok());
    }
}
