//! SQLite's own memory accounting (`sqlite3_status64`, `sqlite3_db_status`).
//! SQLite allocates through `malloc`, which jemalloc builds route to
//! jemalloc; these figures say how much of that is SQLite's.

use rusqlite::Connection;
use rusqlite::ffi;
use serde::Serialize;

/// SQLite memory, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SqliteMemory {
    /// Bytes SQLite holds from the allocator (all connections).
    pub memory_used_bytes: u64,
    pub memory_used_highwater_bytes: u64,
    /// Largest single allocation SQLite asked for.
    pub malloc_size_highwater_bytes: u64,
    /// Page cache slots from the (unconfigured, so unused) static page-cache buffer.
    pub pagecache_used: u64,
    /// Page cache bytes that overflowed to malloc (with no static buffer: all of it).
    pub pagecache_overflow_bytes: u64,
    pub pagecache_overflow_highwater_bytes: u64,
    /// Sum of `DBSTATUS_CACHE_USED` over the connections sampled.
    pub cache_used_bytes: u64,
    /// Connections whose cache was read: those not in use (a connection in
    /// use by another thread must not be touched, and is not waited for).
    pub connections_sampled: u64,
    /// Reader connections open (they are opened on demand, at most
    /// `storage::READER_CONNECTIONS`).
    pub readers_open: u64,
}

#[allow(unsafe_code)]
fn status(op: i32) -> (u64, u64) {
    let (mut current, mut highwater) = (0i64, 0i64);
    // SAFETY: sqlite3_status64 is thread-safe and writes two i64s.
    let rc = unsafe { ffi::sqlite3_status64(op, &mut current, &mut highwater, 0) };
    if rc != ffi::SQLITE_OK {
        return (0, 0);
    }
    (current.max(0) as u64, highwater.max(0) as u64)
}

/// Process-wide figures; the per-connection cache is added by [`add_connection`].
pub fn global() -> SqliteMemory {
    let (memory_used, memory_highwater) = status(ffi::SQLITE_STATUS_MEMORY_USED);
    let (_, malloc_size_highwater) = status(ffi::SQLITE_STATUS_MALLOC_SIZE);
    let (pagecache_used, _) = status(ffi::SQLITE_STATUS_PAGECACHE_USED);
    let (overflow, overflow_highwater) = status(ffi::SQLITE_STATUS_PAGECACHE_OVERFLOW);
    SqliteMemory {
        memory_used_bytes: memory_used,
        memory_used_highwater_bytes: memory_highwater,
        malloc_size_highwater_bytes: malloc_size_highwater,
        pagecache_used,
        pagecache_overflow_bytes: overflow,
        pagecache_overflow_highwater_bytes: overflow_highwater,
        ..SqliteMemory::default()
    }
}

/// Adds one connection's page cache. The caller owns `conn` exclusively.
#[allow(unsafe_code)]
pub fn add_connection(memory: &mut SqliteMemory, conn: &Connection) {
    let (mut current, mut highwater) = (0i32, 0i32);
    // SAFETY: the handle is valid while `conn` lives and no other thread uses it.
    let rc = unsafe {
        ffi::sqlite3_db_status(
            conn.handle(),
            ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut current,
            &mut highwater,
            0,
        )
    };
    if rc == ffi::SQLITE_OK {
        memory.cache_used_bytes += current.max(0) as u64;
        memory.connections_sampled += 1;
    }
}
