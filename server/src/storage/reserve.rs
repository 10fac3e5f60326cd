//! Disk space held back for clean-up on a full disk.
//!
//! In WAL mode even a DELETE appends pages to the WAL, and a checkpoint needs
//! the database file to grow, so on a completely full disk a failed upload
//! could not remove its own chunks. The server keeps a reserve file of zeros
//! beside the database; when SQLite reports SQLITE_FULL it deletes the file,
//! which gives the clean-up room, and refills it later when space allows.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

/// Written in blocks of this size (zeros, so the space is really allocated,
/// unlike a sparse `set_len`).
const BLOCK: usize = 64 * 1024;

pub struct DiskReserve {
    path: PathBuf,
    bytes: u64,
}

impl DiskReserve {
    pub fn new(path: PathBuf, bytes: u64) -> Self {
        DiskReserve { path, bytes }
    }

    /// Makes sure the reserve file exists at full size. Best effort: on a full
    /// disk it removes the partial file and reports the error.
    pub fn fill(&self) -> io::Result<()> {
        if self.bytes == 0 || fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes) {
            return Ok(());
        }
        let result = (|| {
            let mut file = File::create(&self.path)?;
            let zeros = vec![0u8; BLOCK];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(BLOCK as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }

    /// Frees the reserve; `true` if there was one to free.
    pub fn release(&self) -> bool {
        let released = fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(path = %self.path.display(), bytes = self.bytes, "disk full: released the reserve for clean-up");
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reserve");
        let reserve = DiskReserve::new(path.clone(), 200_000);
        reserve.fill().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 200_000);
        assert!(reserve.release());
        assert!(!reserve.release(), "nothing left to release");
        assert!(DiskReserve::new(path.clone(), 0).fill().is_ok());
        assert!(!path.exists(), "a zero reserve writes nothing");
    }
}
