//! Chunk rows: a file is stored as `chunk_size`-byte blobs keyed by
//! `(id, chunk_index)`. Reads fetch exactly one chunk (`chunk_index = ?`: the
//! story's bug 3 read every later chunk too); writes and deletes touch a
//! bounded number of chunks per transaction (bug 4 was one huge transaction).

use bytes::Bytes;
use rusqlite::{OptionalExtension, params};

use super::{SqlContext, StorageError, Store};
use crate::entry::EntryId;

/// Chunks removed per transaction when deleting a file: 64 × 320 KiB frees
/// ~20 MiB of pages per commit, writing only a few freelist pages to the WAL.
pub const DELETE_BATCH_CHUNKS: i64 = 64;

/// Inserts consecutive chunks starting at `first_index` in one transaction.
pub fn insert(
    store: &Store,
    id: &EntryId,
    first_index: u64,
    chunks: &[Bytes],
) -> Result<(), StorageError> {
    let mut conn = store.writer();
    let tx = conn.transaction().ctx("starting a chunk transaction")?;
    for (i, chunk) in chunks.iter().enumerate() {
        insert_one(&tx, id, first_index + i as u64, chunk)?;
    }
    tx.commit().ctx("committing chunks")
}

/// One chunk row, inside a transaction the caller holds.
pub(crate) fn insert_one(
    conn: &rusqlite::Connection,
    id: &EntryId,
    index: u64,
    chunk: &[u8],
) -> Result<(), StorageError> {
    conn.prepare_cached("INSERT INTO entries_data (id, chunk_index, chunk) VALUES (?1, ?2, ?3)")
        .ctx("preparing a chunk insert")?
        .execute(params![id.as_str(), index as i64, chunk])
        .ctx("inserting a chunk")
        .map(drop)
}

/// Reads bytes `start..end` of one chunk (offsets within the chunk).
pub fn read(
    store: &Store,
    id: &EntryId,
    index: u64,
    start: usize,
    end: usize,
) -> Result<Bytes, StorageError> {
    #[cfg(feature = "regressions")]
    if crate::regressions::active(crate::regressions::Regression::ReadAllChunks) {
        return crate::regressions::read_all_later_chunks(store, id, index, start, end)?
            .ok_or(StorageError::NotFound);
    }
    let conn = store.reader()?;
    // The row's rowid from the primary-key index, then the wanted bytes
    // straight from the blob's pages into our buffer: one copy, and no
    // chunk-sized buffer inside SQLite (a `SELECT chunk` assembles the whole
    // blob first, then we copied the range out of it).
    let rowid: i64 = conn
        .prepare_cached("SELECT rowid FROM entries_data WHERE id = ?1 AND chunk_index = ?2")
        .ctx("preparing a chunk lookup")?
        .query_row(params![id.as_str(), index as i64], |row| row.get(0))
        .optional()
        .ctx("looking up a chunk")?
        .ok_or(StorageError::NotFound)?;
    let blob = conn
        .blob_open(rusqlite::MAIN_DB, "entries_data", "chunk", rowid, true)
        .ctx("opening a chunk")?;
    if start > end || end > blob.len() {
        return Err(StorageError::NotFound);
    }
    read_blob(&blob, start, end - start).ctx("reading a chunk")
}

/// `len` bytes of `blob` from `start`, read into a buffer that is not zeroed
/// first: zeroing 320 KiB per chunk was 23 % of the server's CPU during
/// parallel downloads (`perf`), as much as the read itself.
#[allow(unsafe_code)]
fn read_blob(blob: &rusqlite::blob::Blob<'_>, start: usize, len: usize) -> rusqlite::Result<Bytes> {
    let mut buf = bytes::BytesMut::with_capacity(len);
    let filled = blob
        .raw_read_at_exact(&mut buf.spare_capacity_mut()[..len], start)?
        .len();
    assert_eq!(
        filled, len,
        "raw_read_at_exact fills the whole slice or fails"
    );
    // SAFETY: `raw_read_at_exact` returned Ok, so it initialised all `len`
    // bytes of the spare capacity (checked above), which is at least `len`.
    unsafe { buf.set_len(len) };
    Ok(buf.freeze())
}

/// Deletes every chunk of `id`, [`DELETE_BATCH_CHUNKS`] per transaction.
pub fn delete_all(store: &Store, id: &EntryId) -> Result<u64, StorageError> {
    let mut total = 0;
    loop {
        let n = store
            .writer()
            .execute(
                "DELETE FROM entries_data WHERE rowid IN
                   (SELECT rowid FROM entries_data WHERE id = ?1 LIMIT ?2)",
                params![id.as_str(), DELETE_BATCH_CHUNKS],
            )
            .ctx("deleting chunks")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}
