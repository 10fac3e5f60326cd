//! The sampler: every `interval`, one [`Sample`] of every layer (and of
//! every process in the machine's group: a wrapper beside the server), appended to
//! `samples.jsonl` and flushed at once, so a run killed mid-way keeps its
//! data. It runs in the rig, outside the server, so it does not add to what
//! it measures; reads that stall (a process under memory pressure) are cut
//! off at the interval instead of delaying the next tick. It also keeps the
//! listing of the server's files at their peak ([`crate::files::Peak`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::files::{self, ListedFile};
use crate::machine::Probe;
use run_format::{FilesAtPeak, Sample, ServerStats};

/// What the sampler watches.
pub struct Target {
    pub pid: u32,
    pub debug_url: String,
    pub db: PathBuf,
}

/// Shared with the run: the phase name written into each sample.
#[derive(Clone, Default)]
pub struct Phase(Arc<Mutex<String>>);

impl Phase {
    pub fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = name.to_owned();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct Sampler {
    pub probe: Arc<dyn Probe>,
    pub target: Target,
    pub interval: Duration,
    pub started: Instant,
    pub phase: Phase,
}

/// What a sampler leaves besides `samples.jsonl`.
#[derive(Debug, Default)]
pub struct Sampled {
    pub samples: u64,
    /// The server's files at their peak; `None` where they are not listed.
    pub files_at_peak: Option<FilesAtPeak>,
}

impl Sampler {
    /// Samples until `stop` fires; each sample is also published on `latest`.
    pub async fn run(
        self,
        out: &Path,
        latest: watch::Sender<Option<Sample>>,
        stop: CancellationToken,
    ) -> std::io::Result<Sampled> {
        let mut writer = BufWriter::new(File::create(out)?);
        let http = loadgen::client_builder(&self.target.debug_url)
            .no_proxy()
            .timeout(self.interval)
            .build()
            .map_err(std::io::Error::other)?;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut written = 0;
        let mut peak = files::Peak::default();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let (sample, listing) = self.read(&http).await;
            serde_json::to_writer(&mut writer, &sample)?;
            writer.write_all(b"\n")?;
            writer.flush()?;
            written += 1;
            peak.observe(sample.t_ms, listing);
            latest.send_replace(Some(sample));
        }
        Ok(Sampled {
            samples: written,
            files_at_peak: peak.finish(),
        })
    }

    /// One sample: /proc and the cgroup on a blocking thread, the server's
    /// stats over HTTP (or from the probe), both bounded by the interval.
    pub async fn take(&self, http: &reqwest::Client) -> Sample {
        self.read(http).await.0
    }

    /// One sample and the server's files listed in it.
    async fn read(&self, http: &reqwest::Client) -> (Sample, Vec<ListedFile>) {
        let t_ms = self.started.elapsed().as_millis() as u64;
        let probe = Arc::clone(&self.probe);
        let pid = self.target.pid;
        let db = self.target.db.clone();
        let via_probe = self.probe.provides_server_stats();
        let local = tokio::task::spawn_blocking(move || {
            (
                probe.process(pid).ok(),
                probe.machine().ok(),
                probe.system(),
                probe.files(&db, pid),
                via_probe.then(|| probe.server_stats()).flatten(),
                probe.group_processes(),
            )
        });
        let fetched = async {
            match via_probe {
                true => None,
                false => fetch_stats(http, &self.target.debug_url).await,
            }
        };
        let (local, fetched) = tokio::join!(tokio::time::timeout(self.interval, local), fetched);
        let (process, machine, system, files, probed, processes) = match local {
            Ok(Ok(readings)) => readings,
            _ => (None, None, None, None, None, None),
        };
        let server = if via_probe { probed } else { fetched };
        let (files, listing) = match files {
            Some(r) => (Some(r.sizes), r.listing),
            None => (None, Vec::new()),
        };
        let sample = Sample {
            t_ms,
            phase: self.phase.get(),
            process,
            machine,
            system,
            server,
            files,
            processes,
        };
        (sample, listing)
    }
}

/// `/debug/stats` over HTTP: the parts [`ServerStats`] keeps (the rest the rig reads itself).
async fn fetch_stats(http: &reqwest::Client, debug_url: &str) -> Option<ServerStats> {
    http.get(format!("{debug_url}/debug/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}
