//! The session cookie's names and attributes, and finding it in requests.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "sharerig_session";
/// The cookie over HTTPS: the `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling
/// subdomain cannot set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-sharerig_session";
/// Session cookies looked at per request at most (each costs a lookup).
pub const MAX_CANDIDATES: usize = 8;

/// The name the cookie has on a request that came over HTTPS or not.
pub fn name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The session cookie: never readable by scripts (`HttpOnly`), never sent
/// on cross-site requests (`SameSite=Strict`), and `Secure` when the request
/// came over HTTPS (see [`crate::handlers::is_https`]).
pub fn set(token: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        name(secure),
        if secure { "; Secure" } else { "" }
    )
}

/// Removes the cookie from the browser.
pub fn clear(secure: bool) -> String {
    set("", 0, secure)
}

/// Every non-empty session cookie of the request, under either name and in
/// any `Cookie` header: a planted duplicate cannot hide the real one.
pub fn tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            let ours = name == SESSION_COOKIE || name == SECURE_SESSION_COOKIE;
            (ours && !value.is_empty()).then_some(value)
        })
        .take(MAX_CANDIDATES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn finds_every_session_cookie_among_others() {
        let h = headers(&[
            "a=1; sharerig_session=bad; b=2",
            "__Host-sharerig_session=good",
        ]);
        assert_eq!(tokens(&h).collect::<Vec<_>>(), ["bad", "good"]);
        assert_eq!(tokens(&headers(&["a=1; sharerig_session="])).count(), 0);
        assert_eq!(tokens(&headers(&["xsharerig_session=1"])).count(), 0);
    }

    #[test]
    fn secure_cookies_take_the_host_prefix() {
        let c = set("t", 60, true);
        assert!(c.starts_with("__Host-sharerig_session=t; Path=/;"), "{c}");
        assert!(c.ends_with("; Secure") && !c.contains("Domain"), "{c}");
        let c = set("t", 60, false);
        assert!(
            c.starts_with("sharerig_session=t;") && !c.contains("Secure"),
            "{c}"
        );
        assert!(clear(false).contains("Max-Age=0"));
    }
}
