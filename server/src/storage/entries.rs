//! Entry rows: the life of an upload (`uploading` → `complete`), reads,
//! edits and deletion.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqlContext, StorageError, Store, chunks, guest_links};
use crate::entry::{Entry, EntryId, Expiration};
use crate::guest_links::GuestLinkId;

/// What an upload knows when it starts.
#[derive(Clone)]
pub struct NewUpload {
    pub id: EntryId,
    pub filename: String,
    pub chunk_size: u64,
    pub upload_time_ms: i64,
    pub expiration: Expiration,
    pub max_downloads: Option<u64>,
    /// Set for guest uploads: the link is checked when the row is inserted.
    pub guest_link: Option<GuestLinkId>,
}

/// What an upload knows when its body has been received.
pub struct FinishedUpload {
    pub size: u64,
    pub content_type: String,
    pub note: Option<String>,
}

/// Inserts the in-progress row. Fails with a constraint error if the id
/// exists, and with [`StorageError::GuestLinkRefused`] if the guest link
/// takes no more uploads: the check and the insert share one transaction on
/// the (single) writer, so the rows counted are exactly those that exist.
pub fn start_upload(store: &Store, upload: &NewUpload) -> Result<(), StorageError> {
    let mut conn = store.writer();
    let tx = conn.transaction().ctx("starting an upload")?;
    if let Some(link) = &upload.guest_link {
        guest_links::check_upload(&tx, link, upload.upload_time_ms)?;
    }
    tx.execute(
        "INSERT INTO entries (id, filename, content_type, size, chunk_size, note,
                              upload_time_ms, expiration_time_ms, state,
                              max_downloads, guest_link_id)
         VALUES (?1, ?2, 'application/octet-stream', 0, ?3, NULL, ?4, ?5, 'uploading', ?6, ?7)",
        params![
            upload.id.as_str(),
            upload.filename,
            upload.chunk_size as i64,
            upload.upload_time_ms,
            upload.expiration.to_millis(),
            upload.max_downloads.map(|n| n as i64),
            upload.guest_link.as_ref().map(GuestLinkId::as_str),
        ],
    )
    .ctx("inserting an upload")?;
    tx.commit().ctx("committing a new upload")
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
    let updated = mark_complete(&conn, id, done);
    let restored = conn
        .pragma_update(None, "synchronous", "NORMAL")
        .ctx("restoring durability");
    match updated? {
        0 => Err(StorageError::NotFound),
        _ => restored,
    }
}

/// The row update that makes an upload `complete`, on a connection (or a
/// transaction) the caller holds. Returns the rows changed (0: not uploading).
pub(crate) fn mark_complete(
    conn: &rusqlite::Connection,
    id: &EntryId,
    done: &FinishedUpload,
) -> Result<usize, StorageError> {
    conn.execute(
        "UPDATE entries SET size = ?2, content_type = ?3, note = ?4, state = 'complete'
         WHERE id = ?1 AND state = 'uploading'",
        params![id.as_str(), done.size as i64, done.content_type, done.note],
    )
    .ctx("completing an upload")
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
        .reader()?
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
     e.download_count,
     e.max_downloads, e.guest_link_id";

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
        max_downloads: row.get::<_, Option<i64>>(9)?.map(|n| n as u64),
        guest_link_id: row.get(10)?,
    })
}

/// A complete, unexpired entry.
pub fn get(store: &Store, id: &EntryId, now_ms: i64) -> Result<Entry, StorageError> {
    get_with(&*store.reader()?, id, now_ms)
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
    let conn = store.reader()?;
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
    /// `Some(None)` removes the download limit.
    pub max_downloads: Option<Option<u64>>,
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
                note = CASE WHEN ?5 THEN ?6 ELSE note END,
                max_downloads = CASE WHEN ?8 THEN ?9 ELSE max_downloads END
             WHERE id = ?1 AND state = 'complete' AND expiration_time_ms > ?7",
            params![
                id.as_str(),
                edit.filename,
                edit.content_type,
                edit.expiration.map(Expiration::to_millis),
                edit.note.is_some(),
                edit.note.clone().flatten(),
                now_ms,
                edit.max_downloads.is_some(),
                edit.max_downloads.flatten().map(|n| n as i64),
            ],
        )
        .ctx("updating an entry")?;
    if changed == 0 {
        return Err(StorageError::NotFound);
    }
    get_with(&conn, id, now_ms)
}

/// Sum of the sizes of complete entries (expired ones not yet collected included).
pub fn total_size(store: &Store) -> Result<u64, StorageError> {
    store
        .reader()?
        .query_row(
            "SELECT COALESCE(SUM(size), 0) FROM entries WHERE state = 'complete'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .ctx("summing entry sizes")
}
