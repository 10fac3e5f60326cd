//! A connection that ends when no byte has moved, in either direction, for
//! a set time while the server waits on it.
//!
//! Why "either direction": hyper keeps a read pending during a whole download
//! (to notice the client leaving), so a per-direction read timeout would cut
//! off healthy slow downloads. A client that stalls mid-upload, or stops
//! reading a download, moves nothing: that is what this ends. When the
//! server itself is busy (not polling the socket) no timer runs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with an idle timeout; reads and writes fail with
/// [`io::ErrorKind::TimedOut`] once nothing moved for `idle`.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    last_progress: Instant,
    /// Armed at `last_progress + idle` whenever an operation is pending.
    timer: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            idle,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Called when an operation is pending: an error once the connection has
    /// been idle too long, else pending with the timer armed to wake us then.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = self.last_progress + self.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no data moved for {:?}", self.idle),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(result)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut conn = IdleTimeout::new(ours, Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_it_alive() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut read_half, mut write_half) =
            tokio::io::split(IdleTimeout::new(ours, Duration::from_secs(5)));
        // The peer writes every 3 s for 30 s: never 5 s of silence.
        let peer = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                theirs.write_all(b"x").await.unwrap();
                let mut b = [0u8; 1];
                theirs.read_exact(&mut b).await.unwrap();
            }
            theirs // kept open: the silence below is not an EOF
        });
        let mut b = [0u8; 1];
        for _ in 0..10 {
            read_half.read_exact(&mut b).await.unwrap();
            write_half.write_all(b"y").await.unwrap();
        }
        let _theirs = peer.await.unwrap();
        // Then silence: the next read ends with a timeout.
        let err = read_half.read_exact(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_out_the_writer() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut conn = IdleTimeout::new(ours, Duration::from_secs(5));
        let err = conn.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
