//! Session rows, the server key and the shared secret's fingerprint. What a
//! token is and how it is hashed is `crate::auth`'s; this only stores hashes.

use rusqlite::{OptionalExtension, params};

use super::{SqlContext, StorageError, Store};

/// Live sessions kept at most: a login past it ends the oldest, so logins
/// without end (a script, a leaked secret) cannot grow the table.
pub const MAX_SESSIONS: i64 = 1000;

/// `settings` keys (values are hex).
const SERVER_KEY: &str = "server_key";
const SECRET_FINGERPRINT: &str = "secret_fingerprint";

/// The stored server key; `fresh` is stored and returned the first time.
pub fn server_key(store: &Store, fresh: &str) -> Result<String, StorageError> {
    let conn = store.writer();
    conn.execute(
        "INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)",
        params![SERVER_KEY, fresh],
    )
    .ctx("storing the server key")?;
    conn.query_row(
        "SELECT value FROM settings WHERE key = ?1",
        [SERVER_KEY],
        |r| r.get(0),
    )
    .ctx("reading the server key")
}

/// Records the fingerprint of the secret the server runs with. If another
/// one was recorded, the secret changed: every session ends. Returns how
/// many did.
pub fn record_fingerprint(store: &Store, fingerprint: &str) -> Result<usize, StorageError> {
    let mut conn = store.writer();
    let tx = conn
        .transaction()
        .ctx("checking the secret's fingerprint")?;
    let stored: Option<String> = tx
        .query_row(
            "SELECT value FROM settings WHERE key = ?1",
            [SECRET_FINGERPRINT],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the secret's fingerprint")?;
    if stored.as_deref() == Some(fingerprint) {
        return Ok(0);
    }
    let ended = tx
        .execute("DELETE FROM sessions", [])
        .ctx("ending sessions of the old secret")?;
    tx.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SECRET_FINGERPRINT, fingerprint],
    )
    .ctx("storing the secret's fingerprint")?;
    tx.commit().ctx("committing the secret's fingerprint")?;
    Ok(ended)
}

/// Stores a new session; drops expired ones and the oldest past [`MAX_SESSIONS`].
pub fn insert(
    store: &Store,
    token_hash: &[u8],
    now_ms: i64,
    expires_ms: i64,
) -> Result<(), StorageError> {
    let mut conn = store.writer();
    let tx = conn.transaction().ctx("starting a session")?;
    tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now_ms])
        .ctx("removing expired sessions")?;
    tx.execute(
        "INSERT INTO sessions (token_hash, created_ms, expires_ms) VALUES (?1, ?2, ?3)",
        params![token_hash, now_ms, expires_ms],
    )
    .ctx("storing a session")?;
    tx.execute(
        "DELETE FROM sessions WHERE rowid IN (
             SELECT rowid FROM sessions ORDER BY created_ms DESC, rowid DESC
             LIMIT -1 OFFSET ?1)",
        [MAX_SESSIONS],
    )
    .ctx("ending the oldest sessions")?;
    tx.commit().ctx("committing a session")
}

/// Whether any of `token_hashes` is a live session at `now_ms`.
pub fn any_live(
    store: &Store,
    token_hashes: &[Vec<u8>],
    now_ms: i64,
) -> Result<bool, StorageError> {
    let conn = store.reader()?;
    let mut stmt = conn
        .prepare_cached("SELECT 1 FROM sessions WHERE token_hash = ?1 AND expires_ms > ?2")
        .ctx("checking a session")?;
    for hash in token_hashes {
        if stmt
            .exists(params![hash, now_ms])
            .ctx("checking a session")?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Ends the sessions of `token_hashes` (unknown ones are ignored).
pub fn end(store: &Store, token_hashes: &[Vec<u8>]) -> Result<usize, StorageError> {
    let conn = store.writer();
    let mut ended = 0;
    for hash in token_hashes {
        ended += conn
            .execute("DELETE FROM sessions WHERE token_hash = ?1", [hash])
            .ctx("ending a session")?;
    }
    Ok(ended)
}

/// Ends every session; returns how many there were.
pub fn end_all(store: &Store) -> Result<usize, StorageError> {
    store
        .writer()
        .execute("DELETE FROM sessions", [])
        .ctx("ending all sessions")
}

/// Live and expired rows (tests and stats).
pub fn count(store: &Store) -> Result<i64, StorageError> {
    store
        .reader()?
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .ctx("counting sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), 0).unwrap();
        (dir, store)
    }

    #[test]
    fn the_key_is_made_once() {
        let (_d, s) = store();
        assert_eq!(server_key(&s, "aa").unwrap(), "aa");
        assert_eq!(server_key(&s, "bb").unwrap(), "aa");
    }

    #[test]
    fn sessions_live_until_ended_or_expired() {
        let (_d, s) = store();
        insert(&s, b"one", 1_000, 2_000).unwrap();
        insert(&s, b"two", 1_000, 2_000).unwrap();
        assert!(any_live(&s, &[b"x".to_vec(), b"one".to_vec()], 1_500).unwrap());
        assert!(!any_live(&s, &[b"one".to_vec()], 2_000).unwrap(), "expired");
        assert_eq!(end(&s, &[b"one".to_vec()]).unwrap(), 1);
        assert!(!any_live(&s, &[b"one".to_vec()], 1_500).unwrap());
        assert!(any_live(&s, &[b"two".to_vec()], 1_500).unwrap());
        insert(&s, b"three", 3_000, 4_000).unwrap();
        assert_eq!(
            count(&s).unwrap(),
            1,
            "the expired one went at the next login"
        );
        assert_eq!(end_all(&s).unwrap(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let (_d, s) = store();
        for i in 0..MAX_SESSIONS + 5 {
            insert(&s, &i.to_le_bytes(), i, i64::MAX).unwrap();
        }
        assert_eq!(count(&s).unwrap(), MAX_SESSIONS);
        assert!(!any_live(&s, &[0i64.to_le_bytes().to_vec()], 0).unwrap());
        let newest = (MAX_SESSIONS + 4).to_le_bytes().to_vec();
        assert!(any_live(&s, &[newest], 0).unwrap());
    }

    #[test]
    fn a_new_fingerprint_ends_every_session() {
        let (_d, s) = store();
        assert_eq!(record_fingerprint(&s, "f1").unwrap(), 0);
        insert(&s, b"one", 1_000, 2_000).unwrap();
        assert_eq!(record_fingerprint(&s, "f1").unwrap(), 0);
        assert_eq!(count(&s).unwrap(), 1);
        assert_eq!(record_fingerprint(&s, "f2").unwrap(), 1);
        assert_eq!(count(&s).unwrap(), 0);
    }
}
