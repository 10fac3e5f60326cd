//! One run's figures, read from what the rig returned and wrote.

use std::path::PathBuf;

use anyhow::{Context, Result};
use profiling::run::Outcome;
use serde::Serialize;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunFigures {
    pub(crate) profiles_on: bool,
    pub(crate) run_dir: PathBuf,
    /// No OOM kill, the server alive, the phase ok.
    pub(crate) passed: bool,
    /// `meta.json`'s allocator (`jemalloc`, `jemalloc-prof`).
    pub(crate) allocator: String,
    /// The upload phase's bytes / (last end − first start), MB/s (10^6 bytes).
    pub(crate) upload_mb_per_s: Option<f64>,
    /// loadgen's upload phase, logins included, s.
    pub(crate) upload_phase_seconds: Option<f64>,
    /// The server's VmHWM at its last sample (its peak RSS), MiB.
    pub(crate) server_hwm_mib: f64,
    /// Highest sampled RssAnon of the server, MiB.
    pub(crate) server_anon_mib: f64,
    /// Highest sampled anonymous memory of the cgroup, MiB.
    pub(crate) cgroup_anon_mib: f64,
    /// Highest sampled jemalloc `resident`, MiB.
    pub(crate) allocator_resident_mib: f64,
    /// jemalloc `allocated` in the run's last sample (after the pause), MiB.
    pub(crate) allocated_end_mib: Option<f64>,
    pub(crate) profiles: usize,
    /// Sum and largest of the profiles' fetch times, ms.
    pub(crate) fetch_ms_total: u64,
    pub(crate) fetch_ms_max: u64,
}

impl RunFigures {
    pub(crate) fn read(profiles_on: bool, outcome: &Outcome) -> Result<RunFigures> {
        let meta_path = outcome.run_dir.join(run_format::files::META);
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        let meta: run_format::Meta = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", meta_path.display()))?;
        let profiles = meta.heap_profiles.map(|h| h.profiles).unwrap_or_default();
        let upload = outcome
            .phases
            .iter()
            .find(|p| p.name == "upload")
            .and_then(|p| p.summary.as_ref());
        let rate = upload
            .and_then(|s| s.scenarios.get("upload"))
            .and_then(|s| s.transfers.get("upload"))
            .map(|t| t.aggregate_mb_per_s);
        let peaks = &outcome.peaks;
        Ok(RunFigures {
            profiles_on,
            run_dir: outcome.run_dir.clone(),
            passed: outcome.passed,
            allocator: meta.server.allocator,
            upload_mb_per_s: rate,
            upload_phase_seconds: upload.map(|s| s.duration_seconds),
            server_hwm_mib: peaks.process_hwm_bytes as f64 / MIB,
            server_anon_mib: peaks.process_anon_bytes as f64 / MIB,
            cgroup_anon_mib: peaks.machine_anon_bytes as f64 / MIB,
            allocator_resident_mib: peaks.allocator_resident_bytes as f64 / MIB,
            allocated_end_mib: outcome
                .last_samples
                .iter()
                .rev()
                .find_map(|s| s.server.as_ref()?.allocator.allocated_bytes)
                .map(|b| b as f64 / MIB),
            profiles: profiles.len(),
            fetch_ms_total: profiles.iter().map(|p| p.fetch_ms).sum(),
            fetch_ms_max: profiles.iter().map(|p| p.fetch_ms).max().unwrap_or(0),
        })
    }

    /// One line for the terminal.
    pub(crate) fn line(&self) -> String {
        let rate = self
            .upload_mb_per_s
            .map_or_else(|| "no upload rate".to_owned(), |r| format!("{r:.1} MB/s"));
        format!(
            "{} ({}): upload {rate}; server VmHWM {:.1} MiB, anon {:.1}; cgroup anon {:.1} MiB; \
             allocator resident {:.1} MiB; {} profiles, fetches {} ms (max {})",
            if self.passed { "PASS" } else { "FAIL" },
            self.allocator,
            self.server_hwm_mib,
            self.server_anon_mib,
            self.cgroup_anon_mib,
            self.allocator_resident_mib,
            self.profiles,
            self.fetch_ms_total,
            self.fetch_ms_max,
        )
    }
}
