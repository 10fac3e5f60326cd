//! A fixed pool of reader connections. Blocking, because it is only used from
//! `spawn_blocking` threads.

use std::ops::Deref;
use std::sync::{Condvar, Mutex};

use rusqlite::Connection;

pub struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReaderPool {
    pub fn new(conns: Vec<Connection>) -> Self {
        ReaderPool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
        }
    }

    /// Takes a connection, waiting until one is returned if all are in use.
    pub fn get(&self) -> PooledReader<'_> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                return PooledReader {
                    pool: self,
                    conn: Some(conn),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `f` on each connection not currently borrowed (the pool is
    /// locked meanwhile, so none can be taken).
    pub fn for_each_idle(&self, mut f: impl FnMut(&Connection)) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().for_each(&mut f);
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
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waits_for_a_returned_connection() {
        let pool = Arc::new(ReaderPool::new(vec![Connection::open_in_memory().unwrap()]));
        let held = pool.get();
        let p2 = Arc::clone(&pool);
        let waiter = std::thread::spawn(move || {
            let c = p2.get();
            c.query_row("SELECT 41 + 1", [], |r| r.get::<_, i64>(0))
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the only connection is still held");
        drop(held);
        assert_eq!(waiter.join().unwrap(), 42);
    }
}
