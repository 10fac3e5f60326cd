//! The streamed upload body: content produced piece by piece as hyper asks for it, hashed on the
//! way, optionally throttled (`slow-upload`) or cut off (`abort-upload`).
//!
//! Memory: one piece (`PIECE` bytes, 256 KiB) is produced at a time, and hyper pulls the next
//! only once it has written the previous ones, so an upload holds a few pieces at most whatever
//! its size. Nothing is read ahead from a file either.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::content::Pattern;

/// Bytes produced per piece at full speed: large enough that per-piece overhead (a syscall, an
/// allocation) is small next to hashing and copying, small enough to stay cheap per upload.
pub const PIECE: usize = 256 * 1024;
/// Throttled uploads send about this many pieces per second, so the rate is smooth.
const PACED_PIECES_PER_SECOND: u64 = 10;
const MIN_PACED_PIECE: usize = 1024;

/// Where the content comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Pattern(Pattern),
    File(PathBuf),
}

/// One upload body.
#[derive(Debug, Clone)]
pub(crate) struct BodySpec {
    pub source: Source,
    pub size: u64,
    /// Bytes per second (`slow-upload`), or as fast as the connection takes them.
    pub rate: Option<u64>,
    /// End the body with an error after this many bytes (`abort-upload`), which makes hyper
    /// drop the connection mid-request, as a client that goes away does.
    pub abort_after: Option<u64>,
}

/// What the body did, read by the transaction once the request is over.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    sent: AtomicU64,
    aborted: AtomicBool,
    sha256: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

impl Progress {
    /// Content bytes handed to hyper.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the body ended because `abort_after` was reached.
    pub(crate) fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// SHA-256 of the whole content, once the last byte was produced.
    pub(crate) fn sha256(&self) -> Option<String> {
        self.sha256.lock().ok().and_then(|h| h.clone())
    }

    /// Why the body failed on our side (file unreadable, run stopped), if it did.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    fn set(slot: &Mutex<Option<String>>, value: String) {
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(value);
        }
    }
}

struct BodyState {
    spec: BodySpec,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    pos: u64,
    piece: usize,
    hasher: Sha256,
    file: Option<tokio::fs::File>,
    started: Option<Instant>,
    done: bool,
}

/// The body as a stream for `reqwest::Body::wrap_stream`.
pub(crate) fn stream(
    spec: BodySpec,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let piece = match spec.rate {
        Some(rate) => usize::try_from(rate / PACED_PIECES_PER_SECOND)
            .unwrap_or(PIECE)
            .clamp(MIN_PACED_PIECE, PIECE),
        None => PIECE,
    };
    let state = BodyState {
        spec,
        progress,
        cancel,
        pos: 0,
        piece,
        hasher: Sha256::new(),
        file: None,
        started: None,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        match state.next_piece().await {
            Ok(Some(bytes)) => Some((Ok(bytes), state)),
            Ok(None) => None,
            Err(e) => {
                state.done = true;
                if !state.progress.aborted() {
                    Progress::set(&state.progress.error, e.to_string());
                }
                Some((Err(e), state))
            }
        }
    })
}

impl BodyState {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let size = self.spec.size;
        if self.pos >= size {
            return Ok(None);
        }
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("the run was stopped"));
        }
        let mut len = (size - self.pos).min(self.piece as u64);
        if let Some(stop) = self.spec.abort_after {
            if self.pos >= stop {
                self.progress.aborted.store(true, Ordering::Relaxed);
                return Err(io::Error::other(format!(
                    "loadgen aborted this upload on purpose after {stop} bytes"
                )));
            }
            len = len.min(stop - self.pos);
        }
        if let Some(rate) = self.spec.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64((self.pos + len) as f64 / rate as f64);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.cancel.cancelled() => return Err(io::Error::other("the run was stopped")),
            }
        }
        // `len` ≤ PIECE, so the cast cannot truncate.
        let mut buf = BytesMut::zeroed(len as usize);
        match &self.spec.source {
            Source::Pattern(pattern) => pattern.fill(self.pos, &mut buf),
            Source::File(path) => {
                if self.file.is_none() {
                    self.file = Some(tokio::fs::File::open(path).await.map_err(|e| {
                        io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                    })?);
                }
                if let Some(file) = self.file.as_mut() {
                    file.read_exact(&mut buf).await.map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("reading {} at byte {}: {e}", path.display(), self.pos),
                        )
                    })?;
                }
            }
        }
        self.hasher.update(&buf);
        self.pos += len;
        self.progress.sent.fetch_add(len, Ordering::Relaxed);
        if self.pos == size {
            // Hyper may never poll past the declared length, so finish the hash with the last
            // piece rather than at the end of the stream.
            let digest = std::mem::take(&mut self.hasher).finalize();
            Progress::set(&self.progress.sha256, hex::encode(digest));
        }
        Ok(Some(buf.freeze()))
    }
}

/// SHA-256 (hex) of `size` bytes of `pattern`, computed the way an upload computes it; for tests
/// and for records made without uploading.
pub fn pattern_sha256(pattern: Pattern, size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; PIECE];
    let mut pos = 0;
    while pos < size {
        let len = (size - pos).min(PIECE as u64) as usize;
        pattern.fill(pos, &mut buf[..len]);
        hasher.update(&buf[..len]);
        pos += len as u64;
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(spec: BodySpec, progress: &Arc<Progress>) -> (Vec<u8>, Option<io::Error>) {
        let mut body = Box::pin(stream(spec, Arc::clone(progress), CancellationToken::new()));
        let mut out = Vec::new();
        while let Some(item) = body.next().await {
            match item {
                Ok(bytes) => {
                    assert!(bytes.len() <= PIECE);
                    out.extend_from_slice(&bytes);
                }
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn whole_body_is_the_pattern_and_its_hash() {
        let size = 3 * PIECE as u64 + 17;
        let progress = Arc::new(Progress::default());
        let spec = BodySpec {
            source: Source::Pattern(Pattern::new(9)),
            size,
            rate: None,
            abort_after: None,
        };
        let (bytes, err) = collect(spec, &progress).await;
        assert!(err.is_none());
        let mut expected = vec![0; size as usize];
        Pattern::new(9).fill(0, &mut expected);
        assert_eq!(bytes, expected);
        assert_eq!(progress.sent(), size);
        assert_eq!(
            progress.sha256(),
            Some(pattern_sha256(Pattern::new(9), size))
        );
        assert_eq!(
            pattern_sha256(Pattern::new(9), size),
            hex::encode(Sha256::digest(&expected))
        );
    }

    #[tokio::test]
    async fn abort_stops_at_the_fraction_with_an_error() {
        let progress = Arc::new(Progress::default());
        let spec = BodySpec {
            source: Source::Pattern(Pattern::new(1)),
            size: 1_000_000,
            rate: None,
            abort_after: Some(300_000),
        };
        let (bytes, err) = collect(spec, &progress).await;
        assert_eq!(bytes.len(), 300_000);
        assert!(err.is_some());
        assert!(progress.aborted());
        assert_eq!(progress.sha256(), None);
        assert_eq!(progress.error(), None, "an intended abort is not an error");
    }

    #[tokio::test(start_paused = true)]
    async fn paced_body_takes_size_over_rate() {
        let progress = Arc::new(Progress::default());
        let spec = BodySpec {
            source: Source::Pattern(Pattern::new(1)),
            size: 500_000,
            rate: Some(100_000),
            abort_after: None,
        };
        let start = Instant::now();
        let (bytes, err) = collect(spec, &progress).await;
        assert!(err.is_none());
        assert_eq!(bytes.len(), 500_000);
        let took = start.elapsed().as_secs_f64();
        assert!((4.9..5.2).contains(&took), "{took}");
    }

    #[tokio::test]
    async fn file_source_streams_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let progress = Arc::new(Progress::default());
        let spec = BodySpec {
            source: Source::File(path),
            size: data.len() as u64,
            rate: None,
            abort_after: None,
        };
        let (bytes, err) = collect(spec, &progress).await;
        assert!(err.is_none());
        assert_eq!(bytes, data);
        assert_eq!(progress.sha256(), Some(hex::encode(Sha256::digest(&data))));
    }
}
