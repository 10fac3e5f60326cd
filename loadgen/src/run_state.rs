//! State shared by every goose user of one run: the configuration, the tally, the entries
//! downloads may fetch, and the stop signal raised when the server is gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::body::{BodySpec, Source};
use crate::config::{Config, Scenario};
use crate::content::{Pattern, SplitMix, purpose};
use crate::preflight::{self, Fatal};
use crate::recorder::Recorder;
use crate::summary::UploadRecord;

pub(crate) struct RunState {
    pub config: Config,
    /// Bytes per upload (the file's length with `--file`).
    pub upload_size: u64,
    pub recorder: Recorder,
    /// Entries downloads may fetch and deletes delete.
    entries: Mutex<Entries>,
    next_download: AtomicUsize,
    /// Cancelled when the run must stop: bodies end, waits return, transactions do nothing.
    pub cancel: CancellationToken,
    fatal: Mutex<Option<Fatal>>,
    /// One server check at a time: a dead server fails every user at once.
    checking: tokio::sync::Mutex<()>,
    check_client: reqwest::Client,
}

/// `known_uploads`, then uploads of this run as they finish. Only appended to, so an index
/// names the same entry for the whole run.
struct Entries {
    records: Vec<UploadRecord>,
    /// `records[..claimed]` are taken by deletes: each is deleted by one user only.
    claimed: usize,
}

/// What one upload sends.
pub(crate) struct UploadPlan {
    pub spec: BodySpec,
    pub seed: u64,
    pub filename: String,
    pub content_type: &'static str,
}

impl RunState {
    pub(crate) fn new(config: Config, upload_size: u64) -> reqwest::Result<Self> {
        let check_client = preflight::client(&config.host)?;
        Ok(RunState {
            entries: Mutex::new(Entries {
                records: config.known_uploads.clone(),
                claimed: 0,
            }),
            config,
            upload_size,
            recorder: Recorder::default(),
            next_download: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
            fatal: Mutex::new(None),
            checking: tokio::sync::Mutex::new(()),
            check_client,
        })
    }

    pub(crate) fn check_client(&self) -> &reqwest::Client {
        &self.check_client
    }

    pub(crate) fn stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn fatal_slot(&self) -> MutexGuard<'_, Option<Fatal>> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn fatal(&self) -> Option<Fatal> {
        self.fatal_slot().clone()
    }

    /// Stops the run for good: in-flight bodies end, goose stops its users (its killswitch),
    /// and `run` returns the first reason given.
    pub(crate) fn stop(&self, fatal: Fatal) {
        let reason = fatal.describe(&self.config.host);
        {
            let mut slot = self.fatal_slot();
            if slot.is_some() {
                return;
            }
            *slot = Some(fatal);
        }
        tracing::error!("{reason}; stopping the run");
        self.cancel.cancel();
        goose::trigger_killswitch(&reason);
    }

    /// After a connection-level failure: if the server no longer answers `/healthz` either, stop
    /// the run rather than let every user fail until its timeout.
    pub(crate) async fn check_server(&self) {
        if self.stopped() {
            return;
        }
        let _one_at_a_time = self.checking.lock().await;
        if self.stopped() {
            return;
        }
        if let Err(detail) = preflight::healthy(&self.check_client, &self.config.host).await {
            self.stop(Fatal::ServerGone(detail));
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a finished upload available to downloads and deletes.
    pub(crate) fn add_downloadable(&self, record: UploadRecord) {
        self.entries().records.push(record);
    }

    /// The next entry to download, round-robin, so n downloads of n entries fetch each once.
    pub(crate) fn next_download(&self) -> Option<UploadRecord> {
        let entries = self.entries();
        if entries.records.is_empty() {
            return None;
        }
        let i = self.next_download.fetch_add(1, Ordering::Relaxed) % entries.records.len();
        Some(entries.records[i].clone())
    }

    /// The next entry to delete, in the same order as downloads but never twice: `None` once
    /// every entry is claimed.
    pub(crate) fn claim_for_deletion(&self) -> Option<UploadRecord> {
        let mut entries = self.entries();
        let record = entries.records.get(entries.claimed).cloned()?;
        entries.claimed += 1;
        Some(record)
    }

    /// The upload of `user` in `iteration`: content seeded by (seed, user, iteration), throttled
    /// for `slow-upload`, cut short for `abort-upload`.
    pub(crate) fn upload_plan(
        &self,
        scenario: Scenario,
        user: usize,
        iteration: usize,
    ) -> UploadPlan {
        let config = &self.config;
        let seed = SplitMix::derive(config.seed, purpose::CONTENT, user, iteration).next_u64();
        let size = self.upload_size;
        let (source, filename, content_type) = match &config.file {
            Some(path) => (
                Source::File(path.clone()),
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("upload.bin")
                    .to_owned(),
                "application/octet-stream",
            ),
            // Shaped like the story's videos; the content itself is random bytes.
            None => (
                Source::Pattern(Pattern::new(seed)),
                format!("loadgen-{seed:016x}.mp4"),
                "video/mp4",
            ),
        };
        let rate = (scenario == Scenario::SlowUpload).then(|| config.slow_rate.bytes());
        let abort_after = (scenario == Scenario::AbortUpload)
            .then(|| ((size as f64 * config.abort_fraction) as u64).min(size.saturating_sub(1)));
        UploadPlan {
            spec: BodySpec {
                source,
                size,
                rate,
                abort_after,
            },
            seed,
            filename,
            content_type,
        }
    }
}
