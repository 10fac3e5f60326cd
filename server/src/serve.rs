//! The accept loop: HTTP/1 connections with a header-read timeout, an idle
//! timeout, a minimum body rate and a cap on how many are open at once, in
//! all and per client address.
//!
//! `axum::serve` has none of these: a client could open connections without
//! end, trickle header or body bytes (slowloris) or stall mid-body and keep
//! its connection, buffers and upload open for ever. Here every connection
//! costs a slot; one client address may hold at most `max_per_client` of
//! them (more are refused with 429 at once); when all slots are taken an
//! idle connection is closed to make room (sockets that never sent a
//! request before keep-alive ones, the longest idle first), else the request
//! stalled longest on its client (≥ [`MIN_STALL_TO_CUT`]) is cut; for a
//! client holding fewer connections than another, that other client's
//! silent sockets and stalled requests go much sooner (`clients.rs`). A new
//! connection waits for a slot on its own task (never in the accept loop,
//! where one waiting attacker would hold up everyone queued behind it), and
//! freed slots go to the waiting client that holds fewest (`fair_share.rs`),
//! so a browser or a health check next to a flood is next in line. At most
//! `max_connections` wait; when that line is full a newcomer takes the place
//! of the greediest client's newest waiter if its own client holds less,
//! else it is refused with 503, as is one still waiting after a header
//! timeout. The same table relieves a full memory budget.
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
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::fair_share::{Entry, FairShare, Share};

pub use clients::{ClientSlot, Connections, MIN_STALL_TO_CUT, PerClient};
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
/// While every slot is busy, how often a waiting connection looks again for
/// one that went idle (and can be closed to make room).
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
    /// new ones wait (as many again at most).
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
    // As many may wait for a slot as may hold one.
    let slots = FairShare::with_queue_limit(
        limits.max_connections.max(1) as u64,
        limits.max_connections.max(1),
    );
    // Connections that waited for a slot come back here to be served.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(limits.max_connections.max(1));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES);
    let connection = Connection {
        router,
        http,
        limits,
        table: Arc::clone(&table),
        graceful: GracefulShutdown::new(),
    };
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            Some(ready) = ready_rx.recv() => {
                let Ready { stream, peer, slot, client_slot } = ready;
                connection.spawn(stream, peer, slot, client_slot);
                continue;
            }
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
        let client_slot = match &per_client {
            Some(per_client) => match per_client.acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse_over_client_limit(&stream, per_client.max());
                    continue;
                }
            },
            None => None,
        };
        let client = Client::of(peer.ip());
        let waiting = match slots.enter(client, 1) {
            Entry::Granted(slot) => {
                connection.spawn(stream, peer, slot, client_slot);
                continue;
            }
            Entry::Queued(waiting) => waiting,
            Entry::Full => {
                refuse_busy(&stream);
                continue;
            }
        };
        table.make_room(client);
        let (table, ready_tx) = (Arc::clone(&table), ready_tx.clone());
        let deadline = tokio::time::Instant::now() + limits.header_timeout;
        tokio::spawn(async move {
            match waiting
                .wait(deadline, EVICT_RETRY, || table.make_room(client))
                .await
            {
                Some(slot) => {
                    let ready = Ready {
                        stream,
                        peer,
                        slot,
                        client_slot,
                    };
                    // Fails only once the loop has stopped: the socket closes.
                    let _ = ready_tx.send(ready).await;
                }
                None => refuse_busy(&stream),
            }
        });
    }
    drop((listener, ready_rx));
    connection.graceful.shutdown().await;
}

/// A connection that waited for its slot and got it.
struct Ready {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Share,
    client_slot: Option<ClientSlot>,
}

/// What serving one connection needs.
struct Connection {
    router: Router,
    http: hyper::server::conn::http1::Builder,
    limits: ConnectionLimits,
    table: Arc<Connections>,
    graceful: GracefulShutdown,
}

impl Connection {
    /// Serves `stream` on its own task, holding its slots until it ends.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, slot: Share, client: Option<ClientSlot>) {
        let entry = self.table.register(Client::of(peer.ip()));
        let service = ConnService {
            router: self.router.clone(),
            peer,
            table: Arc::clone(&self.table),
            activity: Arc::clone(&entry.activity),
            body_rate: self.limits.body_rate,
        };
        let io = TokioIo::new(IdleTimeout::new(stream, self.limits.idle_timeout));
        let conn = self
            .http
            .serve_connection(io, TowerToHyperService::new(service));
        let conn = self.graceful.watch(conn);
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
}

/// Answers a client past its connection limit with 429 and closes.
fn refuse_over_client_limit(stream: &TcpStream, max: usize) {
    let message =
        format!("too many connections from this address ({max} open); close some and retry");
    refuse(stream, "429 Too Many Requests", &message);
}

/// Answers 503 when every slot stayed busy, or too many already wait.
fn refuse_busy(stream: &TcpStream) {
    refuse(
        stream,
        "503 Service Unavailable",
        "the server is at its connection limit; retry shortly",
    );
}

/// Writes a small JSON error and closes. A socket that has not been read
/// from has an empty send buffer, so one non-blocking write sends it all;
/// nothing waits on the client.
fn refuse(stream: &TcpStream, status: &str, message: &str) {
    let body = format!("{{\"error\":\"{message}\"}}");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
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
        request.extensions_mut().insert(Client::of(self.peer.ip()));
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
