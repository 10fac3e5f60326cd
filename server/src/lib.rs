//! share-server: a self-hosted file-share server (PicoShare's feature set)
//! that stores files as chunks in SQLite with memory flat in file size.
//!
//! Module map:
//! - [`config`]: flags and environment → [`config::ServerConfig`].
//! - [`entry`]: ids, filename/note/expiration/download-limit rules, the `Entry` model.
//! - [`guest_links`]: guest link rules (limits, expiry, file lifetime).
//! - [`settings`]: the default expiration setting and its rules.
//! - [`storage`]: all SQL (connections, migrations, entries, chunks, downloads,
//!   guest links, settings, GC).
//! - [`upload`]: streaming a request body into chunk rows through a bounded channel.
//! - [`upload_form`]: the multipart form of an upload (owner or guest) into [`upload`].
//! - [`download`]: Range planning and the chunk-at-a-time response body.
//! - [`download_log`]: the bounded queue and single writer of download records.
//! - [`live_uploads`]: uploads in progress, which GC must not touch.
//! - [`web`]: the HTML pages (askama templates in `server/templates/`) and
//!   their static CSS/JS; [`system_info`]: the figures of the system page.
//! - [`csrf`]: the Origin check on cookie-authenticated state changes.
//! - [`auth`]: shared-secret login, server-side sessions and their cookie,
//!   the login rate limit.
//! - [`routes`], [`handlers`], [`error`], [`state`]: the HTTP layer (JSON API).
//! - [`serve`]: the accept loop (header and idle timeouts, minimum body rate,
//!   connection caps in all and per client, idle connections closed first);
//!   [`limits`]: its flags, the memory budget's and the login limiter's.
//! - [`budget`]: the one memory budget every request buffer draws from;
//!   [`fair_share`]: how it (and the connection slots) is shared among
//!   clients; [`client`]: who a request comes from.
//! - [`multipart_guard`]: bounds on the multipart framing multer buffers whole.
//! - [`gc`]: the periodic collector task; [`idle_trim`]: hands idle SQLite caches back.
//! - [`regressions`]: the story's bugs as opt-in fixtures (`regressions` feature).
//! - [`allocator`], [`stats`], [`counters`], [`metrics`]: memory introspection
//!   (`/debug/stats`, `/metrics`, heap profiles) on the debug listener;
//!   [`debug_access`]: which requests it answers.
//!
//! [`Server::open`] then [`Server::run`] with bound listeners and a stop signal.

pub mod allocator;
pub mod auth;
pub mod budget;
pub mod client;
pub mod config;
pub mod counters;
pub mod csrf;
pub mod debug_access;
pub mod download;
pub mod download_log;
pub mod entry;
pub mod error;
pub mod fair_share;
pub mod gc;
pub mod guest_links;
pub mod handlers;
pub mod idle_trim;
pub mod limits;
pub mod live_uploads;
pub mod metrics;
pub mod multipart_guard;
pub mod regressions;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod state;
pub mod stats;
pub mod storage;
pub mod system_info;
pub mod upload;
pub mod upload_form;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Sessions;
use crate::auth::rate_limit::LoginLimiter;
use crate::config::ServerConfig;
use crate::counters::Counters;
use crate::download_log::DownloadLogWriter;
use crate::live_uploads::LiveUploads;
use crate::state::AppState;
use crate::storage::{Db, StorageError, Store};

/// An opened server, ready to run.
pub struct Server {
    config: ServerConfig,
    state: AppState,
    download_log: DownloadLogWriter,
}

impl Server {
    /// Opens the database (migrating it) and prepares the shared state.
    pub fn open(config: ServerConfig) -> Result<Server, StorageError> {
        let store = Store::open(&config.db, config.disk_reserve)?;
        let sessions = Sessions::open(&store, &config.shared_secret)?;
        let counters = Arc::new(Counters::default());
        let (recorder, download_log) =
            download_log::channel(download_log::QUEUE_RECORDS, Arc::clone(&counters));
        let state = AppState {
            db: Db::new(store),
            sessions: Arc::new(sessions),
            budget: budget::MemoryBudget::new(
                config.limits.memory_budget,
                config.limits.budget_wait,
            ),
            // Behind a proxy all connections come from it: limit requests
            // per forwarded address instead (`routes::limit_per_client`).
            requests_per_client: config
                .behind_proxy
                .then(|| serve::PerClient::new(config.limits.connections.max_per_client)),
            login_limiter: Arc::new(LoginLimiter::new(
                config.limits.login_burst,
                config.limits.login_refill,
            )),
            live_uploads: Arc::new(LiveUploads::default()),
            download_log: recorder,
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            chunk_size: config.chunk_size,
            min_expiration: chrono::Duration::from_std(config.min_expiration)
                .unwrap_or(entry::MIN_EXPIRATION_AHEAD),
            behind_proxy: config.behind_proxy,
            counters,
            cgroup: match memstat::cgroup::Cgroup::of_process(None) {
                Ok(cg) => Some(Arc::new(cg)),
                Err(e) => {
                    tracing::info!(reason = %e, "no memory cgroup; /debug/stats reports it as null");
                    None
                }
            },
        };
        Ok(Server {
            config,
            state,
            download_log,
        })
    }

    /// Serves `listener` (and the debug routes on `debug`, if given) until
    /// `shutdown` completes, then: stops accepting, lets
    /// in-flight requests finish for `shutdown_timeout`, aborts the rest
    /// (their partial uploads are removed), waits for background work,
    /// stores the queued download records and checkpoints the database.
    pub async fn run(
        self,
        listener: TcpListener,
        debug: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Server {
            config,
            state,
            download_log,
        } = self;
        let log_writer = {
            let store = Arc::clone(state.db.store());
            tokio::task::spawn_blocking(move || download_log.run(&store))
        };
        let stop_gc = CancellationToken::new();
        let gc = tokio::spawn(gc::run(
            state.db.clone(),
            Arc::clone(&state.live_uploads),
            Arc::clone(&state.counters),
            config.gc_interval,
            config.vacuum || regressions::active(regressions::Regression::PeriodicVacuum),
            stop_gc.clone(),
        ));
        let trim = tokio::spawn(idle_trim::run(state.db.clone(), stop_gc.clone()));

        let stop_accepting = CancellationToken::new();
        let limits = config.limits.connections;
        let debug_server = debug.map(|debug| {
            let allowed = debug_access::AllowedHosts::new(&config.debug_allowed_hosts);
            let app = routes::debug_router(state.clone(), allowed);
            let table = serve::Connections::new();
            tokio::spawn(serve::serve(
                debug,
                app,
                limits,
                None,
                table,
                stop_accepting.clone(),
            ))
        });
        let app = routes::router(state.clone());
        let per_client =
            (!config.behind_proxy).then(|| serve::PerClient::new(limits.max_per_client));
        // A full memory budget is relieved by cutting the request stalled
        // longest on its client, from this listener's connections.
        let table = serve::Connections::new();
        state.budget.set_relief(table.clone());
        let serve = serve::serve(
            listener,
            app,
            limits,
            per_client,
            table,
            stop_accepting.clone(),
        );
        let mut serve = std::pin::pin!(serve);

        tokio::select! {
            () = &mut serve => {}
            () = shutdown => {
                tracing::info!(drain = ?config.shutdown_timeout, "shutting down: draining requests");
                stop_accepting.cancel();
                if tokio::time::timeout(config.shutdown_timeout, &mut serve).await.is_err() {
                    tracing::warn!(uploads = state.live_uploads.len(), "drain time over; aborting requests");
                    state.abort.cancel();
                    serve.await;
                }
            }
        }

        stop_gc.cancel();
        let _ = gc.await;
        let _ = trim.await;
        if let Some(debug_server) = debug_server
            && let Err(e) = debug_server.await
        {
            tracing::warn!(error = %e, "debug listener task failed");
        }
        state.tracker.close();
        state.tracker.wait().await;
        // No request is left to record a download: flush the queue.
        state.download_log.stop().await;
        match log_writer.await {
            Ok(report) => tracing::info!(records = report.recorded, "download log closed"),
            Err(e) => tracing::warn!(error = %e, "the download log's writer failed"),
        }
        let db = state.db.clone();
        match db.run(|s| s.checkpoint_without_waiting()).await {
            Ok(()) => tracing::info!("database closed cleanly"),
            Err(e) => {
                tracing::warn!(error = %e, "final checkpoint failed; the WAL is replayed on next start")
            }
        }
        Ok(())
    }
}
