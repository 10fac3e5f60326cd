//! memstat: the memory layers of a Linux process and machine, as plain
//! serialisable structs.
//!
//! - [`process`]: `/proc/<pid>/status` (RSS split into anon/file/shmem, peak) and open fds.
//! - [`system`]: `/proc/meminfo` (what a VM dashboard shows, and what it means).
//! - [`cgroup`]: the memory cgroup of a process, v1 or v2, detected.
//!
//! Parsers are pure functions of file text (tested on captured files); the
//! `read` functions are thin wrappers over the files. The server reports its
//! own figures with this crate and the profiling rig samples the server's
//! from outside with the same code.

pub mod cgroup;
pub mod process;
pub mod system;

/// Reading or parsing a memory figure failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    #[error("no memory cgroup: {0}")]
    NoCgroup(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
