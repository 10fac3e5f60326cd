//! The accept loop: HTTP/1 connections with a header-read timeout, an idle
//! timeout, a minimum body rate and a cap on how many are open at once, in
//! all and per client address.
//!
//! `axum::serve` has none of these: a client could open connections without
//! end, trickle header or body bytes (slowloris) or stall mid-body and keep
//! its connection, buffers and upload open for ever. Here every connection
//! costs a slot; one client address may hold at most `max_per_client` of
//! them (more are refused with 429 at once); when all slots are taken the
//! connection idle the longest is closed to make room, else the request
//! stalled longest on its client (≥ [`MIN_STALL_TO_CUT`]) is cut; only if
//! every connection is busy and moving do new ones wait in the kernel's
//! accept backlog. The same table relieves a full memory budget.
//! Memory per connection is bounded by hyper's buffer ([`MAX_BUFFER_BYTES`]);
//! what requests hold beyond that draws from the memory budget (`budget.rs`).

mod clients;
mod idle;
mod min_rate;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use clients::{ClientSlot, Connections, MIN_STALL_TO_CUT, PerClient, client_key};
pub use idle::IdleTimeout;
pub use min_rate::{BodyRate, BodyTooSlow, MinRate, Stall};

/// Request headers larger than this are refused (431) by hyper. Browsers send
/// a few KiB; 64 KiB also bounds what a slowloris client makes us buffer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's read (and write-queue) buffer per connection at most. Its default
/// (~400 KiB) let 256 connections hold ~100 MiB; 64 KiB still reads an upload
/// in large pieces (the read size grows from 8 KiB only while reads fill it).
/// A request head must fit in it, so it equals [`MAX_HEADER_BYTES`].
pub const MAX_BUFFER_BYTES: usize = MAX_HEADER_BYTES;
/// While every slot is busy, how often the accept loop looks again for a
/// connection that went idle (and can be closed to make room).
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// How long connections may take and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed to send a request's headers, also the keep-alive idle
    /// time between requests (hyper starts it when it waits for a request).
    pub header_timeout: Duration,
    /// A connection with no byte moving either way for this long is closed
    /// (a stalled upload is then removed like any aborted one).
    pub idle_timeout: Duration,
    /// Connections open at once; past it the longest idle one is closed, or
    /// new ones wait to be accepted.
    pub max_connections: usize,
    /// Connections one client address may hold (behind a proxy: requests in
    /// flight per forwarded address instead).
    pub max_per_client: usize,
    /// The slowest request body accepted.
    pub body_rate: BodyRate,
}

/// Serves `router` on `listener` until `stop` fires, then stops accepting and
/// waits for open connections to finish (idle keep-alive ones are closed).
/// `per_client: None` turns the per-address limit off (behind a proxy every
/// connection comes from the proxy; requests are limited per forwarded
/// address instead, in `routes.rs`). `table` holds the open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    per_client: Option<Arc<PerClient>>,
    table: Arc<Connections>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of
                    // spinning (as axum::serve does).
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let client = match &per_client {
            Some(per_client) => match per_client.acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse(&stream, per_client.max());
                    continue;
                }
            },
            None => None,
        };
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = free_slot(&slots, &table) => slot,
        };
        let entry = table.register();
        let service = ConnService {
            router: router.clone(),
            peer,
            table: Arc::clone(&table),
            activity: Arc::clone(&entry.activity),
            body_rate: limits.body_rate,
        };
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let conn = http.serve_connection(io, TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                // Idle (nothing lost), or stalled on its client (its upload
                // is removed like an aborted one).
                () = entry.evicted.cancelled() => {
                    tracing::debug!(%peer, "closed a connection to make room");
                }
            }
            drop((entry, client, slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection slot: a free one, else one made by closing the connection
/// idle the longest, or cutting the request stalled the longest; while every
/// connection is busy and moving, waits.
async fn free_slot(slots: &Arc<Semaphore>, table: &Connections) -> OwnedSemaphorePermit {
    loop {
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return slot;
        }
        if !table.evict_idle() && table.cut_stalled(MIN_STALL_TO_CUT) {
            tracing::info!("all connections busy: cut the request stalled longest on its client");
        }
        if let Ok(Ok(slot)) =
            tokio::time::timeout(EVICT_RETRY, Arc::clone(slots).acquire_owned()).await
        {
            return slot;
        }
    }
}

/// Answers a client past its connection limit with 429 and closes. A new
/// socket's send buffer is empty, so one non-blocking write sends it all;
/// nothing waits on the client.
fn refuse(stream: &TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":\"too many connections from this address ({max} open); close some and retry\"}}"
    );
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// The router as one connection's service: request bodies get the minimum
/// rate, the peer address goes in `ConnectInfo`, and the connection counts
/// as busy until the response body is done.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    table: Arc<Connections>,
    activity: Arc<clients::Activity>,
    body_rate: BodyRate,
}

impl tower::Service<hyper::Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: hyper::Request<Incoming>) -> Self::Future {
        let busy = self.table.busy(&self.activity);
        let rate = self.body_rate;
        let stall = Arc::clone(&self.activity.stall);
        let mut request = request.map(|body| Body::new(MinRate::new(body, rate, stall)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = tower::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(HoldBody::new(body, busy))))
        })
    }
}

/// A response body that holds `T` (a busy mark, a client's slot) until it
/// is done.
pub struct HoldBody<T> {
    inner: Body,
    _held: T,
}

impl<T> HoldBody<T> {
    pub fn new(inner: Body, held: T) -> Self {
        HoldBody { inner, _held: held }
    }
}

impl<T: Send + Unpin + 'static> hyper::body::Body for HoldBody<T> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
