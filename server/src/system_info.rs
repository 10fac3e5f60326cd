//! The figures of the system page: the data volume's disk usage, what the
//! stored files add up to, the database files, version and allocator.

use std::path::Path;

use crate::storage::{FileSizes, StorageError, Store, entries};

/// Disk usage of the filesystem holding the database, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct VolumeUsage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Free to us (root may have more, the reserved blocks).
    pub available_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct SystemInfo {
    pub version: &'static str,
    pub allocator: &'static str,
    pub data_dir: String,
    /// `Err`: why the volume could not be read.
    pub volume: Result<VolumeUsage, String>,
    /// Sum of the stored files' sizes.
    pub data_bytes: u64,
    pub files: FileSizes,
}

/// Collects the figures. Blocking (statvfs, a SUM query): call from `spawn_blocking`.
pub fn collect(store: &Store) -> Result<SystemInfo, StorageError> {
    let dir = match store.path().parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    Ok(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        allocator: crate::allocator::NAME,
        data_dir: dir.display().to_string(),
        volume: volume_usage(&dir).map_err(|e| format!("statvfs {}: {e}", dir.display())),
        data_bytes: entries::total_size(store)?,
        files: store.file_sizes(),
    })
}

fn volume_usage(dir: &Path) -> nix::Result<VolumeUsage> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    let unit = st.fragment_size();
    Ok(VolumeUsage {
        total_bytes: st.blocks() * unit,
        used_bytes: (st.blocks() - st.blocks_free()) * unit,
        available_bytes: st.blocks_available() * unit,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_volume_of_a_temp_dir_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let v = super::volume_usage(dir.path()).unwrap();
        assert!(v.total_bytes > 0);
        assert!(v.used_bytes <= v.total_bytes);
        assert!(v.available_bytes <= v.total_bytes - v.used_bytes);
    }
}
