//! A pool of units (bytes of the memory budget, connection slots) shared
//! fairly among clients.
//!
//! A FIFO queue lets whoever asks most often take the room that frees up: a
//! few hundred attacker connections waiting in line would take every freed
//! byte before the owner's upload got any. Here, when the pool is short,
//! waiters are served in order of what their client already holds, least
//! first (ties: first come). A client holding little, like a browser next
//! to a flood, is next in line whatever the flood's size. Each grant waits
//! for the head of that order to fit, so a large request is not starved by
//! smaller ones behind it. (Max-min fairness, as a fair-queueing router
//! shares a link.)
//!
//! The line itself may be bounded ([`FairShare::with_queue_limit`]): when it
//! is full, a newcomer whose client holds and waits for less than the
//! greediest client in line takes the place of that client's newest waiter,
//! which is turned away; otherwise the newcomer is. A flood filling the line
//! cannot lock out a client with little. Hand-written: no crate found
//! shares a semaphore by key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::Client;

/// The pool; `Arc`-shared by everything that takes from it.
pub struct FairShare {
    capacity: u64,
    /// Waiters allowed at once.
    queue_limit: usize,
    state: Mutex<State>,
}

struct State {
    free: u64,
    held: HashMap<Client, u64>,
    waiters: Vec<Waiter>,
    next_ticket: u64,
}

struct Waiter {
    client: Client,
    amount: u64,
    ticket: u64,
    grant: oneshot::Sender<Share>,
}

/// Units held by one client until dropped.
#[derive(Debug)]
pub struct Share {
    pool: Arc<FairShare>,
    client: Client,
    amount: u64,
}

impl Share {
    pub fn amount(&self) -> u64 {
        self.amount
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.give_back(self.client, self.amount);
        let undelivered = state.grant_waiters(&self.pool);
        drop(state);
        drop(undelivered);
    }
}

impl std::fmt::Debug for FairShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairShare")
            .field("capacity", &self.capacity)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// The outcome of asking for units: [`FairShare::enter`].
pub enum Entry {
    Granted(Share),
    /// In line; [`Waiting::wait`] for the grant.
    Queued(Waiting),
    /// Turned away: the line is full of clients holding no more than this
    /// one, or the amount exceeds the capacity.
    Full,
}

/// A place in line. Dropping it withdraws the wait.
pub struct Waiting {
    granted: oneshot::Receiver<Share>,
}

impl FairShare {
    /// A pool with an unbounded line.
    pub fn new(capacity: u64) -> Arc<Self> {
        Self::with_queue_limit(capacity, usize::MAX)
    }

    /// A pool whose line holds at most `queue_limit` waiters.
    pub fn with_queue_limit(capacity: u64, queue_limit: usize) -> Arc<Self> {
        Arc::new(FairShare {
            capacity,
            queue_limit: queue_limit.max(1),
            state: Mutex::new(State {
                free: capacity,
                held: HashMap::new(),
                waiters: Vec::new(),
                next_ticket: 0,
            }),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn in_use(&self) -> u64 {
        self.capacity - self.lock().free
    }

    /// Units `client` holds now.
    pub fn held_by(&self, client: Client) -> u64 {
        self.lock().held.get(&client).copied().unwrap_or(0)
    }

    /// Takes `amount` for `client` now if it fits and nobody is waiting.
    pub fn try_take(self: &Arc<Self>, client: Client, amount: u64) -> Option<Share> {
        let mut state = self.lock();
        if !state.waiters.is_empty() || amount > state.free {
            return None;
        }
        Some(state.take(self, client, amount))
    }

    /// Takes `amount` for `client` now, or gets in line for it (in fair
    /// order, making room in a full line as the module says), or is
    /// turned away. Never waits.
    pub fn enter(self: &Arc<Self>, client: Client, amount: u64) -> Entry {
        if amount > self.capacity {
            return Entry::Full;
        }
        let mut state = self.lock();
        if state.waiters.is_empty() && amount <= state.free {
            return Entry::Granted(state.take(self, client, amount));
        }
        if state.waiters.len() >= self.queue_limit && !state.displace_for(client, self.queue_limit)
        {
            return Entry::Full;
        }
        let (tx, rx) = oneshot::channel();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiters.push(Waiter {
            client,
            amount,
            ticket,
            grant: tx,
        });
        // Fewer holdings than those waiting: served at once if it fits.
        let undelivered = state.grant_waiters(self);
        drop(state);
        drop(undelivered);
        Entry::Queued(Waiting { granted: rx })
    }

    /// Takes `amount` for `client`, waiting in fair order until `deadline`;
    /// `on_wait` runs every `every` while it waits (to make room). `None`
    /// when the deadline passes, when turned away, or when `amount` exceeds
    /// the capacity.
    pub async fn take(
        self: &Arc<Self>,
        client: Client,
        amount: u64,
        deadline: Instant,
        every: std::time::Duration,
        on_wait: impl FnMut(),
    ) -> Option<Share> {
        match self.enter(client, amount) {
            Entry::Granted(share) => Some(share),
            Entry::Queued(waiting) => waiting.wait(deadline, every, on_wait).await,
            Entry::Full => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counts and a queue: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Waiting {
    /// Waits for the grant until `deadline`, running `on_wait` every
    /// `every` meanwhile. `None` past the deadline or when displaced.
    pub async fn wait(
        mut self,
        deadline: Instant,
        every: std::time::Duration,
        mut on_wait: impl FnMut(),
    ) -> Option<Share> {
        loop {
            let until = deadline.min(Instant::now() + every);
            match tokio::time::timeout_at(until, &mut self.granted).await {
                Ok(Ok(share)) => return Some(share),
                // Displaced by a client holding less (its sender dropped).
                Ok(Err(_)) => return None,
                Err(_) if Instant::now() >= deadline => {
                    // Dropping `granted` withdraws the wait; a grant that
                    // raced in is given back by its `Share`'s drop.
                    return None;
                }
                Err(_) => on_wait(),
            }
        }
    }
}

impl State {
    /// Frees a place in a line of `limit` for `client`: turns away the
    /// newest waiter of the client with the largest load (units held plus
    /// requests in line), if that is larger than `client`'s with this
    /// request. False if none is. O(waiters).
    fn displace_for(&mut self, client: Client, limit: usize) -> bool {
        self.waiters.retain(|w| !w.grant.is_closed());
        if self.waiters.len() < limit {
            return true;
        }
        let mut in_line: HashMap<Client, u64> = HashMap::new();
        for w in &self.waiters {
            *in_line.entry(w.client).or_insert(0) += 1;
        }
        let load = |c: &Client| {
            self.held.get(c).copied().unwrap_or(0) + in_line.get(c).copied().unwrap_or(0)
        };
        let newcomer = load(&client) + 1;
        let victim = self
            .waiters
            .iter()
            .enumerate()
            .map(|(i, w)| (load(&w.client), w.ticket, i))
            .max();
        match victim {
            Some((load, _, i)) if load > newcomer => {
                // Its dropped sender ends its wait with `None`.
                self.waiters.swap_remove(i);
                true
            }
            _ => false,
        }
    }

    fn take(&mut self, pool: &Arc<FairShare>, client: Client, amount: u64) -> Share {
        self.free -= amount;
        *self.held.entry(client).or_insert(0) += amount;
        Share {
            pool: Arc::clone(pool),
            client,
            amount,
        }
    }

    fn give_back(&mut self, client: Client, amount: u64) {
        self.free += amount;
        if let Some(held) = self.held.get_mut(&client) {
            *held -= amount;
            if *held == 0 {
                self.held.remove(&client);
            }
        }
    }

    /// Grants waiters in fair order while the next one fits. Returns the
    /// emptied shares of waits withdrawn meanwhile, for the caller to drop
    /// once it has let go of the lock (their drop takes it).
    #[must_use]
    fn grant_waiters(&mut self, pool: &Arc<FairShare>) -> Vec<Share> {
        let mut undelivered = Vec::new();
        loop {
            self.waiters.retain(|w| !w.grant.is_closed());
            let next = self
                .waiters
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| (self.held.get(&w.client).copied().unwrap_or(0), w.ticket))
                .map(|(i, w)| (i, w.amount));
            let Some((i, amount)) = next else {
                return undelivered;
            };
            if amount > self.free {
                return undelivered;
            }
            let waiter = self.waiters.swap_remove(i);
            let share = self.take(pool, waiter.client, amount);
            if let Err(mut share) = waiter.grant.send(share) {
                // Withdrawn since the retain: given back here, so its drop
                // (outside the lock) has nothing left to return.
                self.give_back(share.client, share.amount);
                share.amount = 0;
                undelivered.push(share);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn client(n: u8) -> Client {
        Client::of(std::net::IpAddr::from([10, 0, 0, n]))
    }

    async fn take(pool: &Arc<FairShare>, c: Client, amount: u64, secs: u64) -> Option<Share> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        pool.take(c, amount, deadline, Duration::from_millis(100), || {})
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn shares_are_counted_per_client_and_returned_on_drop() {
        let pool = FairShare::new(10);
        let a = take(&pool, client(1), 6, 1).await.unwrap();
        let b = take(&pool, client(2), 4, 1).await.unwrap();
        assert_eq!((pool.in_use(), pool.held_by(client(1))), (10, 6));
        assert!(take(&pool, client(3), 1, 1).await.is_none(), "full");
        assert!(take(&pool, client(3), 11, 60).await.is_none(), "never fits");
        drop((a, b));
        assert_eq!((pool.in_use(), pool.held_by(client(1))), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn freed_room_goes_to_the_client_holding_least_not_the_first_in_line() {
        let pool = FairShare::new(4);
        let mut flood: Vec<Share> = Vec::new();
        for _ in 0..4 {
            flood.push(take(&pool, client(1), 1, 1).await.unwrap());
        }
        // The flood queues more before the browser asks.
        let flood_waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { take(&pool, client(1), 1, 10).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let browser = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { take(&pool, client(2), 1, 10).await.map(|s| s.amount()) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        flood.pop();
        assert_eq!(browser.await.unwrap(), Some(1));
        assert_eq!(pool.held_by(client(2)), 0, "its share was dropped");
        flood.pop();
        assert!(flood_waiter.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawn_wait_takes_nothing() {
        let pool = FairShare::new(2);
        let held = take(&pool, client(1), 2, 1).await.unwrap();
        assert!(take(&pool, client(2), 1, 1).await.is_none());
        drop(held);
        assert_eq!(pool.in_use(), 0);
        assert!(pool.try_take(client(2), 2).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_request_is_not_overtaken_by_smaller_ones() {
        let pool = FairShare::new(4);
        let held = take(&pool, client(1), 3, 1).await.unwrap();
        let big = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { take(&pool, client(2), 4, 10).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(pool.try_take(client(3), 1).is_none(), "someone waits");
        drop(held);
        assert!(big.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn on_wait_runs_while_waiting() {
        let pool = FairShare::new(1);
        let _held = take(&pool, client(1), 1, 1).await.unwrap();
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(1);
        let got = pool
            .take(client(2), 1, deadline, Duration::from_millis(100), || {
                calls += 1
            })
            .await;
        assert!(got.is_none());
        assert!((9..=10).contains(&calls), "{calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_line_turns_away_the_greediest_clients_newest_waiter() {
        let pool = FairShare::with_queue_limit(2, 3);
        let held = [
            pool.try_take(client(1), 1).unwrap(),
            pool.try_take(client(1), 1).unwrap(),
        ];
        let mut flood: Vec<Waiting> = (0..3)
            .map(|_| match pool.enter(client(1), 1) {
                Entry::Queued(w) => w,
                _ => panic!("room in line"),
            })
            .collect();
        // As greedy as the flood (or more): turned away.
        assert!(matches!(pool.enter(client(1), 1), Entry::Full));
        // Holding nothing: the flood's newest waiter makes way.
        let Entry::Queued(browser) = pool.enter(client(2), 1) else {
            panic!("a client holding nothing gets in line");
        };
        let newest = flood.pop().unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(
            newest
                .wait(deadline, Duration::from_secs(1), || {})
                .await
                .is_none()
        );
        drop(held);
        let browser = browser.wait(deadline, Duration::from_secs(1), || {}).await;
        assert_eq!(browser.map(|s| s.amount()), Some(1));
        drop(flood);
    }

    #[test]
    fn an_amount_over_the_capacity_is_turned_away_at_once() {
        let pool = FairShare::new(2);
        assert!(matches!(pool.enter(client(1), 3), Entry::Full));
        assert!(matches!(pool.enter(client(1), 2), Entry::Granted(_)));
    }
}
