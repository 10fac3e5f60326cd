//! Where share-server's peak resident memory is, by layer: file pages (the
//! binary and libraries), the allocator's resident bytes (SQLite's share of
//! them from SQLite's own counter), thread stacks, and the anon left over.
//! Taken in a separate pass with the debug listener on, so the contest
//! rounds carry no stats polling.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use run_format::server_stats::ServerStats;

use crate::contender::Contender;
use crate::watch::Status;

/// A new snapshot is taken when anon has grown this much past the last one.
const SNAPSHOT_STEP_KIB: u64 = 256;
/// How often the layers pass looks at the process.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Layers {
    pub(crate) rss_kib: u64,
    pub(crate) rss_file_kib: u64,
    pub(crate) rss_anon_kib: u64,
    pub(crate) allocator_resident_kib: u64,
    pub(crate) allocator_allocated_kib: u64,
    pub(crate) sqlite_kib: u64,
    pub(crate) stacks_kib: u64,
    pub(crate) threads: u64,
}

impl Layers {
    /// Anon beyond the allocator's live bytes and the stacks: jemalloc's
    /// pages not yet returned and its metadata, TLS, relocated data, libc.
    /// (jemalloc's own `resident` is an upper bound, often above all anon.)
    pub(crate) fn other_anon_kib(&self) -> i64 {
        self.rss_anon_kib as i64 - self.allocator_allocated_kib as i64 - self.stacks_kib as i64
    }

    pub(crate) async fn take(contender: &Contender) -> Result<Layers> {
        let pid = contender.pid();
        let stats: ServerStats = serde_json::from_str(&contender.debug_get("/debug/stats").await?)
            .context("parsing /debug/stats")?;
        let status = Status::read(pid)?;
        let kib = |b: Option<u64>| b.unwrap_or(0) / 1024;
        Ok(Layers {
            rss_kib: status.vm_rss_kib,
            rss_file_kib: status.rss_file_kib,
            rss_anon_kib: status.rss_anon_kib,
            allocator_resident_kib: kib(stats.allocator.resident_bytes),
            allocator_allocated_kib: kib(stats.allocator.allocated_bytes),
            sqlite_kib: kib(stats.sqlite.memory_used_bytes),
            stacks_kib: stacks_kib(pid)?,
            threads: status.threads,
        })
    }
}

/// Snapshots of the layers while `work` runs; returns the one at the highest
/// anon seen and `work`'s result.
pub(crate) async fn at_peak<T>(
    contender: &Contender,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<(Layers, T)> {
    let mut peak = Layers::take(contender).await?;
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Ok((peak, done?)),
            _ = tokio::time::sleep(POLL) => {
                let anon = Status::read(contender.pid())?.rss_anon_kib;
                if anon >= peak.rss_anon_kib + SNAPSHOT_STEP_KIB {
                    let now = Layers::take(contender).await?;
                    if now.rss_anon_kib > peak.rss_anon_kib {
                        peak = now;
                    }
                }
            }
        }
    }
}

/// Resident KiB of the mappings that hold a thread's stack pointer (read
/// from `/proc/<pid>/task/<tid>/syscall`, whose second-to-last field is the
/// stack pointer of a thread blocked in the kernel, which ours nearly always are).
fn stacks_kib(pid: u32) -> Result<u64> {
    let mut pointers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).context("listing threads")? {
        let path = task?.path().join("syscall");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() >= 3
            && let Some(sp) = fields
                .get(fields.len() - 2)
                .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        {
            pointers.push(sp);
        }
    }
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).context("reading smaps")?;
    let mut counted = BTreeSet::new();
    let mut current: Option<(u64, u64)> = None;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(range) = line.split_whitespace().next().filter(|r| r.contains('-'))
            && let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            current = Some((start, end));
            continue;
        }
        if let (Some(rest), Some((start, end))) = (line.strip_prefix("Rss:"), current)
            && pointers.iter().any(|sp| (start..end).contains(sp))
            && counted.insert(start)
        {
            total += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}
