//! The story's five bugs, brought back one at a time as fixtures for the
//! memory-regression gate (`rig prove`): a gate that never saw the
//! bugs it must catch proves nothing.
//!
//! Sized fixtures (`retain-per-upload=1MiB`, `leak-per-request=64KiB`,
//! `sqlite-cache=32MiB`) add a known amount of memory, so the gate's power
//! can be measured by effect size.
//!
//! Only builds with the `regressions` feature have the `--regression NAME`
//! flag; it is never a default feature and release images never enable it.
//! Without the feature [`active`] is constant `false` and the mechanisms
//! below are not compiled. One regression per process: it is chosen once at
//! start-up and read from a global, so the hook sites stay one line each.

mod name;

pub use name::{ParseRegressionError, RegressionParser, VALUES};

/// One mechanism of the story, or a sized fixture (see `../docs/gate.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    /// Bug 1: the file part is buffered in memory up to
    /// [`BUFFERED_MULTIPART_BYTES`] and kept until the request ends, as
    /// `ParseMultipartForm(32 MB)` did (~64 MB per request).
    BufferedMultipart,
    /// Bug 2: every upload is also spooled to a temp file in `TMPDIR` that is
    /// never removed (the missing `MultipartForm.RemoveAll()`). With the
    /// rig's tmpfs `TMPDIR` these files are RAM.
    LeakedTempFiles,
    /// Bug 3: a chunk read loads the requested chunk and every later one
    /// (`chunk_index >= ?`).
    ReadAllChunks,
    /// Bug 4: one write transaction per whole upload.
    UploadTransaction,
    /// Bug 5: GC runs VACUUM after every collection (run GC often).
    PeriodicVacuum,
    /// This many bytes, filled, held by each upload while it runs.
    RetainPerUpload(u64),
    /// This many bytes, filled, leaked by every HTTP request.
    LeakPerRequest(u64),
    /// Every SQLite connection's page cache, in bytes (whole KiB).
    SqliteCache(u64),
}

/// Bytes of each file part kept in memory by [`Regression::BufferedMultipart`]:
/// twice Go's 32 MB `maxMemory`, as the story's heap profile showed (63.99 MB
/// in `makeSlice`: a `bytes.Buffer` doubling past the limit).
pub const BUFFERED_MULTIPART_BYTES: usize = 64 << 20;

#[cfg(feature = "regressions")]
static ACTIVE: std::sync::OnceLock<Regression> = std::sync::OnceLock::new();

/// Turns `regression` on for this process (the first call wins).
#[cfg(feature = "regressions")]
pub fn install(regression: Regression) {
    if ACTIVE.set(regression).is_ok() {
        tracing::warn!(
            %regression,
            "REGRESSION FIXTURE ACTIVE: this server reproduces a known memory bug on purpose"
        );
    }
}

/// Whether `regression` is on in this process.
pub fn active(regression: Regression) -> bool {
    #[cfg(feature = "regressions")]
    {
        ACTIVE.get() == Some(&regression)
    }
    #[cfg(not(feature = "regressions"))]
    {
        let _ = regression;
        false
    }
}

#[cfg(feature = "regressions")]
pub use mechanisms::*;

#[cfg(feature = "regressions")]
mod mechanisms {
    use std::path::PathBuf;

    use bytes::Bytes;
    use rusqlite::params;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::{mpsc, oneshot};

    use super::{BUFFERED_MULTIPART_BYTES, Regression, active};
    use crate::entry::EntryId;
    use crate::storage::entries::{self, FinishedUpload};
    use crate::storage::{SqlContext, StorageError, Store, chunks};

    /// The sized regression in force, if it is `kind` (a variant's constructor).
    fn sized(kind: fn(u64) -> Regression) -> Option<u64> {
        match super::ACTIVE.get() {
            Some(&r) if std::mem::discriminant(&r) == std::mem::discriminant(&kind(0)) => r.size(),
            _ => None,
        }
    }

    /// `leak-per-request`: leaks its bytes, filled so they are resident.
    pub fn on_request() {
        if let Some(bytes) = sized(Regression::LeakPerRequest) {
            Box::leak(std::hint::black_box(filled(bytes)));
        }
    }

    /// `sqlite-cache`: the page cache in KiB for every connection, else `kib`.
    pub fn cache_kib(kib: i64) -> i64 {
        sized(Regression::SqliteCache).map_or(kib, |b| i64::try_from(b >> 10).unwrap_or(i64::MAX))
    }

    /// `bytes` bytes of a non-zero value: every page written, so resident
    /// (zeroes could come from `calloc`'s untouched pages).
    fn filled(bytes: u64) -> Box<[u8]> {
        vec![0xA5; usize::try_from(bytes).unwrap_or(usize::MAX)].into_boxed_slice()
    }

    /// The per-upload state of bugs 1 and 2 and `retain-per-upload`, held by
    /// the upload sink, so it lives exactly as long as the request.
    #[derive(Default)]
    pub struct UploadHooks {
        /// `retain-per-upload`: filled when the upload starts.
        _retained: Option<Box<[u8]>>,
        /// Bug 1: grows like Go's `bytes.Buffer` (doubling), never shrinks.
        held: Vec<u8>,
        /// Bug 2: the spool file; its path is forgotten, never removed.
        spool: Option<tokio::fs::File>,
    }

    impl UploadHooks {
        /// At the start of an upload.
        pub fn start() -> UploadHooks {
            UploadHooks {
                _retained: sized(Regression::RetainPerUpload)
                    .map(|bytes| std::hint::black_box(filled(bytes))),
                ..UploadHooks::default()
            }
        }

        /// Sees every body byte of the file part, in order.
        pub async fn observe(&mut self, id: &EntryId, data: &[u8]) -> Result<(), StorageError> {
            if active(Regression::BufferedMultipart) && self.held.len() < BUFFERED_MULTIPART_BYTES {
                let take = data.len().min(BUFFERED_MULTIPART_BYTES - self.held.len());
                self.held.extend_from_slice(&data[..take]);
            }
            if active(Regression::LeakedTempFiles) {
                let spool = match &mut self.spool {
                    Some(f) => f,
                    None => self.spool.insert(open_spool(id).await?),
                };
                spool
                    .write_all(data)
                    .await
                    .map_err(|source| StorageError::Io {
                        context: "spooling an upload to a temp file",
                        source,
                    })?;
            }
            Ok(())
        }
    }

    async fn open_spool(id: &EntryId) -> Result<tokio::fs::File, StorageError> {
        let path: PathBuf = std::env::temp_dir().join(format!("sharerig-multipart-{id}.part"));
        tokio::fs::File::create(&path)
            .await
            .map_err(|source| StorageError::Io {
                context: "creating an upload spool file in TMPDIR",
                source,
            })
    }

    /// Bug 3: loads chunk `index` and every later chunk of `id`, then keeps
    /// bytes `start..end` of the first (`None`: no such chunk).
    pub fn read_all_later_chunks(
        store: &Store,
        id: &EntryId,
        index: u64,
        start: usize,
        end: usize,
    ) -> Result<Option<Bytes>, StorageError> {
        let conn = store.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT chunk FROM entries_data WHERE id = ?1 AND chunk_index >= ?2
                 ORDER BY chunk_index",
            )
            .ctx("preparing a chunk read")?;
        let all: Vec<Vec<u8>> = stmt
            .query_map(params![id.as_str(), index as i64], |row| row.get(0))
            .ctx("reading chunks")?
            .collect::<Result<_, _>>()
            .ctx("reading chunks")?;
        Ok(all
            .first()
            .and_then(|first| first.get(start..end))
            .map(Bytes::copy_from_slice))
    }

    /// Bug 4: the upload's writer holds one transaction from its first chunk
    /// until the entry is complete. Returns whether the upload completed.
    pub fn write_in_one_transaction(
        store: &Store,
        id: &EntryId,
        chunk_rx: &mut mpsc::Receiver<Bytes>,
        finish_rx: oneshot::Receiver<FinishedUpload>,
    ) -> Result<bool, StorageError> {
        let mut conn = store.writer();
        let tx = conn.transaction().ctx("starting the upload transaction")?;
        let mut index = 0;
        while let Some(chunk) = chunk_rx.blocking_recv() {
            chunks::insert_one(&tx, id, index, &chunk)?;
            index += 1;
        }
        let Ok(done) = finish_rx.blocking_recv() else {
            return Ok(false); // rolled back on drop
        };
        entries::mark_complete(&tx, id, &done)?;
        tx.commit().ctx("committing the upload transaction")?;
        Ok(true)
    }
}
