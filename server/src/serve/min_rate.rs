//! A request body that must keep up a minimum transfer rate.
//!
//! The idle timeout (`idle.rs`) ends a connection on which nothing moves, but
//! a client that trickles one byte every few seconds resets it for ever and
//! keeps its connection slot and buffers. Here the time the server spends
//! *waiting on the client* for body bytes is added up; once it reaches the
//! window, the body must have sent `min_bytes_per_sec × window` bytes in it,
//! or it ends with [`BodyTooSlow`] (the upload is then removed like any
//! aborted one). Time the server is busy (not polling the body: a full
//! upload queue, a SQLite write) never counts against the client.
//! Apache's `mod_reqtimeout` does the same (`body=20,MinRate=500`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The minimum rate: `min_bytes_per_sec` averaged over `window` of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    pub min_bytes_per_sec: u64,
    pub window: Duration,
}

impl BodyRate {
    fn min_bytes(&self) -> u64 {
        (self.min_bytes_per_sec as f64 * self.window.as_secs_f64()) as u64
    }
}

/// Why a body was cut; the message goes to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the request body arrived slower than {} bytes/s over {:?}; it was cut and nothing was kept",
    rate.min_bytes_per_sec,
    rate.window
)]
pub struct BodyTooSlow {
    pub rate: BodyRate,
}

/// Since when a connection's request body has been waiting on its client
/// with no byte arriving (`None`: it is not), read by the accept loop and
/// the memory budget to cut the longest-stalled request when they run out.
#[derive(Debug, Default)]
pub struct Stall(Mutex<Option<Instant>>);

impl Stall {
    /// How long the body has been stalled on its client, if it is.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.lock().map(|since| since.elapsed())
    }

    pub(super) fn set(&self, since: Option<Instant>) {
        *self.lock() = since;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A plain instant: still right after a panic elsewhere.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `inner` with the minimum rate enforced.
pub struct MinRate<B> {
    inner: B,
    rate: BodyRate,
    /// Time spent waiting on the client in the current window.
    waited: Duration,
    /// Bytes received in the current window.
    received: u64,
    /// When the current wait began, while the body is pending.
    pending_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// Shared with the connection: set while waiting on the client.
    stall: Arc<Stall>,
    stalled: bool,
}

impl<B> MinRate<B> {
    pub fn new(inner: B, rate: BodyRate, stall: Arc<Stall>) -> Self {
        stall.set(None);
        MinRate {
            inner,
            rate,
            waited: Duration::ZERO,
            received: 0,
            pending_since: None,
            timer: Box::pin(tokio::time::sleep(rate.window)),
            stall,
            stalled: false,
        }
    }

    /// Marks the body as waiting on its client from `now` (if not already).
    fn stalling(&mut self, now: Instant) {
        if !self.stalled {
            self.stalled = true;
            self.stall.set(Some(now));
        }
    }

    fn moving(&mut self) {
        if self.stalled {
            self.stalled = false;
            self.stall.set(None);
        }
    }

    /// Ends the window if the client has been waited on for all of it.
    fn check(&mut self) -> Result<(), BodyTooSlow> {
        if self.waited < self.rate.window {
            return Ok(());
        }
        if self.received < self.rate.min_bytes() {
            return Err(BodyTooSlow { rate: self.rate });
        }
        self.waited = Duration::ZERO;
        self.received = 0;
        Ok(())
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let now = Instant::now();
        if let Some(since) = this.pending_since.take() {
            this.waited += now - since;
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_ready() {
            this.moving();
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                if let Err(e) = this.check() {
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if let Err(e) = this.check() {
                    return Poll::Ready(Some(Err(e.into())));
                }
                // Wake when the window's waiting time would be used up.
                this.pending_since = Some(now);
                this.stalling(now);
                let deadline = now + (this.rate.window - this.waited);
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    // Already due: count the wait and decide now.
                    this.waited += Instant::now() - now;
                    this.pending_since = None;
                    if let Err(e) = this.check() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MinRate<B> {
    fn drop(&mut self) {
        self.moving();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    type Frames = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

    const RATE: BodyRate = BodyRate {
        min_bytes_per_sec: 100,
        window: Duration::from_secs(10),
    };

    /// A body fed by a channel, so the test decides when bytes arrive.
    fn channel_body() -> (
        Frames,
        MinRate<impl Body<Data = Bytes, Error = Infallible> + Unpin>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let stall = Arc::new(Stall::default());
        (
            tx,
            MinRate::new(StreamBody::new(Box::pin(frames)), RATE, stall),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_after_one_window() {
        let (tx, mut body) = channel_body();
        let feeder = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let started = Instant::now();
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the body ended instead of being cut"),
            }
        };
        assert!(err.to_string().contains("slower than 100 bytes/s"), "{err}");
        let took = started.elapsed();
        assert!(took >= RATE.window && took < RATE.window * 2, "{took:?}");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_and_server_time_is_not_counted() {
        let (tx, mut body) = channel_body();
        tokio::spawn(async move {
            // 200 bytes/s for 60 s, then the end.
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 200]))))
                    .await
                    .unwrap();
            }
        });
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
            // The server is busy for 30 s (not polling): not the client's fault.
            if total == 200 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
        assert_eq!(total, 60 * 200);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stall_mark_says_how_long_the_client_has_been_silent() {
        let (tx, body) = channel_body();
        let stall = Arc::clone(&body.stall);
        let mut body = body;
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(stall.stalled_for(), Some(Duration::from_secs(3)));
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            stall.stalled_for(),
            Some(Duration::from_secs(1)),
            "reset by the byte"
        );
        drop(tx);
        reader.await.unwrap();
        assert_eq!(stall.stalled_for(), None, "the body is done");
    }
}
