use std::path::PathBuf;

/// What can go wrong starting or talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running cargo: {0}")]
    Cargo(#[source] std::io::Error),
    #[error("cargo build -p share-server failed: {0}")]
    Build(String),
    #[error("creating {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("share-server did not start: {reason}; log:\n{log}")]
    NoStart { reason: String, log: String },
    #[error("waiting for share-server: {0}")]
    Wait(#[source] std::io::Error),
    #[error("share-server did not exit within {0:?}")]
    NoExit(std::time::Duration),
    #[error("signalling share-server: {0}")]
    Signal(#[from] nix::Error),
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("login failed: {0}")]
    Login(String),
    #[error("{tool} is needed and missing ({why}): run `{install}`")]
    ToolMissing {
        tool: &'static str,
        install: String,
        why: String,
    },
    #[error("{field} not in {path}")]
    Proc { field: String, path: String },
}
