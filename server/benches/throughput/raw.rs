//! Phase 1: the raw baseline through the server's storage layer, and the
//! [`Rate`] every phase reports.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use share_server::config::DEFAULT_DISK_RESERVE;
use share_server::entry::{EntryId, Expiration};
use share_server::storage::entries::{FinishedUpload, NewUpload};
use share_server::storage::{Store, chunks, entries, now_millis};
use share_server::upload::CHUNKS_PER_TRANSACTION;

use crate::{CHUNK_SIZE, MB};
use testkit::content::{Content, content_sha256};

/// Bytes moved in some time.
#[derive(Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
}

impl Rate {
    pub(crate) fn mb_per_s(self) -> f64 {
        self.bytes as f64 / MB / self.elapsed.as_secs_f64()
    }

    pub(crate) fn to_json(self) -> Value {
        json!({
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "mb_per_s": self.mb_per_s(),
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.1} MB/s  ({:.2} s)",
            self.mb_per_s(),
            self.elapsed.as_secs_f64()
        )
    }
}

pub(crate) struct RawFigures {
    pub(crate) write: Rate,
    pub(crate) read: Rate,
}

/// Writes then reads `size` bytes with the server's storage functions on a
/// fresh database in a temporary directory (removed afterwards).
///
/// `Store::open` (with the server's default disk reserve) applies the
/// server's pragmas and schema, `chunks::insert` is the server's chunk
/// transaction and `chunks::read` its one-chunk `SELECT`, so the baseline
/// differs from the server only by what the server adds: HTTP, multipart
/// parsing, and handing chunks between threads.
pub(crate) fn raw_baseline(size: u64) -> Result<RawFigures> {
    let dir = tempfile::Builder::new()
        .prefix("share-bench-raw-")
        .tempdir()
        .context("creating the raw baseline's temp dir")?;
    let db = dir.path().join("raw.db");
    let store = Store::open(&db, DEFAULT_DISK_RESERVE)
        .with_context(|| format!("opening {}", db.display()))?;
    let id = EntryId::generate();
    let write = raw_write(&store, &id, size)?;
    let (read, digest) = raw_read(&store, &id, size)?;
    ensure!(
        digest == content_sha256(size),
        "the raw baseline read back different bytes than it wrote"
    );
    drop(store);
    dir.close()
        .context("removing the raw baseline's temp dir")?;
    Ok(RawFigures { write, read })
}

/// Times only the storage calls (content generation is excluded, which makes
/// the baseline, and so the ratio's denominator, as fast as it can be). Like
/// an upload, it starts with the `uploading` row, commits
/// [`CHUNKS_PER_TRANSACTION`] chunks per transaction and ends with the
/// durable (fsynced) completion.
pub(crate) fn raw_write(store: &Store, id: &EntryId, size: u64) -> Result<Rate> {
    let upload = NewUpload {
        id: id.clone(),
        filename: "raw.bin".into(),
        chunk_size: CHUNK_SIZE,
        upload_time_ms: now_millis(),
        expiration: Expiration::Never,
        max_downloads: None,
        guest_link: None,
    };
    let mut content = Content::new(size);
    let chunk_len = chunk_len()?;
    let mut busy = Duration::ZERO;

    let started = Instant::now();
    entries::start_upload(store, &upload).context("raw: inserting the entry row")?;
    busy += started.elapsed();
    let mut next_index = 0u64;
    loop {
        let batch: Vec<Bytes> = (0..CHUNKS_PER_TRANSACTION)
            .map_while(|_| content.next_piece(chunk_len))
            .collect();
        if batch.is_empty() {
            break;
        }
        let started = Instant::now();
        chunks::insert(store, id, next_index, &batch)
            .with_context(|| format!("raw: inserting chunks from {next_index}"))?;
        busy += started.elapsed();
        next_index += batch.len() as u64;
    }
    let done = FinishedUpload {
        size,
        content_type: "application/octet-stream".into(),
        note: None,
    };
    let started = Instant::now();
    entries::finish_upload(store, id, &done).context("raw: completing the entry")?;
    busy += started.elapsed();
    Ok(Rate {
        bytes: size,
        elapsed: busy,
    })
}

/// Reads every chunk with one `SELECT … WHERE id = ? AND chunk_index = ?`
/// each, timing only the reads; returns the SHA-256 of what came back.
pub(crate) fn raw_read(store: &Store, id: &EntryId, size: u64) -> Result<(Rate, String)> {
    let mut hasher = Sha256::new();
    let mut busy = Duration::ZERO;
    for index in 0..size.div_ceil(CHUNK_SIZE) {
        let len =
            usize::try_from((size - index * CHUNK_SIZE).min(CHUNK_SIZE)).context("chunk length")?;
        let started = Instant::now();
        let chunk = chunks::read(store, id, index, 0, len)
            .with_context(|| format!("raw: reading chunk {index}"))?;
        busy += started.elapsed();
        hasher.update(&chunk);
    }
    let rate = Rate {
        bytes: size,
        elapsed: busy,
    };
    Ok((rate, hex::encode(hasher.finalize())))
}

pub(crate) fn chunk_len() -> Result<usize> {
    usize::try_from(CHUNK_SIZE).context("the chunk size does not fit in memory")
}

/// The `q` quantile (nearest rank) of `values`, sorting them.
pub(crate) fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub(crate) fn median_rate(bytes: u64, times: &mut [Duration]) -> Rate {
    times.sort();
    Rate {
        bytes,
        elapsed: times.get(times.len() / 2).copied().unwrap_or_default(),
    }
}
