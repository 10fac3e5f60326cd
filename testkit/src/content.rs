//! Upload content for tests and benches: deterministic pseudo-random bytes
//! generated piece by piece, so a 618 MB "file" never exists in memory or on
//! disk. Random bytes also defeat any compression on the way; `SmallRng`
//! fills at several GB/s, far faster than anything measured with it.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::Stream;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Seed of the generator: every stream of a given length is identical, which
/// lets a caller hash the upload outside a timed request.
pub const CONTENT_SEED: u64 = 0x5EED_F11E;
/// Pieces streamed into a request body: a typical socket write, well below a
/// chunk, so the server does its own re-chunking as in real use.
pub const PIECE_BYTES: usize = 64 * 1024;

/// `len` bytes of content, handed out piece by piece.
pub struct Content {
    rng: SmallRng,
    remaining: u64,
}

impl Content {
    pub fn new(len: u64) -> Content {
        Content {
            rng: SmallRng::seed_from_u64(CONTENT_SEED),
            remaining: len,
        }
    }

    /// The next piece of at most `max` bytes; `None` once `len` bytes are out.
    pub fn next_piece(&mut self, max: usize) -> Option<Bytes> {
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

/// The content as a request body stream of [`PIECE_BYTES`] pieces.
pub fn content_stream(len: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut content = Content::new(len);
    futures_util::stream::iter(std::iter::from_fn(move || content.next_piece(PIECE_BYTES)).map(Ok))
}

/// SHA-256 (hex) of the `len`-byte content, computed by generating it again.
pub fn content_sha256(len: u64) -> String {
    let mut content = Content::new(len);
    let mut hasher = Sha256::new();
    while let Some(piece) = content.next_piece(PIECE_BYTES) {
        hasher.update(&piece);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_length_same_bytes_and_exact_length() {
        let take = |len| {
            let mut c = Content::new(len);
            let mut all = Vec::new();
            while let Some(p) = c.next_piece(1000) {
                all.extend_from_slice(&p);
            }
            all
        };
        assert_eq!(take(2500), take(2500));
        assert_eq!(take(2500).len(), 2500);
        assert_eq!(
            content_sha256(2500),
            hex::encode(Sha256::digest(take(2500)))
        );
    }
}
