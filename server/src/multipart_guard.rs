//! Bounds on the parts of a multipart body that the parser buffers whole.
//!
//! multer (behind axum's `Multipart`) streams a part's data, but it keeps
//! everything before the first boundary, and a part's headers until their
//! blank line, in one growing buffer. A body without a boundary, or with a
//! header line that never ends, would make it hold the whole request in
//! memory (one such upload of a few hundred MB ends a 256 MB server). This
//! module follows the body's framing as it streams past, the way multer
//! reads it, and fails the body once the preamble or one part's headers grow
//! past their limit; the upload then answers 400 and the connection closes.
//!
//! multer also reads every piece of body that is ready before it parses
//! (`StreamBuffer::poll_stream` loops until `Pending`), so a fast client
//! could fill its buffer with whatever the socket holds. The guard hands it
//! at most [`MAX_BURST_BYTES`] per poll, so the parser's buffer stays within
//! [`MULTIPART_BUFFER_BYTES`], reserved in the memory budget for the whole
//! request (503 when there is no room).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::budget::Reservation;
use crate::client::Client;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes allowed before the first boundary (clients send none; RFC 2046
/// allows a preamble, which we keep small).
pub const MAX_PREAMBLE_BYTES: usize = 16 * 1024;
/// Bytes allowed from a boundary to the blank line that ends its part's
/// headers. Browsers send about 150; multer reads at most 32 headers.
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;

/// Body bytes handed to the parser between two of its waits.
pub const MAX_BURST_BYTES: usize = 64 * 1024;
/// What parsing one multipart request may hold: multer's buffer, a
/// `BytesMut` that doubles as it grows, so up to twice a burst plus the
/// hyper piece that crossed it (≤ [`crate::serve::MAX_BUFFER_BYTES`]); one
/// part's headers; and the piece waiting in hyper's body channel. Measured
/// with 200 stalled uploads: without the doubling and the channel the
/// budget missed ~240 KiB per upload.
pub const MULTIPART_BUFFER_BYTES: usize = 2 * (MAX_BURST_BYTES + crate::serve::MAX_BUFFER_BYTES)
    + MAX_PART_HEADER_BYTES
    + crate::serve::MAX_BUFFER_BYTES;

/// Wraps the body of a multipart request so it fails past the limits above,
/// with the parser's buffer reserved in the memory budget. Other requests
/// pass unchanged.
pub async fn guard(
    State(state): State<AppState>,
    client: Client,
    request: Request,
    next: Next,
) -> Response {
    let boundary = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return next.run(request).await;
    };
    let reserved = match state
        .budget
        .reserve(MULTIPART_BUFFER_BYTES as u64, client)
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let request = request.map(|body| {
        Body::from_stream(Guarded {
            inner: body.into_data_stream(),
            framing: Framing::new(&boundary),
            burst: 0,
            _reserved: reserved,
        })
    });
    next.run(request).await
}

/// The body stream with its framing checked as it passes.
struct Guarded<S> {
    inner: S,
    framing: Framing,
    /// Bytes handed out since the parser last waited.
    burst: usize,
    _reserved: Reservation,
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.burst >= MAX_BURST_BYTES {
            // Let the parser work through what it has before reading more.
            self.burst = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let item = match self.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                self.burst = 0;
                return Poll::Pending;
            }
        };
        Poll::Ready(match item {
            Some(Ok(bytes)) => match self.framing.feed(&bytes) {
                Ok(()) => {
                    self.burst += bytes.len();
                    Some(Ok(bytes))
                }
                Err(e) => Some(Err(axum::Error::new(e))),
            },
            other => other,
        })
    }
}

/// A limit broken by the body; the message goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("no boundary within the first {MAX_PREAMBLE_BYTES} bytes")]
    PreambleTooLong,
    #[error("part headers longer than {MAX_PART_HEADER_BYTES} bytes")]
    HeadersTooLong,
}

/// Where in the body we are, as multer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before `--boundary`.
    Preamble,
    /// Just after a `--boundary`: `--` ends the body, else the line ends.
    AfterDelimiter,
    /// Inside a part's headers, until `\r\n\r\n`.
    Headers,
    /// A part's data, until `\r\n--boundary`.
    Data,
    /// After the closing delimiter: multer reads no further.
    Epilogue,
}

/// Follows the multipart framing of a body fed in pieces.
#[derive(Debug)]
pub struct Framing {
    /// `--boundary`
    delimiter: Vec<u8>,
    /// `\r\n--boundary`
    data_end: Vec<u8>,
    stage: Stage,
    /// Bytes fed since the stage that is limited began.
    stage_bytes: usize,
    /// The last bytes of the current stage, shorter than its pattern: a
    /// pattern may straddle two pieces.
    tail: Vec<u8>,
    /// In `AfterDelimiter`: the first two bytes of the delimiter line...
    line: Vec<u8>,
    /// ...and whether the last one seen was `\r`.
    line_ends_with_cr: bool,
}

impl Framing {
    pub fn new(boundary: &str) -> Self {
        let delimiter = [b"--", boundary.as_bytes()].concat();
        Framing {
            data_end: [b"\r\n", delimiter.as_slice()].concat(),
            delimiter,
            stage: Stage::Preamble,
            stage_bytes: 0,
            tail: Vec::new(),
            line: Vec::new(),
            line_ends_with_cr: false,
        }
    }

    /// Takes the next piece of the body.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), FramingError> {
        while !piece.is_empty() {
            let (stage, before) = (self.stage, self.stage_bytes);
            let used = match stage {
                Stage::Epilogue => return Ok(()),
                Stage::AfterDelimiter => self.delimiter_line(piece),
                Stage::Preamble | Stage::Headers | Stage::Data => self.search(piece),
            };
            // Bytes up to a switch belong to the stage that ended (checked
            // against its limit); the next stage starts at 0.
            let total = before + used;
            if self.stage == stage {
                self.stage_bytes = total;
            }
            match stage {
                Stage::Preamble if total > MAX_PREAMBLE_BYTES => {
                    return Err(FramingError::PreambleTooLong);
                }
                Stage::AfterDelimiter | Stage::Headers if total > MAX_PART_HEADER_BYTES => {
                    return Err(FramingError::HeadersTooLong);
                }
                _ => {}
            }
            piece = &piece[used..];
        }
        Ok(())
    }

    /// Searches `piece` for the current stage's end; returns the bytes used
    /// (all of them, or up to the end of the pattern, switching stage).
    fn search(&mut self, piece: &[u8]) -> usize {
        let pattern = match self.stage {
            Stage::Preamble => &self.delimiter,
            Stage::Headers => &b"\r\n\r\n"[..],
            _ => &self.data_end,
        };
        match find_across(&self.tail, piece, pattern) {
            Some(end) => {
                let next = match self.stage {
                    Stage::Headers => Stage::Data,
                    _ => Stage::AfterDelimiter,
                };
                self.switch(next);
                end
            }
            None => {
                let keep = pattern.len() - 1;
                if piece.len() >= keep {
                    self.tail.clear();
                    self.tail.extend_from_slice(&piece[piece.len() - keep..]);
                } else {
                    self.tail.extend_from_slice(piece);
                    let excess = self.tail.len().saturating_sub(keep);
                    self.tail.drain(..excess);
                }
                piece.len()
            }
        }
    }

    /// The rest of a delimiter line: `--` ends the body; else everything up
    /// to `\r\n` (transport padding) precedes the part's headers.
    fn delimiter_line(&mut self, piece: &[u8]) -> usize {
        for (i, &b) in piece.iter().enumerate() {
            if self.line.len() < 2 {
                self.line.push(b);
                if self.line == b"--" {
                    self.switch(Stage::Epilogue);
                    return i + 1;
                }
            }
            if b == b'\n' && self.line_ends_with_cr {
                self.switch(Stage::Headers);
                return i + 1;
            }
            self.line_ends_with_cr = b == b'\r';
        }
        piece.len()
    }

    fn switch(&mut self, stage: Stage) {
        self.stage = stage;
        self.stage_bytes = 0;
        self.tail.clear();
        self.line.clear();
        self.line_ends_with_cr = false;
    }
}

/// The end offset in `piece` of the first `pattern` in `tail ++ piece`.
fn find_across(tail: &[u8], piece: &[u8], pattern: &[u8]) -> Option<usize> {
    if !tail.is_empty() {
        let k = (pattern.len() - 1).min(piece.len());
        let joined = [tail, &piece[..k]].concat();
        if let Some(i) = memchr::memmem::find(&joined, pattern) {
            return Some(i + pattern.len() - tail.len());
        }
    }
    memchr::memmem::find(piece, pattern).map(|i| i + pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: &str = "XyZ-boundary";

    fn body(parts: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (headers, data) in parts {
            out.extend_from_slice(format!("--{B}\r\n").as_bytes());
            out.extend_from_slice(headers);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    fn feed_split(body: &[u8], cuts: &[usize]) -> Result<Stage, FramingError> {
        let mut framing = Framing::new(B);
        let mut last = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts.into_iter().chain([body.len()]) {
            framing.feed(&body[last..cut])?;
            last = cut;
        }
        Ok(framing.stage)
    }

    #[test]
    fn a_normal_upload_passes_and_ends_in_the_epilogue() {
        let data = vec![7u8; 100_000];
        let b = body(&[
            (b"Content-Disposition: form-data; name=\"note\"", b"hello"),
            (
                b"Content-Disposition: form-data; name=\"file\"; filename=\"a\"",
                &data,
            ),
        ]);
        assert_eq!(feed_split(&b, &[]), Ok(Stage::Epilogue));
        assert_eq!(
            feed_split(&b, &[1, 5, 40, 99, 500, 60_000]),
            Ok(Stage::Epilogue)
        );
    }

    #[test]
    fn no_boundary_fails_after_the_preamble_limit() {
        let b = vec![b'a'; MAX_PREAMBLE_BYTES + 1];
        assert_eq!(feed_split(&b, &[100]), Err(FramingError::PreambleTooLong));
        assert!(feed_split(&b[..MAX_PREAMBLE_BYTES], &[]).is_ok());
    }

    #[test]
    fn endless_part_headers_fail() {
        let mut b = format!("--{B}\r\nX-Long: ").into_bytes();
        b.extend(std::iter::repeat_n(b'h', MAX_PART_HEADER_BYTES));
        assert_eq!(
            feed_split(&b, &[3, 4096]),
            Err(FramingError::HeadersTooLong)
        );
        // A delimiter line that never ends counts too.
        let mut b = format!("--{B}").into_bytes();
        b.extend(std::iter::repeat_n(b' ', MAX_PART_HEADER_BYTES + 1));
        assert_eq!(feed_split(&b, &[]), Err(FramingError::HeadersTooLong));
    }

    #[test]
    fn the_blank_line_must_follow_the_delimiter_line() {
        // multer looks for the blank line only after the delimiter line's
        // CRLF; so does this (else a part could hide endless headers).
        let mut b = format!("--{B}\r\n\r\n").into_bytes();
        b.extend(std::iter::repeat_n(b'h', MAX_PART_HEADER_BYTES));
        assert_eq!(feed_split(&b, &[]), Err(FramingError::HeadersTooLong));
    }

    proptest! {
        /// Any well-formed body passes, however it is cut into pieces, and
        /// ends where the framing says.
        #[test]
        fn well_formed_bodies_pass_in_any_pieces(
            parts in prop::collection::vec(
                (prop::collection::vec(b'a'..=b'z', 0..200), prop::collection::vec(any::<u8>(), 0..3000)),
                1..20),
            cuts in prop::collection::vec(any::<usize>(), 0..30),
        ) {
            let parts: Vec<(Vec<u8>, Vec<u8>)> = parts.into_iter()
                .map(|(h, d)| ([b"X-H: ".as_slice(), &h].concat(), d))
                // Data that happens to hold the delimiter would end the part early.
                .filter(|(_, d)| memchr::memmem::find(d, format!("--{B}").as_bytes()).is_none())
                .collect();
            let refs: Vec<(&[u8], &[u8])> = parts.iter().map(|(h, d)| (h.as_slice(), d.as_slice())).collect();
            let b = body(&refs);
            prop_assert_eq!(feed_split(&b, &cuts), Ok(Stage::Epilogue));
        }

        /// The verdict never depends on how the body was cut.
        #[test]
        fn pieces_do_not_change_the_verdict(
            b in prop::collection::vec(prop::sample::select(vec![b'-', b'\r', b'\n', b'X', b'y', b'Z', b'a']), 0..40_000),
            cuts in prop::collection::vec(any::<usize>(), 0..30),
        ) {
            let whole = feed_split(&b, &[]);
            let split = feed_split(&b, &cuts);
            prop_assert_eq!(whole.is_err(), split.is_err());
        }
    }
}
