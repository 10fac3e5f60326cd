//! HTTP handlers, one module per resource. They translate requests into
//! calls on `storage`, `upload` and `download`, and results into responses.

pub mod auth;
pub mod debug;
pub mod download;
pub mod entries;
pub mod health;

use std::net::SocketAddr;

use axum::http::HeaderMap;

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
