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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]. Refuses a newer database
/// instead of guessing.
pub fn apply(conn: &mut Connection) -> Result<(), StorageError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .ctx("creating schema_version")?;
    let current = current_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
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
