//! A response body that reads a file's chunks one at a time.
//!
//! The next chunk is read only when hyper asks for more, i.e. when the socket
//! took the previous one: a slow client holds one chunk (≤ `chunk_size`), not
//! the file. Each read is `chunk_index = ?` for exactly the chunk needed.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::sync::CancellationToken;

use crate::entry::EntryId;
use crate::storage::{Db, chunks};

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

struct BodyState {
    db: Db,
    id: EntryId,
    chunk_size: u64,
    segments: VecDeque<Segment>,
    abort: CancellationToken,
}

/// Streams `segments` of entry `id`; ends with an error (the connection is
/// closed mid-body) if `abort` fires or a chunk is missing.
pub fn body_stream(
    db: Db,
    id: EntryId,
    chunk_size: u64,
    segments: Vec<Segment>,
    abort: CancellationToken,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let state = BodyState {
        db,
        id,
        chunk_size,
        segments: segments.into(),
        abort,
    };
    futures_util::stream::try_unfold(state, |mut st| async move {
        if st.abort.is_cancelled() {
            return Err(io::Error::other("server shutting down"));
        }
        let Some(segment) = st.segments.pop_front() else {
            return Ok(None);
        };
        let bytes = match segment {
            Segment::Literal(b) => b,
            Segment::File { start, end } => {
                let index = start / st.chunk_size;
                let offset = start % st.chunk_size;
                let take = (end - start).min(st.chunk_size - offset);
                if start + take < end {
                    st.segments.push_front(Segment::File {
                        start: start + take,
                        end,
                    });
                }
                let id = st.id.clone();
                st.db
                    .run(move |s| {
                        chunks::read(s, &id, index, offset as usize, (offset + take) as usize)
                    })
                    .await
                    .map_err(|e| {
                        io::Error::other(format!("reading chunk {index} of {}: {e}", st.id))
                    })?
            }
        };
        Ok(Some((bytes, st)))
    })
}
