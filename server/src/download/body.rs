//! A response body that reads a file's chunks in order, one ahead of the socket.
//!
//! A reader task fetches each chunk (`chunk_index = ?`, exactly the chunk
//! needed) and hands it to the body through a channel of
//! [`READ_AHEAD_CHUNKS`]: SQLite reads overlap socket writes, and a slow
//! client holds at most the chunk being sent, the one queued and the one
//! being read (3 × chunk_size), never the file. When the client goes away the
//! channel closes and the reader stops.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, InFlight};
use crate::entry::EntryId;
use crate::storage::{Db, chunks};

/// Chunks read ahead of the socket. One is enough to overlap the read of the
/// next chunk with sending the current one; more only adds memory.
pub const READ_AHEAD_CHUNKS: usize = 1;

/// A piece of a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Fixed bytes (multipart/byteranges boundaries and part headers).
    Literal(Bytes),
    /// File bytes `start..end` (end exclusive).
    File { start: u64, end: u64 },
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Literal(b) => b.len() as u64,
            Segment::File { start, end } => end - start,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the body reads from.
pub struct Source {
    pub db: Db,
    pub id: EntryId,
    pub chunk_size: u64,
    pub counters: Arc<Counters>,
    /// Fires on shutdown: the body then ends with an error (the connection closes).
    pub abort: CancellationToken,
}

/// Streams `segments` of the entry; a missing chunk or shutdown ends the
/// body with an error, so the client sees a truncated response, not wrong bytes.
pub fn body_stream(
    source: Source,
    segments: Vec<Segment>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    let in_flight = InFlight::download(&source.counters);
    tokio::spawn(read_segments(source, segments, tx));
    futures_util::stream::unfold((rx, in_flight), |(mut rx, in_flight)| async move {
        let item = rx.recv().await?;
        Some((item, (rx, in_flight)))
    })
}

async fn read_segments(
    source: Source,
    segments: Vec<Segment>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    for segment in segments {
        let (mut start, end) = match segment {
            Segment::Literal(bytes) => {
                if tx.send(Ok(bytes)).await.is_err() {
                    return;
                }
                continue;
            }
            Segment::File { start, end } => (start, end),
        };
        while start < end {
            let item = tokio::select! {
                () = source.abort.cancelled() => Err(io::Error::other("server shutting down")),
                read = read_piece(&source, start, end) => read,
            };
            let failed = item.is_err();
            if let Ok(bytes) = &item {
                start += bytes.len() as u64;
                Counters::add(&source.counters.bytes_sent, bytes.len() as u64);
            }
            if tx.send(item).await.is_err() || failed {
                return; // client gone, or the error is sent
            }
        }
    }
}

/// Reads from `start` to the end of its chunk or `end`, whichever is first.
async fn read_piece(source: &Source, start: u64, end: u64) -> io::Result<Bytes> {
    let index = start / source.chunk_size;
    let offset = start % source.chunk_size;
    let take = (end - start).min(source.chunk_size - offset);
    let id = source.id.clone();
    source
        .db
        .run(move |s| chunks::read(s, &id, index, offset as usize, (offset + take) as usize))
        .await
        .map_err(|e| io::Error::other(format!("reading chunk {index} of {}: {e}", source.id)))
}
