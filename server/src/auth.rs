//! Shared-secret login and session cookies.
//!
//! A session is a signed token `<issued ms>.<HMAC-SHA256(secret, issued ms)>`:
//! it survives restarts without a sessions table, expires after
//! [`SESSION_LIFETIME`], and every session ends when the secret changes.
//! Logging out clears the cookie in that browser.

pub mod rate_limit;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HeaderValue};
use axum::http::request::Parts;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "sharerig_session";
/// As the reference server: a login lasts about a month.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

type HmacSha256 = hmac::Hmac<Sha256>;

/// Checks secrets and issues/verifies session tokens.
pub struct Sessions {
    secret: String,
}

impl Sessions {
    pub fn new(secret: String) -> Self {
        Sessions { secret }
    }

    /// Constant-time comparison (of digests, so lengths leak nothing either).
    pub fn secret_matches(&self, candidate: &str) -> bool {
        let a = Sha256::digest(self.secret.as_bytes());
        let b = Sha256::digest(candidate.as_bytes());
        a.as_slice().ct_eq(b.as_slice()).into()
    }

    fn mac(&self, issued_ms: i64) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"sharerig-session-v1:");
        mac.update(issued_ms.to_string().as_bytes());
        mac
    }

    pub fn issue(&self, now_ms: i64) -> String {
        let tag = self.mac(now_ms).finalize().into_bytes();
        format!("{now_ms}.{}", hex::encode(tag))
    }

    pub fn verify(&self, token: &str, now_ms: i64) -> bool {
        let Some((issued, tag)) = token.split_once('.') else {
            return false;
        };
        let (Ok(issued_ms), Ok(tag)) = (issued.parse::<i64>(), hex::decode(tag)) else {
            return false;
        };
        let age = now_ms.saturating_sub(issued_ms);
        if !(0..=SESSION_LIFETIME.as_millis() as i64).contains(&age) {
            return false;
        }
        self.mac(issued_ms).verify_slice(&tag).is_ok()
    }

    /// The session cookie: never readable by scripts (`HttpOnly`), never
    /// sent on cross-site requests (`SameSite=Strict`), and `Secure` when the
    /// request came over HTTPS (see [`crate::handlers::is_https`]).
    pub fn cookie(&self, token: &str, secure: bool) -> String {
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_LIFETIME.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    pub fn clearing_cookie(&self) -> String {
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// Our session token from a `Cookie` header, if present.
pub(crate) fn session_token(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok()?.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then_some(value)
    })
}

/// Extractor for routes that need a logged-in user; rejects with 401.
pub struct Authenticated;

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let now = crate::storage::now_millis();
        let ok = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(session_token)
            .any(|t| state.sessions.verify(t, now));
        if ok {
            Ok(Authenticated)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let s = Sessions::new("s3cret".into());
        let t = s.issue(1_000);
        assert!(s.verify(&t, 1_000));
        assert!(s.verify(&t, 1_000 + SESSION_LIFETIME.as_millis() as i64));
        assert!(!s.verify(&t, 1_001 + SESSION_LIFETIME.as_millis() as i64));
        assert!(!s.verify(&t, 999), "issued in the future");
        let other = Sessions::new("other".into());
        assert!(!other.verify(&t, 1_000), "a new secret ends old sessions");
        assert!(!s.verify("1000.00", 1_000));
        assert!(
            !s.verify(&t.replace("1000.", "1001."), 1_001),
            "time is signed"
        );
        assert!(!s.verify("garbage", 1_000));
    }

    #[test]
    fn secrets_compare() {
        let s = Sessions::new("s3cret".into());
        assert!(s.secret_matches("s3cret"));
        assert!(!s.secret_matches("s3cre"));
        assert!(!s.secret_matches(""));
    }

    #[test]
    fn finds_our_cookie_among_others() {
        let v = HeaderValue::from_static("a=1; sharerig_session=abc.def; b=2");
        assert_eq!(session_token(&v), Some("abc.def"));
        assert_eq!(session_token(&HeaderValue::from_static("a=1")), None);
    }
}
