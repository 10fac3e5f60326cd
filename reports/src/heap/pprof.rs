//! Reading a saved heap profile (`heap/<t_ms>.pb.gz`) into stacks: the
//! decoder is run-format's ([`run_format::pprof`]), shared with the server's
//! own test of `/debug/pprof/heap`.

use std::path::Path;

pub use run_format::pprof::{Frame, Stack, decode};

use crate::error::ReportError;

/// Reads and decodes `path`.
pub fn read(path: &Path) -> Result<Vec<Stack>, ReportError> {
    let gz = std::fs::read(path).map_err(ReportError::io("reading", path))?;
    decode(&gz).map_err(|detail| ReportError::Profile {
        path: path.to_owned(),
        detail,
    })
}
