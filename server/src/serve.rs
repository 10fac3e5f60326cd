//! The accept loop: HTTP/1 connections with a header-read timeout, an idle
//! timeout and a cap on how many are open at once.
//!
//! `axum::serve` has none of these: a client could open connections without
//! end, trickle header bytes (slowloris) or stall mid-body and keep its
//! connection, buffers and upload open for ever. Here every connection costs
//! a permit of a semaphore, so memory is at most `max_connections` times
//! what one connection may hold (see the bounds in docs/server.md); when all
//! permits are out, new connections wait in the kernel's accept backlog.

mod idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Layer;

pub use idle::IdleTimeout;

/// Request headers larger than this are refused (431) by hyper. Browsers send
/// a few KiB; 64 KiB also bounds what a slowloris client makes us buffer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long connections may take and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed to send a request's headers, also the keep-alive idle
    /// time between requests (hyper starts it when it waits for a request).
    pub header_timeout: Duration,
    /// A connection with no byte moving either way for this long is closed
    /// (a stalled upload is then removed like any aborted one).
    pub idle_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` fires, then stops accepting and
/// waits for open connections to finish (idle keep-alive ones are closed).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
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
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let conn = http.serve_connection(io, service(router.clone(), peer));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The router as a hyper service, with the peer address for `ConnectInfo`.
fn service(
    router: Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send,
    > + Clone,
> {
    TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(router))
}
