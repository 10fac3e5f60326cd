//! Streaming uploads into chunk rows.
//!
//! The request task appends body bytes to a buffer of exactly one chunk; each
//! full chunk goes through a bounded channel to a blocking writer thread that
//! commits a few chunks per short transaction. Nothing else holds file bytes,
//! so an upload's memory is bounded by [`pipeline_bytes`]:
//! `(1 + UPLOAD_QUEUE_CHUNKS + CHUNKS_PER_TRANSACTION) × chunk_size`
//! (1.6 MiB at the default 320 KiB chunk), whatever the file size. That
//! bound is reserved in the memory budget (`budget.rs`) when the upload
//! starts and held until its writer is done, so all uploads together stay
//! within the budget: when it is full a new upload waits for room, then
//! fails with 503 before anything is stored. An upload that has started
//! never waits for memory again: a flood of new requests cannot cut it
//! off half-way.
//!
//! The writer inserts the entry row as `uploading` before the first chunk;
//! [`UploadSink::finish`] makes it `complete`. If the request ends any other
//! way (client abort, bad input, a storage error, shutdown, or the request
//! dropped mid-await, e.g. cut to make room), the writer removes the row and
//! every chunk before it exits; a crash leaves them to GC.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::budget::{BudgetExhausted, Reservation};
use crate::client::Client;
use crate::counters::Counters;
use crate::entry::{EntryId, content_type_for};
use crate::live_uploads::{LiveUpload, LiveUploads};
use crate::state::AppState;
use crate::storage::entries::{self, FinishedUpload, NewUpload};
use crate::storage::{StorageError, Store, chunks};

/// Full chunks waiting for the writer. Two lets the network read the next
/// chunk while one commits, without letting a slow disk pile up memory.
pub const UPLOAD_QUEUE_CHUNKS: usize = 1;
/// Chunks per write transaction (taken only from what is already queued, so
/// the writer never waits to fill a batch). Short transactions keep the WAL
/// small and let parallel uploads and GC take turns.
pub const CHUNKS_PER_TRANSACTION: usize = 2;
/// Bytes kept from the start of the file for content-type sniffing.
pub const SNIFF_BYTES: usize = 512;
/// Attempts at a fresh random id before giving up (a clash is ~1e-17 likely).
const ID_ATTEMPTS: usize = 5;

/// Why an upload's body could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No room in the memory budget for a new upload.
    #[error(transparent)]
    Busy(#[from] BudgetExhausted),
}

/// What one upload may hold at once: the chunk being filled, the queue,
/// the writer's batch.
pub fn pipeline_bytes(chunk_size: u64) -> u64 {
    (1 + UPLOAD_QUEUE_CHUNKS + CHUNKS_PER_TRANSACTION) as u64 * chunk_size
}

/// The receiving end of one upload, held by the request task.
pub struct UploadSink {
    id: EntryId,
    filename: String,
    chunk_size: usize,
    buf: BytesMut,
    /// The upload's share of the budget; the writer holds it too, so it is
    /// given back when both are done with their chunks.
    _reserved: Arc<Reservation>,
    size: u64,
    sniff: Vec<u8>,
    chunks: Option<mpsc::Sender<Bytes>>,
    counters: Arc<Counters>,
    finish: oneshot::Sender<FinishedUpload>,
    /// `None` once awaited (after the writer stopped early with an error).
    writer: Option<JoinHandle<Result<(), StorageError>>>,
    #[cfg(feature = "regressions")]
    regression: crate::regressions::UploadHooks,
}

impl UploadSink {
    /// Reserves the upload's memory for `client` (waiting in the budget's
    /// fair order), then starts its writer, which registers the upload and
    /// inserts its `uploading` row. The writer owns the row from the start:
    /// if this request is dropped at any await, the writer still sees its
    /// channels close and removes what it inserted.
    pub async fn start(
        state: &AppState,
        upload: NewUpload,
        client: Client,
    ) -> Result<Self, UploadError> {
        let reserved = state
            .budget
            .reserve(pipeline_bytes(upload.chunk_size), client)
            .await?;
        let reserved = Arc::new(reserved);
        let chunk_size = upload.chunk_size as usize;
        let filename = upload.filename.clone();
        let (started_tx, started_rx) = oneshot::channel();
        let (chunk_tx, chunk_rx) = mpsc::channel(UPLOAD_QUEUE_CHUNKS);
        let (finish_tx, finish_rx) = oneshot::channel();
        let store = Arc::clone(state.db.store());
        let live = Arc::clone(&state.live_uploads);
        let counters = Arc::clone(&state.counters);
        let writer_reserved = Arc::clone(&reserved);
        let writer = state.tracker.spawn_blocking(move || {
            let written = match insert_row(&store, &live, upload) {
                Ok(registration) => {
                    let _ = started_tx.send(Ok(registration.id().clone()));
                    write_chunks(&store, &counters, registration, chunk_rx, finish_rx)
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    Ok(())
                }
            };
            drop(writer_reserved); // after the queue and batch are freed
            written
        });
        let id = started_rx.await.map_err(|_| StorageError::TaskPanicked)??;
        Ok(UploadSink {
            id,
            filename,
            chunk_size,
            // Allocated when the first bytes arrive.
            buf: BytesMut::new(),
            _reserved: reserved,
            size: 0,
            sniff: Vec::new(),
            chunks: Some(chunk_tx),
            counters: Arc::clone(&state.counters),
            finish: finish_tx,
            writer: Some(writer),
            #[cfg(feature = "regressions")]
            regression: crate::regressions::UploadHooks::start(),
        })
    }

    /// File bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends body bytes; waits while the writer is behind (backpressure).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        if self.sniff.len() < SNIFF_BYTES {
            let take = data.len().min(SNIFF_BYTES - self.sniff.len());
            self.sniff.extend_from_slice(&data[..take]);
        }
        self.size += data.len() as u64;
        Counters::add(&self.counters.bytes_received, data.len() as u64);
        #[cfg(feature = "regressions")]
        self.regression.observe(&self.id, data).await?;
        while !data.is_empty() {
            // The next buffer is allocated only once the previous one is
            // queued, so an upload never holds an extra empty chunk.
            if self.buf.capacity() == 0 {
                self.buf.reserve(self.chunk_size);
            }
            let take = data.len().min(self.chunk_size - self.buf.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_size {
                self.send_buffered().await?;
            }
        }
        Ok(())
    }

    async fn send_buffered(&mut self) -> Result<(), StorageError> {
        let full = std::mem::take(&mut self.buf).freeze();
        let sent = match &self.chunks {
            Some(tx) => tx.send(full).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped early: it failed, and says why.
        self.chunks = None;
        Err(match self.writer.take() {
            Some(writer) => writer_outcome(writer)
                .await
                .err()
                .unwrap_or(StorageError::TaskPanicked),
            None => StorageError::TaskPanicked,
        })
    }

    /// Flushes the last partial chunk, completes the entry and returns its id.
    pub async fn finish(
        mut self,
        note: Option<String>,
        declared_type: Option<&str>,
    ) -> Result<EntryId, StorageError> {
        if !self.buf.is_empty() {
            self.send_buffered().await?;
        }
        self.chunks = None; // end of the chunk stream
        let done = FinishedUpload {
            size: self.size,
            content_type: content_type_for(&self.filename, &self.sniff, declared_type),
            note,
        };
        if self.finish.send(done).is_err() {
            tracing::debug!(id = %self.id, "writer ended before finish");
        }
        match self.writer.take() {
            Some(writer) => writer_outcome(writer).await.map(|()| self.id),
            None => Err(StorageError::TaskPanicked),
        }
    }

    /// Gives up: the writer removes the row and chunks; waits until it has.
    pub async fn abort(self) {
        let UploadSink {
            chunks,
            finish,
            writer,
            ..
        } = self;
        drop((chunks, finish));
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

async fn writer_outcome(writer: JoinHandle<Result<(), StorageError>>) -> Result<(), StorageError> {
    writer.await.map_err(|_| StorageError::TaskPanicked)?
}

/// Registers the upload and inserts its `uploading` row, drawing a fresh
/// id if the random one is taken.
fn insert_row(
    store: &Store,
    live: &Arc<LiveUploads>,
    mut upload: NewUpload,
) -> Result<LiveUpload, StorageError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let registration = live.register(upload.id.clone());
        match entries::start_upload(store, &upload) {
            Ok(()) => return Ok(registration),
            Err(StorageError::Sqlite { source, .. })
                if attempt < ID_ATTEMPTS
                    && source.sqlite_error_code()
                        == Some(rusqlite::ErrorCode::ConstraintViolation) =>
            {
                drop(registration);
                upload.id = EntryId::generate();
            }
            Err(e) => return Err(e),
        }
    }
}

/// The writer thread of one upload. Owns the upload's registration, so the
/// upload counts as in progress until its rows are either complete or gone.
fn write_chunks(
    store: &Store,
    counters: &Counters,
    registration: LiveUpload,
    mut chunk_rx: mpsc::Receiver<Bytes>,
    finish_rx: oneshot::Receiver<FinishedUpload>,
) -> Result<(), StorageError> {
    let id = registration.id().clone();
    let result = (|| {
        #[cfg(feature = "regressions")]
        if crate::regressions::active(crate::regressions::Regression::UploadTransaction) {
            return crate::regressions::write_in_one_transaction(
                store,
                &id,
                &mut chunk_rx,
                finish_rx,
            );
        }
        let mut next_index = 0u64;
        let mut batch = Vec::with_capacity(CHUNKS_PER_TRANSACTION);
        while let Some(first) = chunk_rx.blocking_recv() {
            let mut queued = Some(first);
            while let Some(chunk) = queued.take() {
                batch.push(chunk);
                if batch.len() < CHUNKS_PER_TRANSACTION {
                    queued = chunk_rx.try_recv().ok();
                }
            }
            chunks::insert(store, &id, next_index, &batch)?;
            Counters::add(&counters.chunks_written, batch.len() as u64);
            next_index += batch.len() as u64;
            batch.clear();
        }
        match finish_rx.blocking_recv() {
            Ok(done) => entries::finish_upload(store, &id, &done).map(|()| true),
            Err(_) => Ok(false), // the request went away: client abort or rejected input
        }
    })();
    let counter = match result {
        Ok(true) => &counters.uploads_completed,
        _ => &counters.uploads_failed,
    };
    Counters::add(counter, 1);
    match result {
        Ok(true) => Ok(()),
        Ok(false) => {
            remove_partial(store, &id);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "upload failed; removing its partial data");
            remove_partial(store, &id);
            Err(e)
        }
    }
    // `registration` drops here, after the clean-up.
}

fn remove_partial(store: &Store, id: &EntryId) {
    match store.with_reserve(|| entries::delete(store, id)) {
        Ok(()) | Err(StorageError::NotFound) => tracing::info!(%id, "removed a partial upload"),
        // GC retries: the id leaves the live set when `registration` drops.
        Err(e) => tracing::warn!(%id, error = %e, "could not remove a partial upload; GC will"),
    }
}
