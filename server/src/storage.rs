//! SQLite storage: one writer connection and a small pool of readers over one
//! database file in WAL mode. All SQL lives under this module; every function
//! here blocks and is called from `spawn_blocking` (see [`Db::run`]).
//!
//! Memory bounds (the point of the project): each connection's page cache is
//! capped by `cache_size` and filled page by page (no bulk allocation, see
//! [`sqlite_init`]), readers are opened only when needed and idle caches are
//! handed back ([`Store::release_idle_memory`]), memory-mapped I/O is off so
//! file pages are never charged to us as RSS, temp tables go to files, and the
//! WAL is truncated after checkpoints by `journal_size_limit`.

pub mod chunks;
pub mod downloads;
pub mod entries;
pub mod gc;
pub mod guest_links;
pub mod migrations;
mod pool;
pub mod reserve;
pub mod sessions;
pub mod settings;
pub mod sqlite_init;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, FileControl, OpenFlags};

use pool::ReaderPool;
use reserve::DiskReserve;

/// Most readers open at once: they serve downloads and metadata reads
/// concurrently (WAL readers never block the writer). Opened on demand, so an
/// idle server has none; four covers a 2-core VM, more only adds page caches.
pub const READER_CONNECTIONS: usize = 4;
/// SQLite page size for new databases (existing ones keep theirs). A
/// 320 KiB chunk spans 5 overflow pages of 64 KiB instead of 80 of 4 KiB:
/// SQLite reads and writes a page per syscall, so a chunk read drops from
/// 80 `pread`s to 5. Memory is unchanged: the cache sizes are in KiB.
pub const PAGE_SIZE_BYTES: i64 = 65536;
/// Checkpoint once the WAL holds this much. Each checkpoint fsyncs the WAL
/// and the database under the writer's lock, so every upload waits for it: at
/// 4 MiB, 3 × 100 MB of uploads made 324 fsyncs (1.7 s of the writer's time,
/// `strace -c`), and 3 × 618 MB took 1.5× as long as dufs; at 32 MiB they
/// take about as long (docs/benchmarks.md). The cost is page cache, not heap:
/// up to 32 MiB of WAL pages, written back by the kernel, reclaimable once
/// clean; the WAL index (`-shm`) is 32 KiB.
pub const WAL_AUTOCHECKPOINT_BYTES: i64 = 32 << 20;
/// Page cache of the writer, in KiB (`PRAGMA cache_size=-N`). A transaction
/// of `CHUNKS_PER_TRANSACTION` (2) 320 KiB chunks dirties 10 overflow pages
/// and ~3 b-tree pages of 64 KiB (832 KiB), so 1 MiB holds it without
/// spilling. 2 MiB measured 0.7 MiB more peak RSS under 3 parallel uploads.
pub const WRITER_CACHE_KIB: i64 = 1024;
/// Page cache per reader, in KiB. A download touches each chunk's pages once,
/// so caching more than one chunk buys nothing.
pub const READER_CACHE_KIB: i64 = 512;
/// Writers wait this long for a lock before failing. Parallel uploads take
/// turns on short per-chunk transactions; 30 s absorbs a checkpoint or a GC batch.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The WAL file is truncated back to this size after a checkpoint, so one
/// burst (a VACUUM, a big delete) does not leave a huge WAL on disk.
pub const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Storage failures. `NotFound` and `DiskFull` are expected and mapped to
/// 404 and 507; the rest are bugs or broken disks.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("the disk holding the database is full ({context}): {source}")]
    DiskFull {
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("opening database {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "database schema version {found} is newer than this server knows ({known}); upgrade share-server"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("a storage task panicked")]
    TaskPanicked,
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    /// A guest upload the link does not allow (checked with the row's insert).
    #[error(transparent)]
    GuestLinkRefused(#[from] crate::guest_links::Refusal),
}

impl StorageError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }
}

/// Adds what we were doing to a rusqlite error, and sorts out a full disk.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StorageError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StorageError> {
        self.map_err(|source| match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StorageError::DiskFull { context, source },
            _ => StorageError::Sqlite { context, source },
        })
    }
}

/// The database: a writer behind a mutex (SQLite allows one writer at a time
/// anyway; the mutex makes them queue in-process instead of spinning on
/// SQLITE_BUSY) and a pool of readers.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: ReaderPool,
    reserve: DiskReserve,
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, opens the
    /// readers and fills a disk reserve of `reserve_bytes` beside the database.
    pub fn open(path: &Path, reserve_bytes: u64) -> Result<Store, StorageError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StorageError::Open {
            path: path.to_owned(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let reserve = DiskReserve::new(sidecar(path, "reserve"), reserve_bytes);
        // On a completely full disk SQLite cannot even create the WAL index
        // (`-shm`) it needs to open the database: free the reserve and retry.
        if let Err(rc) = sqlite_init::apply_once() {
            tracing::warn!(
                rc,
                "SQLite was initialised before the store: its memory settings are SQLite's defaults"
            );
        }
        let writer = match open_writer(path) {
            Err(e) if reserve.release() => {
                tracing::warn!(error = %e, "opening the database failed; retrying with the disk reserve freed");
                open_writer(path)?
            }
            opened => opened?,
        };
        let reader_path = path.to_owned();
        let store = Store {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: ReaderPool::new(
                READER_CONNECTIONS,
                Box::new(move || open_reader(&reader_path)),
            ),
            reserve,
        };
        // On a full disk the server still starts, without its reserve.
        store.refill_reserve();
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Recreates the disk reserve if it was used and space allows.
    pub fn refill_reserve(&self) {
        if let Err(e) = self.reserve.fill() {
            tracing::warn!(error = %e, "cannot create the disk reserve (disk full?)");
        }
    }

    /// Runs `f`; if the disk is full and the reserve was still there, frees
    /// it and runs `f` once more. For clean-up work that must not fail on a
    /// full disk.
    pub fn with_reserve<T>(
        &self,
        f: impl Fn() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match f() {
            Err(e) if e.is_disk_full() && self.reserve.release() => f(),
            other => other,
        }
    }

    /// The writer connection. Hold it only for one short transaction.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the writer leaves SQLite itself consistent
        // (an open transaction is rolled back on the next BEGIN failure), so
        // a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reader connection from the pool: an idle one, a newly opened one
    /// while fewer than [`READER_CONNECTIONS`] are open, or else the first
    /// one returned.
    pub(crate) fn reader(&self) -> Result<pool::PooledReader<'_>, StorageError> {
        self.readers.get()
    }

    /// Reader connections open now.
    pub fn readers_open(&self) -> usize {
        self.readers.opened()
    }

    /// Hands the page caches of the connections not in use back to the
    /// allocator (`sqlite3_db_release_memory`); a busy writer is skipped. The
    /// next query re-reads what it needs from the OS page cache. Called every
    /// [`crate::idle_trim::INTERVAL`], so memory an upload or a
    /// download filled goes back soon after it ends.
    pub fn release_idle_memory(&self) {
        let release = |conn: &Connection| {
            if let Err(e) = conn.release_memory() {
                tracing::debug!(error = %e, "releasing a connection's cache");
            }
        };
        if let Ok(writer) = self.writer.try_lock() {
            release(&writer);
        }
        self.readers.for_each_idle(release);
    }

    /// SQLite's memory figures, including the page cache of the connections
    /// not in use. Never waits for the writer: stats must not queue behind
    /// uploads (a busy writer is left out of `connections_sampled`).
    pub fn memory(&self) -> status::SqliteMemory {
        let mut memory = status::global();
        if let Ok(writer) = self.writer.try_lock() {
            status::add_connection(&mut memory, &writer);
        }
        self.readers
            .for_each_idle(|conn| status::add_connection(&mut memory, conn));
        memory.readers_open = self.readers.opened() as u64;
        memory
    }

    /// Sizes of the database, WAL and shared-memory files, in bytes (0 if absent).
    pub fn file_sizes(&self) -> FileSizes {
        // SQLite names them `<db>-wal` and `<db>-shm`.
        let size = |suffix: &str| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        FileSizes {
            db_bytes: size(""),
            wal_bytes: size("-wal"),
            shm_bytes: size("-shm"),
        }
    }

    /// Checkpoints the WAL into the database and truncates it; called on shutdown
    /// so the next start opens a small WAL.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.writer()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("checkpointing the WAL")
    }

    /// [`Store::checkpoint`] without waiting for a lock, for shutdown (our
    /// readers are idle by then). A reader outside the server, as Litestream
    /// always is, would keep the WAL from being truncated for the whole
    /// busy timeout; the WAL is then left as it is (docs/server.md, "Who
    /// checkpoints").
    pub fn checkpoint_without_waiting(&self) -> Result<(), StorageError> {
        let writer = self.writer();
        writer
            .busy_timeout(Duration::ZERO)
            .ctx("checkpointing the WAL")?;
        let done = writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("checkpointing the WAL");
        writer
            .busy_timeout(BUSY_TIMEOUT)
            .ctx("checkpointing the WAL")?;
        done
    }
}

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError::Open {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

/// The writer, after migrating the database.
fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    let mut writer = Connection::open(path).map_err(open_error(path))?;
    configure(&writer, WRITER_CACHE_KIB).map_err(open_error(path))?;
    migrations::apply(&mut writer)?;
    Ok(writer)
}

/// One more reader (the writer has migrated the database already).
fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(path))?;
    configure(&conn, READER_CACHE_KIB).map_err(open_error(path))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_error(path))?;
    Ok(conn)
}

/// `<db file name>.<suffix>` beside the database.
fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    db.with_file_name(name)
}

/// Per-connection settings; see the constants above for why each value.
fn configure(conn: &Connection, cache_kib: i64) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Keep `-wal` and `-shm` when the last connection closes (the WAL is
    // truncated to 0 bytes instead of deleted): a restart on a full disk then
    // finds its WAL index already allocated instead of failing to create it
    // (SQLITE_IOERR_SHMSIZE), and can serve downloads.
    conn.file_control(Some(rusqlite::MAIN_DB), FileControl::PersistWal(&mut 1))?;
    // Takes effect only on a new database, and only before WAL mode is on.
    conn.pragma_update(None, "page_size", PAGE_SIZE_BYTES)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode never corrupts; completed uploads are made durable
    // explicitly (see `entries::finish_upload`).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // After the page size is known: SQLite turns KiB into a page count when
    // the pragma runs (set before the header is read, 2 MiB would become
    // 512 pages of 4 KiB, i.e. 32 MiB of our 64 KiB pages).
    #[cfg(feature = "regressions")]
    let cache_kib = crate::regressions::cache_kib(cache_kib);
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)?;
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        (WAL_AUTOCHECKPOINT_BYTES / page_size).max(1),
    )?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    Ok(())
}

/// On-disk sizes of the database files.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FileSizes {
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub shm_bytes: u64,
}

/// A cheap, cloneable handle that runs storage calls off the async workers.
#[derive(Clone)]
pub struct Db(Arc<Store>);

impl Db {
    pub fn new(store: Store) -> Self {
        Db(Arc::new(store))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.0
    }

    /// Runs `f` on the blocking pool. SQLite calls block, so they never run on
    /// tokio's async worker threads.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| StorageError::TaskPanicked)?
    }
}

/// Milliseconds since the Unix epoch, our time unit in the database.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
