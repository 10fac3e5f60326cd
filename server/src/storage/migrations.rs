//! Schema migrations. `schema_version` holds the number of migrations applied;
//! each migration runs in its own transaction. Append, never edit.

use rusqlite::Connection;

use super::{SqlContext, StorageError};

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: entries, their chunks, download history, settings.
    r#"
    CREATE TABLE entries (
        id                  TEXT PRIMARY KEY NOT NULL,
        filename            TEXT NOT NULL,
        content_type        TEXT NOT NULL,
        size                INTEGER NOT NULL DEFAULT 0,
        chunk_size          INTEGER NOT NULL,
        note                TEXT,
        upload_time_ms      INTEGER NOT NULL,
        expiration_time_ms  INTEGER NOT NULL,
        -- 'uploading' rows are invisible to readers and are the in-progress
        -- marker garbage collection respects; 'complete' rows are served.
        state               TEXT NOT NULL CHECK (state IN ('uploading', 'complete'))
    );
    CREATE INDEX entries_by_expiration ON entries (state, expiration_time_ms);

    -- No foreign key to entries: an entry row is removed first (one short
    -- transaction), its chunks afterwards in bounded batches; chunks whose
    -- entry is gone are orphans that GC removes.
    CREATE TABLE entries_data (
        id           TEXT NOT NULL,
        chunk_index  INTEGER NOT NULL,
        chunk        BLOB NOT NULL,
        PRIMARY KEY (id, chunk_index)
    );

    CREATE TABLE downloads (
        entry_id          TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        download_time_ms  INTEGER NOT NULL,
        client_ip         TEXT NOT NULL,
        user_agent        TEXT NOT NULL
    );
    CREATE INDEX downloads_by_entry ON downloads (entry_id, download_time_ms);

    CREATE TABLE settings (
        key    TEXT PRIMARY KEY NOT NULL,
        value  TEXT NOT NULL
    );
    "#,
    // 2: guest links, which link uploaded an entry, per-entry download limits.
    r#"
    CREATE TABLE guest_links (
        id                      TEXT PRIMARY KEY NOT NULL,
        label                   TEXT NOT NULL,
        -- NULL: no limit.
        max_file_bytes          INTEGER,
        max_file_uploads        INTEGER,
        -- Lifetime of files uploaded through the link, in seconds; NULL: never expire.
        file_lifetime_s         INTEGER,
        created_time_ms         INTEGER NOT NULL,
        url_expiration_time_ms  INTEGER NOT NULL,
        disabled                INTEGER NOT NULL DEFAULT 0
    );

    -- The link an entry came through (NULL: an owner's upload). Its uploads
    -- are counted from these rows, 'uploading' ones included, so parallel
    -- guest uploads cannot pass a link's limit together.
    ALTER TABLE entries ADD COLUMN guest_link_id TEXT;
    CREATE INDEX entries_by_guest_link ON entries (guest_link_id);

    -- NULL: unlimited; else the entry stops serving after this many downloads.
    ALTER TABLE entries ADD COLUMN max_downloads INTEGER;
    "#,
    // 3: a download counter per entry, and history rows with a stable id.
    // The counter is the total and what download limits check, so history
    // rows can be pruned (the last 1,000 per entry are kept, here and by
    // `storage::downloads::KEPT_PER_ENTRY`). `id INTEGER PRIMARY KEY` is the
    // paging cursor: unlike a bare rowid, VACUUM does not renumber it.
    r#"
    ALTER TABLE entries ADD COLUMN download_count INTEGER NOT NULL DEFAULT 0;
    UPDATE entries SET download_count =
        (SELECT COUNT(*) FROM downloads d WHERE d.entry_id = entries.id);

    CREATE TABLE downloads_v3 (
        id                INTEGER PRIMARY KEY,
        entry_id          TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        download_time_ms  INTEGER NOT NULL,
        client_ip         TEXT NOT NULL,
        user_agent        TEXT NOT NULL
    );
    INSERT INTO downloads_v3 (entry_id, download_time_ms, client_ip, user_agent)
        SELECT entry_id, download_time_ms, client_ip, user_agent FROM (
            SELECT *, rowid AS old, ROW_NUMBER() OVER (
                PARTITION BY entry_id ORDER BY download_time_ms DESC, rowid DESC) AS newer
            FROM downloads)
        WHERE newer <= 1000
        ORDER BY download_time_ms, old;
    DROP TABLE downloads;
    ALTER TABLE downloads_v3 RENAME TO downloads;
    CREATE INDEX downloads_by_entry ON downloads (entry_id, id);
    "#,
    // 4: server-side sessions, so logging out ends one for good. `token_hash`
    // is HMAC-SHA256(server key, cookie token): the table alone logs no one in.
    // The server key and the secret's fingerprint live in `settings`.
    r#"
    CREATE TABLE sessions (
        token_hash  BLOB PRIMARY KEY NOT NULL,
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_created ON sessions (created_ms);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]. Refuses a newer database
/// instead of guessing.
pub fn apply(conn: &mut Connection) -> Result<(), StorageError> {
    apply_up_to(conn, MIGRATIONS.len())
}

/// Applies the first `n` migrations (tests start from older schemas).
fn apply_up_to(conn: &mut Connection, n: usize) -> Result<(), StorageError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .ctx("creating schema_version")?;
    let current = current_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS[..n].iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction().ctx("starting a migration")?;
        tx.execute_batch(sql).ctx("applying a migration")?;
        tx.execute("DELETE FROM schema_version", [])
            .ctx("recording the schema version")?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .ctx("recording the schema version")?;
        tx.commit().ctx("committing a migration")?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

/// The applied version; 0 for a new database.
pub fn current_version(conn: &Connection) -> Result<i64, StorageError> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
    .ctx("reading the schema version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn version_3_counts_downloads_and_keeps_the_last_1000() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        apply_up_to(&mut conn, 2).unwrap();
        conn.execute_batch(
            "INSERT INTO entries (id, filename, content_type, chunk_size, upload_time_ms,
                                  expiration_time_ms, state)
             VALUES ('a', 'a', 't', 1, 0, 0, 'complete'), ('b', 'b', 't', 1, 0, 0, 'complete');
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1005)
             INSERT INTO downloads SELECT 'a', i, '1.2.3.4', 'ua' FROM n;
             INSERT INTO downloads VALUES ('b', 7, '::1', 'ua');",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let q = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(q("SELECT download_count FROM entries WHERE id = 'a'"), 1005);
        assert_eq!(q("SELECT download_count FROM entries WHERE id = 'b'"), 1);
        assert_eq!(
            q("SELECT COUNT(*) FROM downloads WHERE entry_id = 'a'"),
            1000
        );
        assert_eq!(
            q("SELECT MIN(download_time_ms) FROM downloads WHERE entry_id = 'a'"),
            6,
            "the oldest five are gone"
        );
        assert_eq!(
            q(
                "SELECT COUNT(*) FROM downloads d1 JOIN downloads d2 ON d1.entry_id = d2.entry_id
               AND d1.id < d2.id AND d1.download_time_ms > d2.download_time_ms"
            ),
            0,
            "ids follow time"
        );
        conn.execute("DELETE FROM entries WHERE id = 'b'", [])
            .unwrap();
        assert_eq!(
            q("SELECT COUNT(*) FROM downloads WHERE entry_id = 'b'"),
            0,
            "still cascade-deleted"
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute("UPDATE schema_version SET version = 999", [])
            .unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StorageError::SchemaTooNew { found: 999, .. })
        ));
    }
}
