//! Who holds the connection slots: a count per client address, so one client
//! cannot take them all, and which connections are idle, so those are the
//! first closed when the slots run out.
//!
//! A connection is *busy* from the moment hyper hands us a request until its
//! response body is done; otherwise it is idle (a fresh connection that has
//! sent no whole request head yet, or a keep-alive one between requests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::min_rate::Stall;
use crate::budget::Relief;
use crate::client::{Client, client_key};

/// A request stalled on its client for at least this long may be cut when
/// the connection slots or the memory budget run out and nothing idle is
/// left to close. Long enough for a phone's hiccup; attackers that stall
/// to hold memory stall for far longer.
pub const MIN_STALL_TO_CUT: Duration = Duration::from_secs(5);
/// A connection idle for less than this is not closed to make room: a
/// client that just connected is about to send.
pub const MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);
/// The same for a keep-alive connection that has been answered: its client
/// may already be sending its next request, which a close would reset (the
/// HTTP/1 keep-alive race), so sockets that never sent a request go first.
pub const MIN_KEEP_ALIVE_IDLE_TO_EVICT: Duration = Duration::from_secs(5);
/// For a connection waiting while another client holds more connections than
/// its own (by two or more), that client's sockets that never sent a request
/// go after this long, and its requests stalled on their bodies after
/// [`GREEDY_MIN_STALL_TO_CUT`]: a newcomer next to a flood gets a slot within
/// about a second, not after the flood's stalls reach [`MIN_STALL_TO_CUT`].
pub const GREEDY_MIN_IDLE_TO_EVICT: Duration = Duration::from_millis(250);
/// See [`GREEDY_MIN_IDLE_TO_EVICT`].
pub const GREEDY_MIN_STALL_TO_CUT: Duration = Duration::from_secs(1);

/// Counts per client address, each entry removed when its count drops to
/// zero: the map never holds more addresses than there are slots in use.
pub struct PerClient {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot of one client, given back on drop.
pub struct ClientSlot {
    owner: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerClient {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `ip`, or `None` when its address already holds `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Plain counts: still right after a panic elsewhere.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// What one connection is doing, shared with its service.
pub struct Activity {
    /// Whose connection it is.
    client: Client,
    requests: AtomicUsize,
    /// Whether a request has been answered on it (a keep-alive client).
    answered: AtomicBool,
    /// When it last became idle, in µs of the table's clock.
    idle_since: AtomicU64,
    /// Whether the request in flight waits on its client's body bytes.
    pub stall: Arc<Stall>,
}

/// How a connection may be reclaimed for a client holding less, least
/// harm first (the larger the better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reclaim {
    /// A request stalled on its client's body: cutting it loses the upload.
    Stalled,
    /// A keep-alive connection between requests.
    KeepAlive,
    /// A socket that never sent a request: nothing is lost.
    Silent,
}

impl Activity {
    /// Whether and how this connection may go to make room, and for how long
    /// (µs) it has been idle or stalled: a socket that never sent a request
    /// after `min_silent`, a keep-alive one after
    /// [`MIN_KEEP_ALIVE_IDLE_TO_EVICT`], a request stalled on its body after
    /// `min_stall` (never with `None`).
    fn reclaimable(
        &self,
        now: u64,
        min_silent: Duration,
        min_stall: Option<Duration>,
    ) -> Option<(Reclaim, u64)> {
        if self.requests.load(Relaxed) > 0 {
            let stalled = self.stall.stalled_for()?;
            return (stalled >= min_stall?)
                .then_some((Reclaim::Stalled, stalled.as_micros() as u64));
        }
        let idle_us = now.saturating_sub(self.idle_since.load(Relaxed));
        let (kind, min) = if self.answered.load(Relaxed) {
            (Reclaim::KeepAlive, MIN_KEEP_ALIVE_IDLE_TO_EVICT)
        } else {
            (Reclaim::Silent, min_silent)
        };
        (Duration::from_micros(idle_us) >= min).then_some((kind, idle_us))
    }
}

/// Closes the chosen connection, if any; whether one was chosen.
fn close(chosen: Option<&CancellationToken>) -> bool {
    chosen.inspect(|token| token.cancel()).is_some()
}

/// Marks a connection busy until dropped (when the response body is done).
pub struct Busy {
    activity: Arc<Activity>,
    table: Arc<Connections>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.idle_since.store(self.table.tick(), Relaxed);
        self.activity.answered.store(true, Relaxed);
        self.activity.requests.fetch_sub(1, Relaxed);
    }
}

/// The open connections: their activity and how to close them.
pub struct Connections {
    epoch: std::time::Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, (Arc<Activity>, CancellationToken)>>,
}

/// A connection's entry, removed on drop.
pub struct Registered {
    table: Arc<Connections>,
    id: u64,
    pub activity: Arc<Activity>,
    /// Fires when the connection is chosen to make room.
    pub evicted: CancellationToken,
}

impl Connections {
    pub fn new() -> Arc<Self> {
        Arc::new(Connections {
            epoch: std::time::Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn register(self: &Arc<Self>, client: Client) -> Registered {
        let id = self.next_id.fetch_add(1, Relaxed);
        let activity = Arc::new(Activity {
            client,
            requests: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.tick()),
            stall: Arc::default(),
        });
        let evicted = CancellationToken::new();
        self.lock()
            .insert(id, (Arc::clone(&activity), evicted.clone()));
        Registered {
            table: Arc::clone(self),
            id,
            activity,
            evicted,
        }
    }

    /// Marks a request as started on a connection.
    pub fn busy(self: &Arc<Self>, activity: &Arc<Activity>) -> Busy {
        activity.requests.fetch_add(1, Relaxed);
        Busy {
            activity: Arc::clone(activity),
            table: Arc::clone(self),
        }
    }

    fn tick(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Cuts the busy connection whose request body has waited on its client
    /// the longest, if that is at least `min`; false if none has. Its
    /// upload is then removed like any aborted one.
    pub fn cut_stalled(&self, min: Duration) -> bool {
        let open = self.lock();
        let stalest = open
            .values()
            .filter(|(a, token)| a.requests.load(Relaxed) > 0 && !token.is_cancelled())
            .filter_map(|(a, token)| Some((a.stall.stalled_for()?, token)))
            .filter(|(stalled, _)| *stalled >= min)
            .max_by_key(|(stalled, _)| *stalled);
        close(stalest.map(|(_, token)| token))
    }

    /// Makes room for a connection of `waiting` that waits for a slot:
    /// first from a client holding more connections than `waiting`'s
    /// ([`GREEDY_MIN_IDLE_TO_EVICT`]), else closes the connection idle the
    /// longest, else cuts the request stalled longest (≥
    /// [`MIN_STALL_TO_CUT`]). Each waiting connection asks every 100 ms, so
    /// as many go as there are waiting.
    pub fn make_room(&self, waiting: Client) {
        if self.reclaim_from_greedier(waiting) {
            return;
        }
        if !self.evict_idle() && self.cut_stalled(MIN_STALL_TO_CUT) {
            tracing::info!("all connections busy: cut the request stalled longest on its client");
        }
    }

    /// Closes a connection of a client that holds at least two more than
    /// `waiting`: a socket that never sent a request (idle ≥
    /// [`GREEDY_MIN_IDLE_TO_EVICT`]), else an answered keep-alive one (idle
    /// ≥ [`MIN_KEEP_ALIVE_IDLE_TO_EVICT`], as always), else a request stalled
    /// on its body (≥ [`GREEDY_MIN_STALL_TO_CUT`]); the greediest client's
    /// first. False if none qualifies.
    pub fn reclaim_from_greedier(&self, waiting: Client) -> bool {
        let open = self.lock();
        let mut held: HashMap<Client, usize> = HashMap::new();
        for (a, _) in open.values() {
            *held.entry(a.client).or_insert(0) += 1;
        }
        let own = held.get(&waiting).copied().unwrap_or(0);
        let now = self.tick();
        let victim = open
            .values()
            .filter(|(a, token)| !token.is_cancelled() && held[&a.client] > own + 1)
            .filter_map(|(a, token)| {
                let reclaim =
                    a.reclaimable(now, GREEDY_MIN_IDLE_TO_EVICT, Some(GREEDY_MIN_STALL_TO_CUT))?;
                Some((reclaim, held[&a.client], token))
            })
            .max_by_key(|((kind, age), count, _)| (*kind, *count, *age));
        close(victim.map(|(_, _, token)| token))
    }

    /// Closes an idle connection: one that never sent a request first, the
    /// longest idle first; false if none is idle long enough.
    pub fn evict_idle(&self) -> bool {
        let open = self.lock();
        let now = self.tick();
        // A fresh connection gets a moment to send its request: otherwise a
        // flood of reconnecting sockets evicts newcomers.
        let oldest = open
            .values()
            .filter(|(_, token)| !token.is_cancelled())
            .filter_map(|(a, token)| Some((a.reclaimable(now, MIN_IDLE_TO_EVICT, None)?, token)))
            .max_by_key(|(reclaim, _)| *reclaim);
        close(oldest.map(|(_, token)| token))
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<Activity>, CancellationToken)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The memory budget's relief when full: the longest-stalled request goes.
impl Relief for Connections {
    fn relieve(&self) -> bool {
        self.cut_stalled(MIN_STALL_TO_CUT)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_max() {
        let per = PerClient::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = per.acquire(ip).unwrap();
        let _b = per.acquire(ip).unwrap();
        assert!(per.acquire(ip).is_none());
        assert!(per.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert!(per.acquire(ip).is_some());
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let per = PerClient::new(1);
        let _a = per.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(per.acquire("2001:db8::ffff:2".parse().unwrap()).is_none());
        assert!(per.acquire("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _v4 = per.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(per.acquire("::ffff:192.0.2.1".parse().unwrap()).is_none());
    }

    fn client(n: u8) -> Client {
        Client::of(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn a_client_holding_two_more_loses_a_silent_socket_or_a_stalled_request_first() {
        let table = Connections::new();
        let (greedy, modest, newcomer) = (client(1), client(2), client(3));
        let silent: Vec<_> = (0..2).map(|_| table.register(greedy)).collect();
        let stalled = table.register(greedy);
        let _request = table.busy(&stalled.activity);
        let modest_one = table.register(modest);
        assert!(
            !table.reclaim_from_greedier(newcomer),
            "every socket connected just now"
        );
        std::thread::sleep(GREEDY_MIN_IDLE_TO_EVICT);
        assert!(
            !table.reclaim_from_greedier(greedy),
            "nobody holds more than it"
        );
        assert!(table.reclaim_from_greedier(newcomer));
        assert_eq!(
            silent.iter().filter(|s| s.evicted.is_cancelled()).count(),
            1
        );
        assert!(table.reclaim_from_greedier(newcomer));
        assert!(silent.iter().all(|s| s.evicted.is_cancelled()));
        assert!(
            !table.reclaim_from_greedier(newcomer),
            "the busy request is not stalled, and one connection is no more than the newcomer's + 1"
        );
        stalled
            .activity
            .stall
            .set(Some(tokio::time::Instant::now() - GREEDY_MIN_STALL_TO_CUT));
        drop(silent);
        assert!(
            !table.reclaim_from_greedier(newcomer),
            "one connection left each: nobody holds two more"
        );
        let _more: Vec<_> = (0..2).map(|_| table.register(greedy)).collect();
        assert!(table.reclaim_from_greedier(newcomer));
        assert!(stalled.evicted.is_cancelled() && !modest_one.evicted.is_cancelled());
    }

    #[test]
    fn sockets_that_never_sent_a_request_go_before_keep_alive_ones() {
        let table = Connections::new();
        let keep_alive = table.register(client(1));
        drop(table.busy(&keep_alive.activity));
        let silent = table.register(client(1));
        std::thread::sleep(MIN_KEEP_ALIVE_IDLE_TO_EVICT);
        assert!(table.evict_idle());
        assert!(silent.evicted.is_cancelled() && !keep_alive.evicted.is_cancelled());
        assert!(table.evict_idle());
        assert!(keep_alive.evicted.is_cancelled());
    }

    #[test]
    fn the_longest_idle_connection_is_evicted_never_a_busy_one() {
        let table = Connections::new();
        let first = table.register(client(1));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = table.register(client(1));
        let busy = table.busy(&first.activity);
        assert!(!table.evict_idle(), "both connected just now");
        std::thread::sleep(MIN_IDLE_TO_EVICT);
        assert!(table.evict_idle());
        assert!(second.evicted.is_cancelled() && !first.evicted.is_cancelled());
        assert!(!table.evict_idle(), "the only other one is busy");
        drop(busy);
        std::thread::sleep(MIN_IDLE_TO_EVICT);
        assert!(
            !table.evict_idle(),
            "an answered keep-alive connection may be sending its next request"
        );
        std::thread::sleep(MIN_KEEP_ALIVE_IDLE_TO_EVICT - MIN_IDLE_TO_EVICT);
        assert!(table.evict_idle());
        assert!(first.evicted.is_cancelled());
        drop((first, second));
        assert!(table.is_empty());
    }
}
