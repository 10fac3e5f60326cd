//! Reporting: the summary table and `bench-throughput.json`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::Config;
use crate::cost::{COLLECT_TARGET_MS, CostFigures};
use crate::phases::{MemoryFigures, SingleFigures};
use crate::raw::{Rate, RawFigures};
use crate::{CHUNK_SIZE, MB, PARALLEL_UPLOADS, PEAK_RSS_TARGET_MIB, RATIO_TARGET};

pub(crate) struct Report {
    pub(crate) config: Config,
    pub(crate) raw: RawFigures,
    /// What any download can reach here (context for the download ratio).
    pub(crate) loopback: Rate,
    pub(crate) single: SingleFigures,
    pub(crate) memory: MemoryFigures,
    pub(crate) cost: CostFigures,
}

impl Report {
    pub(crate) fn upload_ratio(&self) -> f64 {
        self.single.upload.mb_per_s() / self.raw.write.mb_per_s()
    }

    pub(crate) fn download_ratio(&self) -> f64 {
        self.single.download.mb_per_s() / self.raw.read.mb_per_s()
    }

    pub(crate) fn print_summary(&self) {
        let up = self.upload_ratio();
        let down = self.download_ratio();
        let peak = self.memory.peak_hwm_mib;
        println!(
            "\nsummary ({} file, MB = 10^6 bytes)",
            fmt_mb(self.config.size)
        );
        println!(
            "  {:<34} {:>12}  {:>14}  result",
            "figure", "measured", "target"
        );
        row("raw write (storage layer)", &mbps(self.raw.write), "", "");
        row("raw read (storage layer)", &mbps(self.raw.read), "", "");
        row(
            "loopback TCP (no HTTP/storage)",
            &mbps(self.loopback),
            "",
            "",
        );
        row("server upload", &mbps(self.single.upload), "", "");
        row("server download", &mbps(self.single.download), "", "");
        row(
            "server download + client SHA-256",
            &mbps(self.single.verified_download),
            "",
            "",
        );
        row(
            "upload / raw write",
            &format!("{up:.2}"),
            &format!(">= {RATIO_TARGET:.2}"),
            verdict(up >= RATIO_TARGET),
        );
        row(
            "download / raw read",
            &format!("{down:.2}"),
            &format!(">= {RATIO_TARGET:.2}"),
            verdict(down >= RATIO_TARGET),
        );
        row(
            "download / loopback TCP",
            &format!(
                "{:.2}",
                self.single.download.mb_per_s() / self.loopback.mb_per_s()
            ),
            "",
            "",
        );
        row(
            "server VmHWM after startup",
            &format!("{:.1} MiB", self.memory.startup_hwm_mib),
            "",
            "",
        );
        row(
            "server VmHWM, 1 up + 1 down",
            &format!("{:.1} MiB", self.single.hwm_mib),
            "",
            "",
        );
        row(
            &format!(
                "server VmHWM, {PARALLEL_UPLOADS} x {} uploads",
                fmt_mb(self.config.parallel_size)
            ),
            &format!("{peak:.1} MiB"),
            &format!("<= {PEAK_RSS_TARGET_MIB:.0} MiB"),
            verdict(peak <= PEAK_RSS_TARGET_MIB),
        );
        row(
            "parallel uploads, aggregate",
            &mbps(self.memory.total),
            "",
            "",
        );
        row(
            "/debug/stats collect, median",
            &format!("{:.3} ms", self.cost.collect_median_ms),
            "< 2 ms",
            verdict(self.cost.collect_median_ms < COLLECT_TARGET_MS),
        );
        row(
            "/debug/stats collect, p99",
            &format!("{:.3} ms", self.cost.collect_p99_ms),
            "",
            "",
        );
        row(
            "upload with / without 10 Hz poller",
            &format!(
                "{:.2}",
                self.cost.with.mb_per_s() / self.cost.without.mb_per_s()
            ),
            "",
            "",
        );
        row(
            "VmHWM with - without poller",
            &format!(
                "{:+.1} MiB",
                self.cost.hwm_with_mib - self.cost.hwm_without_mib
            ),
            "",
            "",
        );
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "unix_time": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "machine": { "cores": cores(), "kernel": kernel_release() },
            "chunk_size": CHUNK_SIZE,
            "size_bytes": self.config.size,
            "parallel_uploads": PARALLEL_UPLOADS,
            "parallel_size_bytes": self.config.parallel_size,
            "raw": { "write": self.raw.write.to_json(), "read": self.raw.read.to_json() },
            "loopback_tcp": self.loopback.to_json(),
            "server": {
                "upload": self.single.upload.to_json(),
                "download": self.single.download.to_json(),
                "verified_download": self.single.verified_download.to_json(),
                "sha256": self.single.sha256,
                "vm_hwm_mib": self.single.hwm_mib,
            },
            "ratios": {
                "upload": self.upload_ratio(),
                "download": self.download_ratio(),
                "target": RATIO_TARGET,
                "upload_pass": self.upload_ratio() >= RATIO_TARGET,
                "download_pass": self.download_ratio() >= RATIO_TARGET,
            },
            "introspection_cost": {
                "collect_median_ms": self.cost.collect_median_ms,
                "collect_p99_ms": self.cost.collect_p99_ms,
                "request_median_ms": self.cost.request_median_ms,
                "upload_without_poller": self.cost.without.to_json(),
                "upload_with_poller": self.cost.with.to_json(),
                "polls": self.cost.polls,
                "vm_hwm_without_poller_mib": self.cost.hwm_without_mib,
                "vm_hwm_with_poller_mib": self.cost.hwm_with_mib,
            },
            "memory": {
                "startup_vm_hwm_mib": self.memory.startup_hwm_mib,
                "parallel_vm_hwm_mib": self.memory.peak_hwm_mib,
                "target_mib": PEAK_RSS_TARGET_MIB,
                "pass": self.memory.peak_hwm_mib <= PEAK_RSS_TARGET_MIB,
                "parallel_total": self.memory.total.to_json(),
            },
        })
    }

    pub(crate) fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json()).context("encoding the figures")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

pub(crate) fn row(name: &str, measured: &str, target: &str, result: &str) {
    let line = format!("  {name:<34} {measured:>12}  {target:>14}  {result}");
    println!("{}", line.trim_end());
}

pub(crate) fn mbps(rate: Rate) -> String {
    format!("{:.1} MB/s", rate.mb_per_s())
}

pub(crate) fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

pub(crate) fn fmt_mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / MB)
}

/// `$CARGO_TARGET_DIR/bench-throughput.json`, else the workspace's
/// `target/` (the bench runs in `server/`, so the path is anchored on the
/// manifest dir, not the cwd). A relative `CARGO_TARGET_DIR` is taken from
/// the workspace root, as cargo does when invoked there.
pub(crate) fn json_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("bench-throughput.json")
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
