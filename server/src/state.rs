//! What every handler can reach.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Sessions;
use crate::counters::Counters;
use crate::download_log::DownloadRecorder;
use crate::live_uploads::LiveUploads;
use crate::storage::Db;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub sessions: Arc<Sessions>,
    /// What all requests' buffers may hold together.
    pub budget: crate::budget::MemoryBudget,
    /// Behind a proxy: requests in flight per forwarded client address.
    pub requests_per_client: Option<Arc<crate::serve::PerClient>>,
    /// Login attempts per client address.
    pub login_limiter: Arc<crate::auth::rate_limit::LoginLimiter>,
    pub live_uploads: Arc<LiveUploads>,
    /// Queues download records for the download log's writer.
    pub download_log: DownloadRecorder,
    /// Blocking work that must finish before the database closes (upload
    /// writers, clean-ups).
    pub tracker: TaskTracker,
    /// Fires when the shutdown drain time is over: in-flight requests stop.
    pub abort: CancellationToken,
    /// Bytes per chunk for new uploads.
    pub chunk_size: u64,
    /// Shortest expiration an upload or edit may ask for (`--min-expiration`).
    pub min_expiration: chrono::Duration,
    /// Trust X-Forwarded-For.
    pub behind_proxy: bool,
    pub counters: Arc<Counters>,
    /// This process's memory cgroup, located at start-up (`None`: none found).
    pub cgroup: Option<Arc<memstat::cgroup::Cgroup>>,
}
