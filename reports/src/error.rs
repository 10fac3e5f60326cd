//! The one error type of the crate: what went wrong and on which file, so a
//! failed report names the run directory's file to look at.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    // The cause is in the message and not chained as `source()`, so both
    // `{e}` and anyhow's `{e:#}` print it exactly once.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not valid JSON: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// A run directory whose `samples.jsonl` holds no sample: nothing to report on.
    #[error("{path} holds no sample: the run ended before its first tick")]
    NoSamples { path: PathBuf },
    #[error("heap profile {path}: {detail}")]
    Profile { path: PathBuf, detail: String },
    #[error("drawing {what}: {detail}")]
    Plot { what: String, detail: String },
    #[error("rendering {what}: {cause}")]
    Render {
        what: &'static str,
        cause: askama::Error,
    },
}

impl ReportError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ReportError {
        let path = path.into();
        move |cause| ReportError::Io {
            action,
            path,
            cause,
        }
    }
}
