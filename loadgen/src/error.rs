//! Why a run failed. Every variant raised after the run started carries the partial summary,
//! which is also written to the report directory before `run` returns.

use std::path::PathBuf;

use crate::summary::Summary;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (nothing was sent).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The report directory or the summary could not be written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `GET /healthz` failed before the run started.
    #[error("cannot reach share-server at {host}: {detail}")]
    Unreachable {
        host: String,
        detail: String,
        summary: Box<Summary>,
    },
    /// `POST /api/auth` answered 401: the shared secret is not the server's.
    #[error("share-server at {host} refused the shared secret (POST /api/auth answered 401)")]
    WrongSecret { host: String, summary: Box<Summary> },
    /// The server stopped answering during the run (connection refused or `/healthz` timing
    /// out after a failed request); the run was stopped.
    #[error("share-server at {host} stopped answering during the run: {detail}")]
    ServerGone {
        host: String,
        detail: String,
        summary: Box<Summary>,
    },
    /// The run was interrupted (ctrl-c, through goose's handler); in-flight requests stopped.
    #[error("interrupted (ctrl-c); in-flight requests were stopped")]
    Interrupted { summary: Box<Summary> },
    /// goose refused the configuration or failed while running.
    #[error("goose: {source}")]
    Goose {
        #[source]
        source: goose::GooseError,
        summary: Box<Summary>,
    },
}

impl Error {
    /// The summary of what ran before the error, when the run had started.
    pub fn partial_summary(&self) -> Option<&Summary> {
        match self {
            Error::Config(_) | Error::Io { .. } => None,
            Error::Unreachable { summary, .. }
            | Error::WrongSecret { summary, .. }
            | Error::ServerGone { summary, .. }
            | Error::Interrupted { summary }
            | Error::Goose { summary, .. } => Some(summary),
        }
    }
}
