//! The server as its machine started it: one handle over a child process of
//! the rig (`local`) and a server inside a qemu guest (`vm`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::target::Exit;

/// A boxed future: what a trait object's async method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server is started with; the machine picks its listen addresses.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The binary (a guest has it in its initramfs already).
    pub binary: &'a Path,
    /// The scenario's extra flags.
    pub args: &'a [String],
    /// The database (a guest's is on its own disk).
    pub db: &'a Path,
    /// Where its output goes.
    pub log: &'a Path,
    /// `PS_SHARED_SECRET`.
    pub secret: &'a str,
    /// The command the server runs under (`[server] wrapper`, resolved but
    /// for `{server}`); empty: none. Local modes only.
    pub wrapper: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("starting {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("share-server did not start: {reason}; last log lines:\n{log_tail}")]
    NoStart { reason: String, log_tail: String },
}

/// How a machine watches and stops the server's process.
pub trait ServerProcess: Send {
    /// `Some` once the server has exited (on its own or killed).
    fn try_exit(&mut self) -> Option<Exit>;
    /// Waits for the server to exit on its own.
    fn wait(&mut self) -> BoxFuture<'_, Exit>;
    /// Stops the server (and what it runs in); one that already died reports how.
    fn stop(self: Box<Self>) -> BoxFuture<'static, Exit>;
}

/// A running server, answering `/healthz`.
pub struct Server {
    process: Box<dyn ServerProcess>,
    /// Its pid (inside the guest in `vm` mode).
    pub pid: u32,
    pub base_url: String,
    pub debug_url: String,
    pub log: PathBuf,
}

impl Server {
    pub fn new(
        process: Box<dyn ServerProcess>,
        pid: u32,
        base_url: String,
        debug_url: String,
        log: PathBuf,
    ) -> Server {
        Server {
            process,
            pid,
            base_url,
            debug_url,
            log,
        }
    }

    /// `Some` once the server has exited (on its own or killed).
    pub fn try_exit(&mut self) -> Option<Exit> {
        self.process.try_exit()
    }

    /// Waits for the server to exit on its own.
    pub async fn wait(&mut self) -> Exit {
        self.process.wait().await
    }

    /// Stops the server; in `vm` mode the guest then powers off.
    pub async fn stop(self) -> Exit {
        self.process.stop().await
    }
}

/// The last `n` lines of a file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
