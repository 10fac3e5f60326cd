//! Garbage collection: expired entries, uploads abandoned by a crash, and
//! chunks whose entry is gone. Never touches an upload in progress.

use rusqlite::params;

use super::{SqlContext, StorageError, Store, chunks, entries};
use crate::entry::EntryId;
use crate::live_uploads::LiveUploads;

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub expired_entries: u64,
    pub abandoned_uploads: u64,
    pub orphan_chunks: u64,
}

/// Runs one collection at `now_ms`.
pub fn collect(store: &Store, live: &LiveUploads, now_ms: i64) -> Result<GcReport, StorageError> {
    let mut report = GcReport::default();

    let expired = ids(
        store,
        "SELECT id FROM entries WHERE state = 'complete' AND expiration_time_ms <= ?1",
        Some(now_ms),
    )?;
    for id in &expired {
        match entries::delete(store, id) {
            Ok(()) | Err(StorageError::NotFound) => report.expired_entries += 1,
            Err(e) => return Err(e),
        }
    }

    // Rows of uploads not in progress here were left by a crash (or a clean-up
    // that failed, e.g. on a full disk). The live set stays locked while they
    // are removed so no upload can register in between.
    {
        let live_ids = live.lock();
        let stale: Vec<EntryId> = ids(
            store,
            "SELECT id FROM entries WHERE state = 'uploading'",
            None,
        )?
        .into_iter()
        .filter(|id| !live_ids.contains(id))
        .collect();
        let conn = store.writer();
        for id in &stale {
            conn.execute(
                "DELETE FROM entries WHERE id = ?1 AND state = 'uploading'",
                [id.as_str()],
            )
            .ctx("removing an abandoned upload")?;
        }
        report.abandoned_uploads = stale.len() as u64;
    }

    // Chunks of removed entries (the abandoned uploads just above included).
    let orphans = ids(
        store,
        "SELECT DISTINCT d.id FROM entries_data d
         WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = d.id)",
        None,
    )?;
    for id in &orphans {
        report.orphan_chunks += store.with_reserve(|| chunks::delete_all(store, id))?;
    }
    store.refill_reserve();
    Ok(report)
}

/// Rebuilds the database file (opt-in: it writes the whole database to the
/// WAL first, the story's bug 5), then truncates the WAL.
pub fn vacuum(store: &Store) -> Result<(), StorageError> {
    store.writer().execute_batch("VACUUM").ctx("vacuuming")?;
    store.checkpoint()
}

fn ids(store: &Store, sql: &str, now_ms: Option<i64>) -> Result<Vec<EntryId>, StorageError> {
    let conn = store.reader()?;
    let mut stmt = conn.prepare(sql).ctx("preparing a GC query")?;
    let map = |r: &rusqlite::Row<'_>| r.get::<_, String>(0).map(EntryId::from_db);
    let rows = match now_ms {
        Some(t) => stmt.query_map(params![t], map),
        None => stmt.query_map([], map),
    }
    .ctx("running a GC query")?;
    rows.collect::<Result<_, _>>().ctx("running a GC query")
}
