//! The one error type of the crate: what went wrong and on which file, so a
//! failed report names the run directory's file to look at.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A run directory whose `samples.jsonl` holds no sample: nothing to report on.
    #[error("{path} holds no sample: the run ended before its first tick")]
    NoSamples { path: PathBuf },
    #[error("drawing {what}: {detail}")]
    Plot { what: String, detail: String },
}

impl ReportError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ReportError {
        let path = path.into();
        move |source| ReportError::Io {
            action,
            path,
            source,
        }
    }
}
