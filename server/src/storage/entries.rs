//! Entry rows: the life of an upload (`uploading` → `complete`), reads,
//! edits and deletion.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqlContext, StorageError, Store, chunks};
use crate::entry::{Entry, EntryId, Expiration};

/// What an upload knows when it starts.
#[derive(Clone)]
pub struct NewUpload {
    pub id: EntryId,
    pub filename: String,
    pub chunk_size: u64,
    pub upload_time_ms: i64,
    pub expiration: Expiration,
}

/// What an upload knows when its body has been received.
pub struct FinishedUpload {
    pub size: u64,
    pub content_type: String,
    pub note: Option<String>,
}

/// Inserts the in-progress row. Fails with a constraint error if the id exists.
pub fn start_upload(store: &Store, upload: &NewUpload) -> Result<(), StorageError> {
    store
        .writer()
        .execute(
            "INSERT INTO entries (id, filename, content_type, size, chunk_size, note,
                                  upload_time_ms, expiration_time_ms, state)
             VALUES (?1, ?2, 'application/octet-stream', 0, ?3, NULL, ?4, ?5, 'uploading')",
            params![
                upload.id.as_str(),
                upload.filename,
                upload.chunk_size as i64,
                upload.upload_time_ms,
                upload.expiration.to_millis()
            ],
        )
        .ctx("inserting an upload")?;
    Ok(())
}

/// Makes an upload visible. The commit is made durable (`synchronous=FULL`
/// for this one transaction fsyncs the WAL, covering every chunk before it):
/// once the client hears "done", a power cut does not lose the file.
pub fn finish_upload(
    store: &Store,
    id: &EntryId,
    done: &FinishedUpload,
) -> Result<(), StorageError> {
    let conn = store.writer();
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx("raising durability")?;
    let updated = conn
        .execute(
            "UPDATE entries SET size = ?2, content_type = ?3, note = ?4, state = 'complete'
             WHERE id = ?1 AND state = 'uploading'",
            params![id.as_str(), done.size as i64, done.content_type, done.note],
        )
        .ctx("completing an upload");
    let restored = conn
        .pragma_update(None, "synchronous", "NORMAL")
        .ctx("restoring durability");
    match updated? {
        0 => Err(StorageError::NotFound),
        _ => restored,
    }
}

/// Removes an entry: its row first (one short transaction, so it disappears
/// at once), then its chunks in bounded batches. A crash between the two
/// leaves orphan chunks that GC removes.
pub fn delete(store: &Store, id: &EntryId) -> Result<(), StorageError> {
    let removed = store
        .writer()
        .execute("DELETE FROM entries WHERE id = ?1", [id.as_str()])
        .ctx("deleting an entry")?;
    chunks::delete_all(store, id)?;
    if removed == 0 {
        return Err(StorageError::NotFound);
    }
    Ok(())
}

/// Deletes a complete entry; an upload in progress is not found.
pub fn delete_complete(store: &Store, id: &EntryId) -> Result<(), StorageError> {
    let is_complete = store
        .reader()
        .query_row(
            "SELECT 1 FROM entries WHERE id = ?1 AND state = 'complete'",
            [id.as_str()],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up an entry")?
        .is_some();
    if !is_complete {
        return Err(StorageError::NotFound);
    }
    // Deleting is how people make room: it must work on a full disk.
    store.with_reserve(|| delete(store, id))?;
    store.refill_reserve();
    Ok(())
}

const ENTRY_COLUMNS: &str = "e.id, e.filename, e.content_type, e.size, e.note, e.upload_time_ms,
     e.expiration_time_ms, e.chunk_size,
     (SELECT COUNT(*) FROM downloads d WHERE d.entry_id = e.id)";

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    let uploaded_ms: i64 = row.get(5)?;
    let expires = match Expiration::from_millis(row.get(6)?) {
        Expiration::Never => None,
        Expiration::At(t) => Some(t),
    };
    Ok(Entry {
        id: row.get(0)?,
        filename: row.get(1)?,
        content_type: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        note: row.get(4)?,
        uploaded: chrono::DateTime::from_timestamp_millis(uploaded_ms).unwrap_or_default(),
        expires,
        chunk_size: row.get::<_, i64>(7)? as u64,
        downloads: row.get::<_, i64>(8)? as u64,
    })
}

/// A complete, unexpired entry.
pub fn get(store: &Store, id: &EntryId, now_ms: i64) -> Result<Entry, StorageError> {
    get_with(&store.reader(), id, now_ms)
}

fn get_with(conn: &Connection, id: &EntryId, now_ms: i64) -> Result<Entry, StorageError> {
    conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM entries e
         WHERE e.id = ?1 AND e.state = 'complete' AND e.expiration_time_ms > ?2"
    ))
    .ctx("preparing an entry read")?
    .query_row(params![id.as_str(), now_ms], entry_from_row)
    .optional()
    .ctx("reading an entry")?
    .ok_or(StorageError::NotFound)
}

/// Every complete, unexpired entry, newest first.
pub fn list(store: &Store, now_ms: i64) -> Result<Vec<Entry>, StorageError> {
    let conn = store.reader();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e
             WHERE e.state = 'complete' AND e.expiration_time_ms > ?1
             ORDER BY e.upload_time_ms DESC, e.rowid DESC"
        ))
        .ctx("preparing the entry list")?;
    let rows = stmt
        .query_map([now_ms], entry_from_row)
        .ctx("listing entries")?;
    rows.collect::<Result<_, _>>().ctx("listing entries")
}

/// Fields an edit may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct EntryEdit {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub expiration: Option<Expiration>,
    /// `Some(None)` clears the note.
    pub note: Option<Option<String>>,
}

/// Applies an edit to a complete, unexpired entry and returns it.
pub fn update(
    store: &Store,
    id: &EntryId,
    edit: &EntryEdit,
    now_ms: i64,
) -> Result<Entry, StorageError> {
    let conn = store.writer();
    let changed = conn
        .execute(
            "UPDATE entries SET
                filename = COALESCE(?2, filename),
                content_type = COALESCE(?3, content_type),
                expiration_time_ms = COALESCE(?4, expiration_time_ms),
                note = CASE WHEN ?5 THEN ?6 ELSE note END
             WHERE id = ?1 AND state = 'complete' AND expiration_time_ms > ?7",
            params![
                id.as_str(),
                edit.filename,
                edit.content_type,
                edit.expiration.map(Expiration::to_millis),
                edit.note.is_some(),
                edit.note.clone().flatten(),
                now_ms
            ],
        )
        .ctx("updating an entry")?;
    if changed == 0 {
        return Err(StorageError::NotFound);
    }
    get_with(&conn, id, now_ms)
}

/// Default expiration for new uploads, in days (`None`: never). Settings
/// editing arrives with the web UI; until then this is the reference's default.
pub fn default_expiration_days(store: &Store) -> Result<Option<u32>, StorageError> {
    const DEFAULT_DAYS: u32 = 30;
    let value: Option<String> = store
        .reader()
        .query_row(
            "SELECT value FROM settings WHERE key = 'default_expiration_days'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading settings")?;
    Ok(match value.as_deref() {
        None => Some(DEFAULT_DAYS),
        Some("never") => None,
        Some(v) => Some(v.parse().unwrap_or(DEFAULT_DAYS)),
    })
}
