//! A response body that reads a file's chunks in order, one ahead of the socket.
//!
//! A reader task fetches each chunk (`chunk_index = ?`, exactly the chunk
//! needed) and hands it to the body through a channel of
//! [`READ_AHEAD_CHUNKS`]: SQLite reads overlap socket writes, and a slow
//! client holds at most the chunk being sent, the one queued and the one
//! being read (3 × chunk_size), never the file. That much is reserved in the
//! memory budget ([`buffer_bytes`]) before the response starts, and held
//! until the body is dropped. When the client goes away the channel closes
//! and the reader stops.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::Reservation;
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
    /// The body's share of the memory budget ([`buffer_bytes`]).
    pub reserved: Reservation,
}

/// What a body of `segments` holds at most: a chunk per file piece, up to
/// the one being sent, [`READ_AHEAD_CHUNKS`] queued and the one being read
/// (a piece is read whole from SQLite even for a 1-byte range). Literal
/// segments (≤ 16 range headers of ~100 bytes) are left out.
pub fn buffer_bytes(chunk_size: u64, segments: &[Segment]) -> u64 {
    let pieces: u64 = segments
        .iter()
        .map(|s| match s {
            Segment::File { start, end } if end > start => {
                (end - 1) / chunk_size - start / chunk_size + 1
            }
            _ => 0,
        })
        .sum();
    chunk_size * pieces.min(READ_AHEAD_CHUNKS as u64 + 2)
}

/// Streams `segments` of the entry; a missing chunk or shutdown ends the
/// body with an error, so the client sees a truncated response, not wrong bytes.
pub fn body_stream(
    source: Source,
    segments: Vec<Segment>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    // Held by the body: released when the response is done or dropped.
    let held = (InFlight::download(&source.counters), source.reserved);
    let source = ReadFrom {
        db: source.db,
        id: source.id,
        chunk_size: source.chunk_size,
        counters: source.counters,
        abort: source.abort,
    };
    tokio::spawn(read_segments(source, segments, tx));
    futures_util::stream::unfold((rx, held), |(mut rx, held)| async move {
        let item = rx.recv().await?;
        Some((item, (rx, held)))
    })
}

/// What the reader task needs of a [`Source`].
struct ReadFrom {
    db: Db,
    id: EntryId,
    chunk_size: u64,
    counters: Arc<Counters>,
    abort: CancellationToken,
}

async fn read_segments(
    source: ReadFrom,
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
async fn read_piece(source: &ReadFrom, start: u64, end: u64) -> io::Result<Bytes> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_a_chunk_per_piece_up_to_three() {
        let file = |start, end| Segment::File { start, end };
        assert_eq!(buffer_bytes(100, &[file(0, 1)]), 100);
        assert_eq!(buffer_bytes(100, &[file(99, 101)]), 200);
        assert_eq!(buffer_bytes(100, &[file(0, 10_000)]), 300);
        let literal = Segment::Literal(Bytes::from_static(b"--b"));
        assert_eq!(buffer_bytes(100, &[literal, file(5, 5)]), 0);
    }
}
