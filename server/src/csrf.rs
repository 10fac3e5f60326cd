//! CSRF defence for cookie-authenticated state changes.
//!
//! The session cookie is `SameSite=Strict`, so browsers leave it off
//! cross-site requests. But a "site" is the registrable domain: a page on a
//! sibling subdomain is same-site and would still get the cookie sent (as
//! would a browser that ignores SameSite). So a state-changing request (any
//! method but GET, HEAD, OPTIONS) that carries our cookie must also show it
//! comes from our own origin:
//! - `Origin` present: its host and port must be the request's `Host`
//!   (`X-Forwarded-Host` behind a proxy); `Origin: null` is refused.
//! - no `Origin` but `Sec-Fetch-Site`: it must be `same-origin` or `none`.
//! - neither: not a browser (browsers send `Origin` on every such request):
//!   curl and scripts pass.
//!
//! Requests without the cookie are not checked: they act as nobody.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::cookie;
use crate::error::ApiError;
use crate::state::AppState;

/// Refuses a cross-origin state change that carries the session cookie (403).
pub async fn refuse_cross_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check(request.method(), request.headers(), state.behind_proxy) {
        Ok(()) => next.run(request).await,
        Err(msg) => ApiError::Forbidden(msg).into_response(),
    }
}

/// The decision, apart from the middleware so it can be tested alone.
pub fn check(method: &Method, headers: &HeaderMap, behind_proxy: bool) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if cookie::tokens(headers).next().is_none() {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = text("origin") {
        let host = behind_proxy
            .then(|| text("x-forwarded-host"))
            .flatten()
            .or_else(|| text("host"))
            .unwrap_or("");
        return match same_origin(origin, host) {
            true => Ok(()),
            false => Err(format!(
                "cross-origin request refused: Origin {origin} is not this server ({host})"
            )),
        };
    }
    match text("sec-fetch-site") {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(site) => Err(format!(
            "cross-origin request refused: Sec-Fetch-Site is {site}"
        )),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the authority `host`
/// (a Host header); default ports are equal to none.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and anything else that is not an origin
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let norm = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(stripped) => stripped.to_owned(),
            None => a,
        }
    };
    !host.is_empty() && norm(authority) == norm(host)
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

    const COOKIE: (&str, &str) = ("cookie", "sharerig_session=1.abc");
    const HOST: (&str, &str) = ("host", "share.example:4001");

    #[test]
    fn same_origin_passes_cross_origin_does_not() {
        let post = Method::POST;
        let ok = headers(&[COOKIE, HOST, ("origin", "http://share.example:4001")]);
        assert!(check(&post, &ok, false).is_ok());
        let evil = headers(&[COOKIE, HOST, ("origin", "http://evil.example")]);
        let msg = check(&post, &evil, false).unwrap_err();
        assert!(msg.contains("Origin http://evil.example"), "{msg}");
        assert!(check(&Method::DELETE, &evil, false).is_err());
        assert!(check(&Method::PUT, &evil, false).is_err());
        assert!(
            check(&Method::GET, &evil, false).is_ok(),
            "reads change nothing"
        );
        let null = headers(&[COOKIE, HOST, ("origin", "null")]);
        assert!(check(&post, &null, false).is_err());
        let port = headers(&[COOKIE, HOST, ("origin", "http://share.example:4002")]);
        assert!(check(&post, &port, false).is_err());
    }

    #[test]
    fn without_the_cookie_nothing_is_checked() {
        let evil = headers(&[HOST, ("origin", "http://evil.example")]);
        assert!(check(&Method::POST, &evil, false).is_ok());
    }

    #[test]
    fn non_browsers_pass_and_fetch_metadata_counts() {
        assert!(check(&Method::POST, &headers(&[COOKIE, HOST]), false).is_ok());
        let cross = headers(&[COOKIE, HOST, ("sec-fetch-site", "cross-site")]);
        assert!(check(&Method::POST, &cross, false).is_err());
        let same_site = headers(&[COOKIE, HOST, ("sec-fetch-site", "same-site")]);
        assert!(check(&Method::POST, &same_site, false).is_err());
        let same = headers(&[COOKIE, HOST, ("sec-fetch-site", "same-origin")]);
        assert!(check(&Method::POST, &same, false).is_ok());
    }

    #[test]
    fn default_ports_and_proxies() {
        assert!(same_origin("https://share.example", "share.example:443"));
        assert!(same_origin("http://share.example:80", "share.example"));
        assert!(same_origin("HTTP://Share.Example", "share.example"));
        assert!(!same_origin("https://share.example", "share.example:80"));
        assert!(!same_origin("ftp://share.example", "share.example"));
        let proxied = headers(&[
            COOKIE,
            ("host", "127.0.0.1:4001"),
            ("x-forwarded-host", "share.example"),
            ("origin", "https://share.example"),
        ]);
        assert!(check(&Method::POST, &proxied, true).is_ok());
        assert!(
            check(&Method::POST, &proxied, false).is_err(),
            "X-Forwarded-Host is only trusted behind a proxy"
        );
    }
}
