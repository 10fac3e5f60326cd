//! `Attack`: what every attack class shares: the target, the source addresses, the time bound,
//! the stop signal and the tally; plus connecting from a source, writing without outliving the
//! bound, and holding a connection open until the end.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::response;
use super::tally::Tally;
use crate::config::Config;

/// A connect that takes longer is given up (the server's backlog is full).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest piece written at once, so counts stay close to what left.
pub(crate) const PIECE: usize = 64 * 1024;
/// Pause before a connection is opened again, so a server that refuses or closes at once is
/// not hammered in a loop.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);
/// How long an attacker waits for a response already sent, at the end.
const LAST_LOOK: Duration = Duration::from_millis(50);

pub(crate) struct Attack {
    pub config: Config,
    pub target: SocketAddr,
    /// The `Host` header.
    pub host: String,
    pub sources: Vec<IpAddr>,
    pub connections: usize,
    pub deadline: Instant,
    pub tally: Tally,
    /// Pulled when the server is gone or the run is dropped.
    pub stop: CancellationToken,
}

impl Attack {
    /// Runs `connection(attack, i)` for every `i` in `0..connections` at once and waits for
    /// all of them, at most until shortly after the deadline.
    pub(crate) async fn each<F, Fut>(self: &Arc<Self>, connection: F)
    where
        F: Fn(Arc<Attack>, usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for i in 0..self.connections {
            tasks.spawn(connection(Arc::clone(self), i));
        }
        let grace = self.deadline + CONNECT_TIMEOUT;
        while let Ok(Some(_)) = tokio::time::timeout_at(grace, tasks.join_next()).await {}
        tasks.abort_all();
    }

    /// Like `each`, but a connection that ends before the attack does (refused, timed out,
    /// closed or cut by the server) is opened again after a short pause, until the end:
    /// `attempt` returns true when it held its connection to the end.
    pub(crate) async fn each_repeating<F, Fut>(self: &Arc<Self>, attempt: F)
    where
        F: Fn(Arc<Attack>, usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.each(move |attack, i| {
            let attempt = attempt.clone();
            async move {
                while !attack.is_over() {
                    if attempt(Arc::clone(&attack), i).await {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(REOPEN_PAUSE) => {}
                        () = attack.over() => return,
                    }
                }
            }
        })
        .await;
    }

    /// The time bound is over or the attack was stopped.
    pub(crate) async fn over(&self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.deadline) => {}
            () = self.stop.cancelled() => {}
        }
    }

    pub(crate) fn is_over(&self) -> bool {
        self.stop.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Connection `i`'s source address.
    fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    /// A connection from connection `i`'s source; `None` (counted) when it fails or the attack
    /// is over first.
    /// The head of a JSON `POST /api/auth` announcing `content_length` body bytes.
    pub(crate) fn login_head(&self, content_length: usize) -> String {
        format!(
            "POST /api/auth HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {content_length}\r\n\r\n",
            self.host
        )
    }

    pub(crate) async fn connect(&self, i: usize) -> Option<TcpStream> {
        let connecting = async {
            let socket = match self.target {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }?;
            if let Some(ip) = self.source(i) {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.connect(self.target).await
        };
        tokio::select! {
            result = tokio::time::timeout(CONNECT_TIMEOUT, connecting) => match result {
                Ok(Ok(stream)) => {
                    self.tally.opened();
                    Some(stream)
                }
                Ok(Err(e)) => {
                    self.tally.connect_failed(&e);
                    None
                }
                Err(_) => {
                    self.tally.connect_timeout();
                    None
                }
            },
            () = self.over() => None,
        }
    }

    /// Writes `bytes` in pieces; false (counted) when the server closed or the attack is over.
    pub(crate) async fn send(&self, stream: &mut TcpStream, bytes: &[u8]) -> bool {
        for piece in bytes.chunks(PIECE) {
            tokio::select! {
                written = stream.write_all(piece) => match written {
                    Ok(()) => self.tally.sent(piece.len()),
                    Err(e) => {
                        self.tally.io_failed(&e);
                        return false;
                    }
                },
                () = self.over() => return false,
            }
        }
        true
    }

    /// Keeps the connection until the end, reading what the server says (a status, its close).
    /// Returns true when the attack ended it, false when the server did.
    pub(crate) async fn hold(&self, stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1024];
        let mut seen_status = false;
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) => {
                        self.tally.closed();
                        return false;
                    }
                    Ok(n) => {
                        self.tally.received(n);
                        if !seen_status && let Some(code) = response::status_of(&buf[..n]) {
                            self.tally.status(code);
                            seen_status = true;
                        }
                    }
                    Err(e) => {
                        self.tally.io_failed(&e);
                        return false;
                    }
                },
                () = self.over() => return true,
            }
        }
    }

    /// At the end of a connection that never read: takes one look at what the server sent.
    pub(crate) async fn last_look(&self, stream: &mut TcpStream) {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(LAST_LOOK, stream.read(&mut buf)).await {
            Ok(Ok(0)) => self.tally.closed(),
            Ok(Ok(n)) => {
                self.tally.received(n);
                if let Some(code) = response::status_of(&buf[..n]) {
                    self.tally.status(code);
                }
            }
            Ok(Err(e)) => self.tally.io_failed(&e),
            Err(_) => {}
        }
    }
}
