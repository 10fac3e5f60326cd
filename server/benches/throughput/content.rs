//! The uploaded bytes: deterministic, generated on the fly, never held whole.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::Stream;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::{CONTENT_SEED, PIECE_BYTES};

/// Pseudo-random file content produced piece by piece, so a 618 MB "file"
/// never exists in memory or on disk. Random bytes also defeat any
/// compression on the way. `SmallRng` fills at several GB/s, far faster than
/// anything measured here.
pub(crate) struct Content {
    pub(crate) rng: SmallRng,
    pub(crate) remaining: u64,
}

impl Content {
    pub(crate) fn new(len: u64) -> Content {
        Content {
            rng: SmallRng::seed_from_u64(CONTENT_SEED),
            remaining: len,
        }
    }

    /// The next piece of at most `max` bytes; `None` once `len` bytes are out.
    pub(crate) fn next_piece(&mut self, max: usize) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = usize::try_from(self.remaining).map_or(max, |r| r.min(max));
        let mut piece = vec![0u8; n];
        self.rng.fill_bytes(&mut piece);
        self.remaining -= n as u64;
        Some(Bytes::from(piece))
    }
}

/// The content as a request body stream.
pub(crate) fn content_stream(
    len: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut content = Content::new(len);
    futures_util::stream::iter(std::iter::from_fn(move || content.next_piece(PIECE_BYTES)).map(Ok))
}

/// SHA-256 (hex) of the `len`-byte content, computed by generating it again.
pub(crate) fn content_sha256(len: u64) -> String {
    let mut content = Content::new(len);
    let mut hasher = Sha256::new();
    while let Some(piece) = content.next_piece(PIECE_BYTES) {
        hasher.update(&piece);
    }
    hex::encode(hasher.finalize())
}
