//! One memory budget for every buffer that holds request data.
//!
//! Per-request bounds (`upload.rs`, `download/body.rs`, ...) say what one
//! request may hold; this says what all of them may hold together. Before a
//! buffer is filled, its bytes are reserved here; the [`Reservation`] is
//! dropped when the buffer is. When the budget is spent a request waits up
//! to [`MemoryBudget::wait`] for room (FIFO: tokio's semaphore is fair),
//! then gives up with [`BudgetExhausted`] (a `503` with `Retry-After`). It
//! never allocates past the budget.
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    permits: Arc<Semaphore>,
    limit: u64,
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
    permit: OwnedSemaphorePermit,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.permit.num_permits() as u64
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
        // One permit per byte; tokio's maximum is far above any real budget.
        let limit = limit.min(Semaphore::MAX_PERMITS as u64);
        MemoryBudget(Arc::new(Inner {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
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
        self.0.limit
    }

    pub fn wait(&self) -> Duration {
        self.0.wait
    }

    /// Reserves `bytes`, waiting up to the budget's wait time for room.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, BudgetExhausted> {
        let inner = &self.0;
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        if u64::from(n) > inner.limit {
            // Could never be granted: refuse now rather than after the wait.
            return Err(self.refuse());
        }
        let permits = Arc::clone(&inner.permits);
        let permit = match permits.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                inner.waits.fetch_add(1, Relaxed);
                self.wait_for(n, tokio::time::Instant::now() + inner.wait)
                    .await
                    .ok_or_else(|| self.refuse())?
            }
        };
        inner.peak.fetch_max(self.in_use(), Relaxed);
        Ok(Reservation { permit })
    }

    /// Waits for `n` permits until `deadline`, asking for relief meanwhile.
    async fn wait_for(
        &self,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let inner = &self.0;
        loop {
            if let Some(relief) = inner.relief.get()
                && relief.relieve()
            {
                inner.reliefs.fetch_add(1, Relaxed);
            }
            let until = deadline.min(tokio::time::Instant::now() + RELIEF_INTERVAL);
            let acquire = Arc::clone(&inner.permits).acquire_many_owned(n);
            if let Ok(Ok(p)) = tokio::time::timeout_at(until, acquire).await {
                return Some(p);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn refuse(&self) -> BudgetExhausted {
        self.0.refusals.fetch_add(1, Relaxed);
        BudgetExhausted {
            limit_bytes: self.0.limit,
            retry_after: self.0.wait.max(Duration::from_secs(1)),
        }
    }

    fn in_use(&self) -> u64 {
        self.0.limit - self.0.permits.available_permits() as u64
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            limit_bytes: self.0.limit,
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

    #[tokio::test(start_paused = true)]
    async fn reservations_are_returned_on_drop() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(1));
        let a = budget.reserve(600).await.unwrap();
        assert_eq!(a.bytes(), 600);
        assert_eq!(budget.stats().in_use_bytes, 600);
        drop(a);
        assert_eq!(budget.stats().in_use_bytes, 0);
        assert_eq!(budget.stats().peak_in_use_bytes, 600);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_waits_then_refuses() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(5));
        let held = budget.reserve(900).await.unwrap();
        let err = budget.reserve(200).await.unwrap_err();
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
            async move { budget.reserve(200).await.map(|r| r.bytes()) }
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
        let stalled = budget.reserve(1000).await.unwrap();
        budget.set_relief(Arc::new(Cut(std::sync::Mutex::new(Some(stalled)))));
        let started = tokio::time::Instant::now();
        assert_eq!(budget.reserve(500).await.unwrap().bytes(), 500);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(budget.stats().stalled_cut_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_the_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(1000, Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        assert!(budget.reserve(1001).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
