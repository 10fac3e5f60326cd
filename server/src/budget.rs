//! One memory budget for every buffer that holds request data.
//!
//! Per-request bounds (`upload.rs`, `download/body.rs`, ...) say what one
//! request may hold; this says what all of them may hold together. Before a
//! buffer is filled, its bytes are reserved here; the [`Reservation`] is
//! dropped when the buffer is. When the budget is spent a request waits up
//! to [`MemoryBudget::wait`] for room, then gives up with
//! [`BudgetExhausted`] (a `503` with `Retry-After`). It never allocates past
//! the budget. Room is shared per client (`fair_share.rs`): freed bytes go
//! to the waiting client that holds least, so a flood from a few addresses
//! cannot starve the owner's upload.
//!
//! What draws from it: upload chunk buffers and the chunks queued for the
//! writer, the multipart parser's buffers, the bodies of the small JSON and
//! form endpoints, downloads' read-ahead. What does not (fixed costs, in
//! docs/server.md's memory table): per-connection hyper buffers, SQLite's
//! caches, the binary, the allocator's own overhead.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::client::Client;
use crate::fair_share::{FairShare, Share};

/// The default budget, chosen for the story's 256 MB VM: with the fixed
/// costs (~24 MiB of binary and allocator, 4 MiB of SQLite caches, ~20 MiB
/// for 256 connections' buffers) the worst case is ~96 MiB, three eighths
/// of the machine, leaving the rest to the kernel and the page cache. It
/// holds 30 uploads at their full 1.6 MiB queue at once.
pub const DEFAULT_BUDGET_BYTES: u64 = 48 << 20;
/// The smallest budget accepted: room for a few chunks of the largest size.
pub const MIN_BUDGET_BYTES: u64 = 1 << 20;
/// How long a request waits for room before it is refused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting reservation asks for relief and looks again.
const RELIEF_INTERVAL: Duration = Duration::from_millis(100);

/// What can free room when the budget is full: the accept loop's table,
/// which cuts the request stalled the longest on its client (it holds
/// budget while sending nothing). Returns whether it cut one.
pub trait Relief: Send + Sync {
    fn relieve(&self) -> bool;
}

/// Why a reservation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server is at its memory budget ({} MiB held by other requests); try again shortly",
    limit_bytes >> 20
)]
pub struct BudgetExhausted {
    pub limit_bytes: u64,
    /// Suggested wait before retrying.
    pub retry_after: Duration,
}

/// The shared budget; cheap to clone.
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    pool: Arc<FairShare>,
    wait: Duration,
    peak: AtomicU64,
    waits: AtomicU64,
    refusals: AtomicU64,
    relief: OnceLock<Arc<dyn Relief>>,
    reliefs: AtomicU64,
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    share: Share,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.share.amount()
    }
}

/// The budget at one instant, for `/debug/stats`, `/metrics` and the system page.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BudgetStats {
    pub limit_bytes: u64,
    pub in_use_bytes: u64,
    pub peak_in_use_bytes: u64,
    /// Reservations that had to wait for room.
    pub waits_total: u64,
    /// Reservations refused after waiting (each a 503, or a cut upload).
    pub refusals_total: u64,
    /// Stalled requests cut to make room.
    pub stalled_cut_total: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; requests wait up to `wait` for room.
    pub fn new(limit: u64, wait: Duration) -> Self {
        MemoryBudget(Arc::new(Inner {
            pool: FairShare::new(limit),
            wait,
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            relief: OnceLock::new(),
            reliefs: AtomicU64::new(0),
        }))
    }

    /// Sets what may free room when the budget is full (once).
    pub fn set_relief(&self, relief: Arc<dyn Relief>) {
        let _ = self.0.relief.set(relief);
    }

    pub fn limit(&self) -> u64 {
        self.0.pool.capacity()
    }

    pub fn wait(&self) -> Duration {
        self.0.wait
    }

    /// Reserves `bytes` for `client`, waiting up to the budget's wait time
    /// for room and asking for relief meanwhile.
    pub async fn reserve(
        &self,
        bytes: u64,
        client: Client,
    ) -> Result<Reservation, BudgetExhausted> {
        let inner = &self.0;
        if bytes > self.limit() {
            // Could never be granted: refuse now rather than after the wait.
            return Err(self.refuse());
        }
        let share = match inner.pool.try_take(client, bytes) {
            Some(share) => share,
            None => {
                inner.waits.fetch_add(1, Relaxed);
                let deadline = tokio::time::Instant::now() + inner.wait;
                let relieve = || {
                    if let Some(relief) = inner.relief.get()
                        && relief.relieve()
                    {
                        inner.reliefs.fetch_add(1, Relaxed);
                    }
                };
                relieve();
                inner
                    .pool
                    .take(client, bytes, deadline, RELIEF_INTERVAL, relieve)
                    .await
                    .ok_or_else(|| self.refuse())?
            }
        };
        inner.peak.fetch_max(self.in_use(), Relaxed);
        Ok(Reservation { share })
    }

    fn refuse(&self) -> BudgetExhausted {
        self.0.refusals.fetch_add(1, Relaxed);
        BudgetExhausted {
            limit_bytes: self.limit(),
            retry_after: self.0.wait.max(Duration::from_secs(1)),
        }
    }

    fn in_use(&self) -> u64 {
        self.0.pool.in_use()
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            limit_bytes: self.limit(),
            in_use_bytes: self.in_use(),
            peak_in_use_bytes: self.0.peak.load(Relaxed),
            waits_total: self.0.waits.load(Relaxed),
            refusals_total: self.0.refusals.load(Relaxed),
            stalled_cut_total: self.0.reliefs.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::of(std::net::IpAddr::from([127, 0, 0, 1]))
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_are_returned_on_drop() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(1));
        let a = budget.reserve(600, client()).await.unwrap();
        assert_eq!(a.bytes(), 600);
        assert_eq!(budget.stats().in_use_bytes, 600);
        drop(a);
        assert_eq!(budget.stats().in_use_bytes, 0);
        assert_eq!(budget.stats().peak_in_use_bytes, 600);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_waits_then_refuses() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(5));
        let held = budget.reserve(900, client()).await.unwrap();
        let err = budget.reserve(200, client()).await.unwrap_err();
        assert_eq!(err.limit_bytes, 1000);
        assert_eq!(err.retry_after, Duration::from_secs(5));
        let s = budget.stats();
        assert_eq!(
            (s.waits_total, s.refusals_total, s.in_use_bytes),
            (1, 1, 900)
        );
        // Room made while waiting is taken.
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(200, client()).await.map(|r| r.bytes()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_asks_for_relief_while_it_waits() {
        struct Cut(std::sync::Mutex<Option<Reservation>>);
        impl Relief for Cut {
            fn relieve(&self) -> bool {
                self.0.lock().unwrap().take().is_some()
            }
        }
        let budget = MemoryBudget::new(1000, Duration::from_secs(5));
        let stalled = budget.reserve(1000, client()).await.unwrap();
        budget.set_relief(Arc::new(Cut(std::sync::Mutex::new(Some(stalled)))));
        let started = tokio::time::Instant::now();
        assert_eq!(budget.reserve(500, client()).await.unwrap().bytes(), 500);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(budget.stats().stalled_cut_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_the_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        assert!(budget.reserve(1001, client()).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
