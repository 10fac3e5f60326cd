//! Process-wide SQLite settings, applied once before the first connection
//! opens (SQLite accepts them only before it initialises).
//!
//! - No bulk page-cache allocation. By default each connection's first page
//!   read mallocs room for 20 pages at once (`SQLITE_DEFAULT_PCACHE_INITSZ`):
//!   1.3 MiB per connection with our 64 KiB pages, held for the connection's
//!   life whether used or not. Measured at idle: 6.5 MB of the server's
//!   8.6 MiB allocated, for five connections. Without it pages are allocated
//!   one by one as the cache fills, still capped by `cache_size`.
//! - A smaller lookaside (per-connection slab for SQLite's small objects):
//!   [`LOOKASIDE_SLOT_BYTES`] × [`LOOKASIDE_SLOTS`] instead of 1200 × 40.

use std::sync::OnceLock;

use rusqlite::ffi;

/// Lookaside slot size, bytes (SQLite's default is 1200).
pub const LOOKASIDE_SLOT_BYTES: i32 = 1200;
/// Lookaside slots per connection (SQLite's default is 40, ~48 KB).
pub const LOOKASIDE_SLOTS: i32 = 40;

/// Applies the settings once per process. Returns SQLite's result code of
/// the first failing call (`SQLITE_MISUSE` if something opened a connection
/// before us; the settings then stay SQLite's defaults).
pub fn apply_once() -> Result<(), i32> {
    static APPLIED: OnceLock<Result<(), i32>> = OnceLock::new();
    *APPLIED.get_or_init(apply)
}

#[allow(unsafe_code)]
fn apply() -> Result<(), i32> {
    // SAFETY: sqlite3_config is called with the argument types each option
    // documents (a null buffer and two ints; two ints), before any
    // connection of ours exists; SQLite itself refuses (SQLITE_MISUSE)
    // once it has initialised, without side effects.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    // SAFETY: as above; two ints.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_LOOKASIDE,
            LOOKASIDE_SLOT_BYTES as std::ffi::c_int,
            LOOKASIDE_SLOTS as std::ffi::c_int,
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    Ok(())
}
