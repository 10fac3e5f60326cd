//! A pool of at most `max` reader connections, opened on first need (an
//! idle server holds none: each one costs its schema and, once used, its
//! page cache). Blocking, because it is only used from `spawn_blocking`
//! threads.

use std::ops::Deref;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

use super::StorageError;

/// Opens one more reader.
type Open = Box<dyn Fn() -> Result<Connection, StorageError> + Send + Sync>;

pub struct ReaderPool {
    state: Mutex<State>,
    returned: Condvar,
    open: Open,
    max: usize,
}

struct State {
    idle: Vec<Connection>,
    /// Connections open, idle or borrowed.
    opened: usize,
}

impl ReaderPool {
    pub fn new(max: usize, open: Open) -> Self {
        ReaderPool {
            state: Mutex::new(State {
                idle: Vec::new(),
                opened: 0,
            }),
            returned: Condvar::new(),
            open,
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an idle connection, opens one if fewer than `max` are open, or
    /// waits until one is returned.
    pub fn get(&self) -> Result<PooledReader<'_>, StorageError> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(PooledReader {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.opened < self.max {
                state.opened += 1;
                drop(state); // opening reads the schema: not under the lock
                return match (self.open)() {
                    Ok(conn) => Ok(PooledReader {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().opened -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `f` on each connection not currently borrowed (the pool is
    /// locked meanwhile, so none can be taken).
    pub fn for_each_idle(&self, mut f: impl FnMut(&Connection)) {
        self.lock().idle.iter().for_each(&mut f);
    }

    /// Connections open now (idle or borrowed).
    pub fn opened(&self) -> usize {
        self.lock().opened
    }
}

/// A borrowed reader; goes back to the pool on drop.
pub struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Only `drop` takes the connection out.
        self.conn
            .as_ref()
            .expect("pooled connection present until drop")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lock().idle.push(conn);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pool(max: usize, opens: Arc<AtomicUsize>) -> ReaderPool {
        ReaderPool::new(
            max,
            Box::new(move || {
                opens.fetch_add(1, Ordering::SeqCst);
                Ok(Connection::open_in_memory().unwrap())
            }),
        )
    }

    #[test]
    fn opens_only_what_is_needed_and_reuses_it() {
        let opens = Arc::new(AtomicUsize::new(0));
        let pool = pool(4, Arc::clone(&opens));
        assert_eq!(pool.opened(), 0, "nothing opened before first use");
        drop(pool.get().unwrap());
        drop(pool.get().unwrap());
        assert_eq!(
            opens.load(Ordering::SeqCst),
            1,
            "one sequential user, one connection"
        );
        let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
        assert_eq!(pool.opened(), 2);
        drop((a, b));
    }

    #[test]
    fn waits_for_a_returned_connection_at_the_cap() {
        let pool = Arc::new(pool(1, Arc::new(AtomicUsize::new(0))));
        let held = pool.get().unwrap();
        let p2 = Arc::clone(&pool);
        let waiter = std::thread::spawn(move || {
            let c = p2.get().unwrap();
            c.query_row("SELECT 41 + 1", [], |r| r.get::<_, i64>(0))
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the only connection is still held");
        drop(held);
        assert_eq!(waiter.join().unwrap(), 42);
        assert_eq!(pool.opened(), 1);
    }

    #[test]
    fn a_failed_open_frees_its_slot() {
        let pool = ReaderPool::new(
            1,
            Box::new(|| {
                Err(StorageError::Io {
                    context: "test",
                    source: std::io::Error::other("no"),
                })
            }),
        );
        assert!(pool.get().is_err());
        assert_eq!(pool.opened(), 0);
        assert!(
            pool.get().is_err(),
            "a second try opens again instead of waiting"
        );
    }
}
