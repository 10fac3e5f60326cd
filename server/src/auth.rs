//! Shared-secret login and server-side sessions.
//!
//! A login gets a random 256-bit token in its cookie; the database keeps
//! only HMAC-SHA256(server key, token) and the session's expiry. The server
//! key is 32 bytes from the OS's random number generator, made on first
//! start and kept in the database: a captured cookie says nothing about the
//! shared secret, and the sessions table alone logs no one in.
//!
//! A session ends when it expires ([`SESSION_LIFETIME`]), when it logs out,
//! when the owner logs out everywhere, and when the server starts with
//! another secret: the secret's fingerprint (an HMAC with the server key,
//! never the secret) is kept, and a different one ends every session.
//!
//! On a full disk a login cannot be stored, yet the owner must still log in
//! to delete files: such a session is kept in memory instead (at most
//! [`MAX_UNSTORED_SESSIONS`]) until the server stops.

pub mod cookie;
pub mod rate_limit;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use hmac::{KeyInit, Mac};
use rand::TryRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{Db, StorageError, Store, now_millis, sessions};

/// As the reference server: a login lasts about a month.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Random bytes in a session token (and in the server key).
const TOKEN_BYTES: usize = 32;
/// Sessions started while the disk was full, kept in memory (the oldest
/// goes first past this).
pub const MAX_UNSTORED_SESSIONS: usize = 16;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Checks secrets, issues session tokens and hashes them.
pub struct Sessions {
    /// The server key as stored (hex of 32 random bytes); HMAC takes it as is.
    key: String,
    /// The running secret's fingerprint.
    fingerprint: [u8; 32],
    /// Token hash → (started, expires) of sessions the full disk refused.
    unstored: Mutex<HashMap<Vec<u8>, (i64, i64)>>,
}

impl Sessions {
    /// At start-up (blocking): loads the server key, making it on first
    /// start, and ends every session if the secret is not the last one's.
    pub fn open(store: &Store, secret: &str) -> Result<Sessions, StorageError> {
        let fresh = random_hex().map_err(|source| StorageError::Io {
            context: "making the server key",
            source,
        })?;
        let key = sessions::server_key(store, &fresh)?;
        let mut s = Sessions {
            key,
            fingerprint: [0; 32],
            unstored: Mutex::new(HashMap::new()),
        };
        s.fingerprint = s.fingerprint_of(secret);
        let ended = sessions::record_fingerprint(store, &hex::encode(s.fingerprint))?;
        if ended > 0 {
            tracing::info!(ended, "the shared secret changed: every session ended");
        }
        Ok(s)
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    fn fingerprint_of(&self, secret: &str) -> [u8; 32] {
        self.mac(b"sharerig-secret-v1:", secret.as_bytes())
    }

    /// Constant-time comparison of fingerprints (lengths leak nothing either).
    pub fn secret_matches(&self, candidate: &str) -> bool {
        self.fingerprint_of(candidate)
            .as_slice()
            .ct_eq(self.fingerprint.as_slice())
            .into()
    }

    /// What the database keeps of a token; `None` for what no token looks like.
    pub fn token_hash(&self, token: &str) -> Option<Vec<u8>> {
        let well_formed =
            token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then(|| self.mac(b"sharerig-session-v2:", token.as_bytes()).to_vec())
    }

    /// The stored hashes of the request's session cookies.
    fn hashes(&self, headers: &HeaderMap) -> Vec<Vec<u8>> {
        cookie::tokens(headers)
            .filter_map(|t| self.token_hash(t))
            .collect()
    }

    /// Starts a session; returns the token for its cookie.
    pub async fn start(&self, db: &Db) -> Result<String, ApiError> {
        let token = random_hex()
            .map_err(|e| ApiError::Internal(format!("reading the OS random source: {e}")))?;
        let hash = self
            .token_hash(&token)
            .ok_or_else(|| ApiError::Internal("a fresh token is malformed".into()))?;
        let now = now_millis();
        let expires = now.saturating_add(SESSION_LIFETIME.as_millis() as i64);
        let stored = {
            let hash = hash.clone();
            db.run(move |s| sessions::insert(s, &hash, now, expires))
                .await
        };
        match stored {
            Ok(()) => {}
            Err(e) if e.is_disk_full() => {
                tracing::warn!(error = %e, "disk full: the new session lives in memory until the server stops");
                let mut unstored = self.unstored();
                if unstored.len() >= MAX_UNSTORED_SESSIONS
                    && let Some(oldest) = unstored
                        .iter()
                        .min_by_key(|(_, (started, _))| *started)
                        .map(|(h, _)| h.clone())
                {
                    unstored.remove(&oldest);
                }
                unstored.insert(hash, (now, expires));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(token)
    }

    fn unstored(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (i64, i64)>> {
        // Plain data: still valid after a panic elsewhere.
        self.unstored.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any session cookie of the request is a live session.
    pub async fn is_live(&self, db: &Db, headers: &HeaderMap) -> Result<bool, StorageError> {
        let hashes = self.hashes(headers);
        let now = now_millis();
        let in_memory = {
            let unstored = self.unstored();
            hashes
                .iter()
                .any(|h| unstored.get(h).is_some_and(|(_, expires)| *expires > now))
        };
        if in_memory {
            return Ok(true);
        }
        if hashes.is_empty() {
            return Ok(false);
        }
        db.run(move |s| sessions::any_live(s, &hashes, now)).await
    }

    /// Ends the sessions of the request's cookies.
    pub async fn end(&self, db: &Db, headers: &HeaderMap) -> Result<usize, StorageError> {
        let mut hashes = self.hashes(headers);
        let in_memory = {
            let mut unstored = self.unstored();
            let before = hashes.len();
            hashes.retain(|h| unstored.remove(h).is_none());
            before - hashes.len()
        };
        if hashes.is_empty() {
            return Ok(in_memory);
        }
        Ok(in_memory + db.run(move |s| sessions::end(s, &hashes)).await?)
    }

    /// Ends every session.
    pub async fn end_all(&self, db: &Db) -> Result<usize, StorageError> {
        let in_memory = std::mem::take(&mut *self.unstored()).len();
        Ok(in_memory + db.run(sessions::end_all).await?)
    }
}

/// 32 bytes from the OS's random number generator, in hex.
fn random_hex() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

/// Extractor for routes that need a logged-in user; rejects with 401.
pub struct Authenticated;

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.sessions.is_live(&state.db, &parts.headers).await? {
            true => Ok(Authenticated),
            false => Err(ApiError::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir, secret: &str) -> (Store, Sessions) {
        let store = Store::open(&dir.path().join("s.db"), 0).unwrap();
        let sessions = Sessions::open(&store, secret).unwrap();
        (store, sessions)
    }

    #[test]
    fn secrets_compare() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = open(&dir, "correct-horse-battery");
        assert!(s.secret_matches("correct-horse-battery"));
        assert!(!s.secret_matches("correct-horse-batter"));
        assert!(!s.secret_matches(""));
    }

    #[test]
    fn the_key_survives_restarts_and_is_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (store, a) = open(&dir, "correct-horse-battery");
        drop(store);
        let (_store, b) = open(&dir, "correct-horse-battery");
        assert_eq!(a.key, b.key);
        assert_eq!(a.key.len(), 64);
        assert_ne!(a.key, hex::encode("correct-horse-battery"));
        let other = tempfile::tempdir().unwrap();
        let (_store, c) = open(&other, "correct-horse-battery");
        assert_ne!(a.key, c.key, "each database makes its own key");
    }

    #[test]
    fn only_well_formed_tokens_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = open(&dir, "correct-horse-battery");
        let token = random_hex().unwrap();
        assert_eq!(s.token_hash(&token).map(|h| h.len()), Some(32));
        assert_ne!(s.token_hash(&token), s.token_hash(&random_hex().unwrap()));
        assert_eq!(s.token_hash("1700000000000.deadbeef"), None);
        assert_eq!(s.token_hash(&"g".repeat(64)), None);
        assert_eq!(s.token_hash(""), None);
    }
}
