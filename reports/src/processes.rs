//! The processes of the machine's group (the samples' `processes`, `cgroup`
//! mode): each one's peak RSS and anon by name, which is what a wrapper such
//! as Litestream costs beside the server, and how close the sum of their
//! anon RSS comes to the cgroup's anon (it should be the same memory, counted
//! twice by the kernel: per process and per cgroup).

use std::collections::BTreeMap;

use run_format::Sample;
use run_format::sample::group_anon_bytes;
use serde::{Deserialize, Serialize};

/// One process name's peaks over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessPeaks {
    /// `/proc/<pid>/comm`: `share-server`, `litestream`.
    pub name: String,
    /// Every pid seen under the name.
    pub pids: Vec<u32>,
    pub peak_rss_bytes: u64,
    pub peak_anon_bytes: u64,
    /// Seconds into the run of the anon peak.
    pub peak_anon_at_s: f64,
}

/// The group's processes and how their anon adds up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// By peak anon, largest first.
    pub processes: Vec<ProcessPeaks>,
    /// Σ the processes' anon ÷ the cgroup's anon over the samples with
    /// both (and the cgroup's anon above 1 MiB): median, lowest, highest.
    pub anon_ratio_median: Option<f64>,
    pub anon_ratio_min: Option<f64>,
    pub anon_ratio_max: Option<f64>,
    /// Σ the processes' anon minus the cgroup's anon, the widest gap, bytes.
    pub anon_gap_max_bytes: Option<i64>,
}

/// `None` when no sample lists the group (other modes, older runs).
pub fn summarise(samples: &[Sample]) -> Option<GroupSummary> {
    let mut by_name: BTreeMap<String, ProcessPeaks> = BTreeMap::new();
    let mut ratios = Vec::new();
    let mut gap_max: Option<i64> = None;
    for s in samples {
        let Some(group) = s.processes.as_deref() else {
            continue;
        };
        let t_s = s.t_ms as f64 / 1000.0;
        for (name, pids, rss, anon) in per_name(group) {
            let peaks = by_name.entry(name.clone()).or_insert(ProcessPeaks {
                name,
                pids: Vec::new(),
                peak_rss_bytes: 0,
                peak_anon_bytes: 0,
                peak_anon_at_s: t_s,
            });
            for pid in pids {
                if !peaks.pids.contains(&pid) {
                    peaks.pids.push(pid);
                }
            }
            peaks.peak_rss_bytes = peaks.peak_rss_bytes.max(rss);
            if anon > peaks.peak_anon_bytes {
                peaks.peak_anon_bytes = anon;
                peaks.peak_anon_at_s = t_s;
            }
        }
        if let (Some(sum), Some(machine)) = (group_anon_bytes(Some(group)), s.machine.as_ref())
            && machine.anon_bytes > 1 << 20
        {
            ratios.push(sum as f64 / machine.anon_bytes as f64);
            let gap = sum as i64 - machine.anon_bytes as i64;
            gap_max = Some(gap_max.map_or(gap, |g: i64| if gap.abs() > g.abs() { gap } else { g }));
        }
    }
    if by_name.is_empty() {
        return None;
    }
    let mut processes: Vec<ProcessPeaks> = by_name.into_values().collect();
    processes.sort_by_key(|p| std::cmp::Reverse(p.peak_anon_bytes));
    ratios.sort_by(f64::total_cmp);
    Some(GroupSummary {
        processes,
        anon_ratio_median: (!ratios.is_empty()).then(|| ratios[ratios.len() / 2]),
        anon_ratio_min: ratios.first().copied(),
        anon_ratio_max: ratios.last().copied(),
        anon_gap_max_bytes: gap_max,
    })
}

/// Each name's anon RSS over the samples (bytes; `None` where the sample
/// lists no such process), for the plot. Empty without a listing.
pub fn anon_by_name(samples: &[Sample]) -> Vec<(String, Vec<Option<f64>>)> {
    let mut names: Vec<String> = samples
        .iter()
        .flat_map(|s| s.processes.iter().flatten().map(|p| p.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let column = samples
                .iter()
                .map(|s| {
                    let group = s.processes.as_deref()?;
                    let anon: u64 = group
                        .iter()
                        .filter(|p| p.name == name)
                        .map(|p| p.memory.rss_anon_bytes)
                        .sum();
                    group.iter().any(|p| p.name == name).then_some(anon as f64)
                })
                .collect();
            (name, column)
        })
        .collect()
}

/// One sample's processes summed by name: (name, pids, RSS, anon).
fn per_name(group: &[run_format::GroupProcess]) -> Vec<(String, Vec<u32>, u64, u64)> {
    let mut out: Vec<(String, Vec<u32>, u64, u64)> = Vec::new();
    for p in group {
        match out.iter_mut().find(|(n, ..)| *n == p.name) {
            Some((_, pids, rss, anon)) => {
                pids.push(p.pid);
                *rss += p.memory.vm_rss_bytes;
                *anon += p.memory.rss_anon_bytes;
            }
            None => out.push((
                p.name.clone(),
                vec![p.pid],
                p.memory.vm_rss_bytes,
                p.memory.rss_anon_bytes,
            )),
        }
    }
    out
}

/// The markdown section of `summary.md`.
pub fn markdown(g: &GroupSummary) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut md = String::from(
        "\n### Processes in the group\n\n| process | pids | peak RSS | peak anon | at |\n|---|---|---:|---:|---:|\n",
    );
    for p in &g.processes {
        let pids = p
            .pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        md.push_str(&format!(
            "| {} | {pids} | {:.1} MiB | {:.1} MiB | {:.1} s |\n",
            p.name,
            p.peak_rss_bytes as f64 / MIB,
            p.peak_anon_bytes as f64 / MIB,
            p.peak_anon_at_s
        ));
    }
    if let (Some(median), Some(lo), Some(hi)) =
        (g.anon_ratio_median, g.anon_ratio_min, g.anon_ratio_max)
    {
        md.push_str(&format!(
            "\nThe processes' anon RSS summed against the cgroup's anon: median {:.1} % (from {:.1} % to {:.1} %; widest gap {:+.1} MiB).\n",
            median * 100.0,
            lo * 100.0,
            hi * 100.0,
            g.anon_gap_max_bytes.unwrap_or(0) as f64 / MIB
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, machine_anon: u64, group: &[(&str, u32, u64)]) -> Sample {
        let processes: Vec<serde_json::Value> = group
            .iter()
            .map(|(name, pid, anon)| {
                serde_json::json!({"pid": pid, "name": name, "vm_rss_bytes": anon + 1000,
                    "rss_anon_bytes": anon, "rss_file_bytes": 1000, "rss_shmem_bytes": 0,
                    "vm_hwm_bytes": 0, "threads": 1})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "t_ms": t_ms, "phase": "upload", "process": null, "system": null,
            "server": null, "files": null, "processes": processes,
            "machine": {
                "source": "cgroup-v1", "usage_bytes": 0, "limit_bytes": null, "peak_bytes": null,
                "anon_bytes": machine_anon, "file_bytes": 0, "mapped_file_bytes": 0,
                "dirty_bytes": 0, "writeback_bytes": 0, "inactive_file_bytes": 0,
                "working_set_bytes": 0, "oom_kills": 0, "limit_hits": 0, "pressure": null
            }
        }))
        .unwrap()
    }

    #[test]
    fn peaks_per_name_and_the_sum_against_the_cgroup() {
        const M: u64 = 1 << 20;
        let samples = [
            sample(
                0,
                12 * M,
                &[("share-server", 7, 10 * M), ("litestream", 6, 2 * M)],
            ),
            sample(
                1000,
                44 * M,
                &[("share-server", 7, 30 * M), ("litestream", 6, 10 * M)],
            ),
            sample(
                2000,
                20 * M,
                &[("share-server", 7, 15 * M), ("litestream", 6, 5 * M)],
            ),
        ];
        let g = summarise(&samples).unwrap();
        let names: Vec<_> = g.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["share-server", "litestream"]);
        assert_eq!(g.processes[1].peak_anon_bytes, 10 * M);
        assert_eq!(g.processes[1].peak_anon_at_s, 1.0);
        assert_eq!(g.processes[1].pids, [6]);
        assert_eq!(g.anon_ratio_median, Some(1.0));
        assert!((g.anon_ratio_min.unwrap() - 40.0 / 44.0).abs() < 1e-9);
        assert_eq!(g.anon_gap_max_bytes, Some(-4 * (M as i64)));
        let md = markdown(&g);
        assert!(
            md.contains("| litestream | 6 |") && md.contains("median 100.0 %"),
            "{md}"
        );
        let columns = anon_by_name(&samples);
        assert_eq!(columns[0].0, "litestream");
        assert_eq!(columns[0].1[1], Some((10 * M) as f64));
    }

    #[test]
    fn no_listing_no_summary() {
        let mut s = sample(0, 1 << 20, &[]);
        s.processes = None;
        assert_eq!(summarise(&[s.clone()]), None);
        assert!(anon_by_name(&[s]).is_empty());
    }
}
