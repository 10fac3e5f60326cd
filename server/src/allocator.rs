//! The allocator compiled into this binary and what it can tell.
//!
//! Exactly one of the Cargo features `jemalloc` (default; `jemalloc-prof`
//! adds heap profiling), `dhat-heap` or `system` is on. The
//! `#[global_allocator]` itself lives in `main.rs` so that test binaries can
//! bring their own (the dhat test does).

use serde::Serialize;

#[cfg(all(feature = "jemalloc", feature = "dhat-heap"))]
compile_error!(
    "features `jemalloc` (the default) and `dhat-heap` both choose the global allocator: \
     build dhat with `--no-default-features --features dhat-heap`"
);
#[cfg(all(feature = "jemalloc", feature = "system"))]
compile_error!(
    "features `jemalloc` (the default) and `system` both choose the global allocator: \
     build the system allocator with `--no-default-features --features system`"
);
#[cfg(all(feature = "dhat-heap", feature = "system"))]
compile_error!("features `dhat-heap` and `system` both choose the global allocator: pick one");
#[cfg(not(any(feature = "jemalloc", feature = "dhat-heap", feature = "system")))]
compile_error!(
    "pick an allocator feature: `jemalloc` (default, or `jemalloc-prof`), `dhat-heap` or `system`"
);

macro_rules! allocator_consts {
    ($name:literal) => {
        /// The allocator in this binary.
        pub const NAME: &str = $name;
        /// `share-server --version`.
        pub const VERSION_LINE: &str =
            concat!(env!("CARGO_PKG_VERSION"), " (allocator: ", $name, ")");
    };
}
#[cfg(feature = "jemalloc-prof")]
allocator_consts!("jemalloc-prof");
#[cfg(all(feature = "jemalloc", not(feature = "jemalloc-prof")))]
allocator_consts!("jemalloc");
#[cfg(all(feature = "dhat-heap", not(feature = "jemalloc")))]
allocator_consts!("dhat");
#[cfg(all(
    feature = "system",
    not(feature = "jemalloc"),
    not(feature = "dhat-heap")
))]
allocator_consts!("system");

/// What the allocator reports, in bytes (blocks are counts).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum AllocatorStats {
    /// jemalloc's own accounting, read after an epoch advance. `allocated`
    /// is what the program holds; `resident` what jemalloc keeps in RAM;
    /// `retained` is address space kept but returned to the OS.
    Jemalloc {
        allocated_bytes: u64,
        active_bytes: u64,
        resident_bytes: u64,
        mapped_bytes: u64,
        retained_bytes: u64,
        metadata_bytes: u64,
        profiling: bool,
    },
    /// dhat counts Rust allocations only (SQLite's C allocations bypass it).
    Dhat {
        current_bytes: u64,
        current_blocks: u64,
        peak_bytes: u64,
        peak_blocks: u64,
        total_bytes: u64,
        total_blocks: u64,
    },
    /// glibc `mallinfo2()`: in use and free bytes of the main and thread arenas.
    System {
        in_use_bytes: u64,
        free_bytes: u64,
        mmapped_bytes: u64,
        arena_bytes: u64,
    },
    /// The allocator could not be read.
    Unavailable { reason: String },
}

/// Reads the allocator's figures now.
pub fn stats() -> AllocatorStats {
    imp::stats()
}

/// Returns unused dirty pages to the OS; `None` when the allocator cannot.
pub fn purge() -> Option<Result<(), String>> {
    imp::purge()
}

/// The live heap as a gzipped pprof protobuf (`jemalloc-prof` builds).
pub async fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
    imp::heap_profile().await
}

#[derive(Debug, thiserror::Error)]
pub enum HeapProfileError {
    #[error(
        "heap profiles need a build with the `jemalloc-prof` feature \
         (cargo build --release -p share-server --features jemalloc-prof); this binary has {NAME}"
    )]
    NotBuiltIn,
    #[error("jemalloc profiling is not active (malloc_conf prof:true was not applied)")]
    NotActive,
    #[error("dumping the heap profile: {0}")]
    Dump(String),
}

#[cfg(feature = "jemalloc")]
mod imp {
    use super::{AllocatorStats, HeapProfileError};
    use tikv_jemalloc_ctl::{epoch, stats};

    pub fn stats() -> AllocatorStats {
        let read = || -> Result<AllocatorStats, tikv_jemalloc_ctl::Error> {
            // Statistics are cached until the epoch advances.
            epoch::advance()?;
            Ok(AllocatorStats::Jemalloc {
                allocated_bytes: stats::allocated::read()? as u64,
                active_bytes: stats::active::read()? as u64,
                resident_bytes: stats::resident::read()? as u64,
                mapped_bytes: stats::mapped::read()? as u64,
                retained_bytes: stats::retained::read()? as u64,
                metadata_bytes: stats::metadata::read()? as u64,
                profiling: cfg!(feature = "jemalloc-prof"),
            })
        };
        read().unwrap_or_else(|e| AllocatorStats::Unavailable {
            reason: e.to_string(),
        })
    }

    #[allow(unsafe_code)]
    pub fn purge() -> Option<Result<(), String>> {
        // "arena.<MALLCTL_ARENAS_ALL>.purge" takes no value: every pointer is null.
        const NAME: &[u8] = b"arena.4096.purge\0";
        // SAFETY: a NUL-terminated mallctl name and null old/new pointers, as
        // the purge control requires.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                NAME.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        Some(if rc == 0 {
            Ok(())
        } else {
            Err(format!("mallctl arena.all.purge failed: error {rc}"))
        })
    }

    #[cfg(feature = "jemalloc-prof")]
    pub async fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
        let ctl = jemalloc_pprof::PROF_CTL
            .as_ref()
            .ok_or(HeapProfileError::NotActive)?;
        let mut ctl = ctl.lock().await;
        if !ctl.activated() {
            return Err(HeapProfileError::NotActive);
        }
        ctl.dump_pprof()
            .map_err(|e| HeapProfileError::Dump(e.to_string()))
    }

    #[cfg(not(feature = "jemalloc-prof"))]
    pub async fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
        Err(HeapProfileError::NotBuiltIn)
    }
}

#[cfg(all(feature = "dhat-heap", not(feature = "jemalloc")))]
mod imp {
    use super::{AllocatorStats, HeapProfileError};

    /// Needs the profiler that `main` starts in dhat builds.
    pub fn stats() -> AllocatorStats {
        let s = dhat::HeapStats::get();
        AllocatorStats::Dhat {
            current_bytes: s.curr_bytes as u64,
            current_blocks: s.curr_blocks as u64,
            peak_bytes: s.max_bytes as u64,
            peak_blocks: s.max_blocks as u64,
            total_bytes: s.total_bytes,
            total_blocks: s.total_blocks,
        }
    }

    pub fn purge() -> Option<Result<(), String>> {
        None
    }

    pub async fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
        Err(HeapProfileError::NotBuiltIn)
    }
}

#[cfg(all(
    feature = "system",
    not(feature = "jemalloc"),
    not(feature = "dhat-heap")
))]
mod imp {
    use super::{AllocatorStats, HeapProfileError};

    #[allow(unsafe_code)]
    pub fn stats() -> AllocatorStats {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct (glibc ≥ 2.33).
        let m = unsafe { libc::mallinfo2() };
        AllocatorStats::System {
            in_use_bytes: m.uordblks as u64,
            free_bytes: m.fordblks as u64,
            mmapped_bytes: m.hblkhd as u64,
            arena_bytes: m.arena as u64,
        }
    }

    #[allow(unsafe_code)]
    pub fn purge() -> Option<Result<(), String>> {
        // SAFETY: malloc_trim is thread-safe and takes a padding size.
        unsafe { libc::malloc_trim(0) };
        Some(Ok(()))
    }

    pub async fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
        Err(HeapProfileError::NotBuiltIn)
    }
}
