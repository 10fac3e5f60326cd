//! Medians of each side, their ratios, the pairwise ratios; the table and
//! `bench-heap-profiles.json`.

use std::path::Path;

use anyhow::{Context, Result};
use profiling::gate::stats::median;
use serde_json::{Value, json};

use crate::Config;
use crate::figures::RunFigures;

/// A figure compared between the sides: name, unit, reader, whether on/off ratios are shown.
struct Metric {
    key: &'static str,
    name: &'static str,
    unit: &'static str,
    read: fn(&RunFigures) -> Option<f64>,
    ratio: bool,
}

const METRICS: [Metric; 8] = [
    Metric {
        key: "upload_mb_per_s",
        name: "upload, aggregate",
        unit: "MB/s",
        read: |r| r.upload_mb_per_s,
        ratio: true,
    },
    Metric {
        key: "server_hwm_mib",
        name: "server peak RSS (VmHWM)",
        unit: "MiB",
        read: |r| Some(r.server_hwm_mib),
        ratio: true,
    },
    Metric {
        key: "server_anon_mib",
        name: "server peak anon (RssAnon)",
        unit: "MiB",
        read: |r| Some(r.server_anon_mib),
        ratio: true,
    },
    Metric {
        key: "cgroup_anon_mib",
        name: "cgroup peak anon",
        unit: "MiB",
        read: |r| Some(r.cgroup_anon_mib),
        ratio: true,
    },
    Metric {
        key: "allocator_resident_mib",
        name: "allocator resident peak",
        unit: "MiB",
        read: |r| Some(r.allocator_resident_mib),
        ratio: true,
    },
    Metric {
        key: "allocated_end_mib",
        name: "allocated at the end",
        unit: "MiB",
        read: |r| r.allocated_end_mib,
        ratio: true,
    },
    Metric {
        key: "profiles",
        name: "profiles taken",
        unit: "",
        read: |r| Some(r.profiles as f64),
        ratio: false,
    },
    Metric {
        key: "fetch_ms_total",
        name: "profile fetches, total",
        unit: "ms",
        read: |r| Some(r.fetch_ms_total as f64),
        ratio: false,
    },
];

pub(crate) struct Summary<'a> {
    config: Config,
    runs: &'a [RunFigures],
}

impl<'a> Summary<'a> {
    pub(crate) fn of(config: Config, runs: &'a [RunFigures]) -> Summary<'a> {
        Summary { config, runs }
    }

    /// A side's runs that passed: a killed run's figures are not the build's.
    fn side(&self, on: bool) -> impl Iterator<Item = &RunFigures> {
        self.runs
            .iter()
            .filter(move |r| r.profiles_on == on && r.passed)
    }

    fn median(&self, on: bool, m: &Metric) -> Option<f64> {
        median(&self.side(on).filter_map(m.read).collect::<Vec<_>>())
    }

    /// Each "on" run against the "off" run just before it.
    fn pairwise(&self, m: &Metric) -> Vec<Option<f64>> {
        self.runs
            .windows(2)
            .filter(|w| !w[0].profiles_on && w[1].profiles_on)
            .map(|w| {
                let both = w[0].passed && w[1].passed;
                both.then(|| ratio((m.read)(&w[1]), (m.read)(&w[0])))
                    .flatten()
            })
            .collect()
    }

    pub(crate) fn print(&self) {
        let failed = self.runs.iter().filter(|r| !r.passed).count();
        println!(
            "\nsummary: medians of {} pairs, {} x {} MB uploads; on/off: ratio of the medians, then each pair's",
            self.config.pairs, self.config.users, self.config.upload_mb
        );
        if failed > 0 {
            println!(
                "  warning: {failed} runs failed (OOM kill or a failed phase), left out: see their run directories"
            );
        }
        println!(
            "  {:<34} {:>10} {:>10} {:>7}  pairs",
            "figure", "off", "on", "on/off"
        );
        for m in &METRICS {
            let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
            let (off, on) = (self.median(false, m), self.median(true, m));
            let (of_medians, pairs) = if m.ratio {
                let pairs: Vec<String> = self
                    .pairwise(m)
                    .into_iter()
                    .map(|r| r.map_or_else(|| "-".into(), |r| format!("{r:.2}")))
                    .collect();
                (
                    ratio(on, off).map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                    pairs.join(" "),
                )
            } else {
                (String::new(), String::new())
            };
            let name = if m.unit.is_empty() {
                m.name.to_owned()
            } else {
                format!("{} ({})", m.name, m.unit)
            };
            let line = format!(
                "  {name:<34} {:>10} {:>10} {of_medians:>7}  {pairs}",
                cell(off),
                cell(on)
            );
            println!("{}", line.trim_end());
        }
    }

    fn to_json(&self) -> Value {
        let medians = |on: bool| {
            METRICS
                .iter()
                .map(|m| (m.key.to_owned(), json!(self.median(on, m))))
                .collect::<serde_json::Map<_, _>>()
        };
        let ratios = METRICS
            .iter()
            .filter(|m| m.ratio)
            .map(|m| {
                let pairwise = self.pairwise(m);
                let value = json!({
                    "of_medians": ratio(self.median(true, m), self.median(false, m)),
                    "pairwise": pairwise,
                    "pairwise_median": median(&pairwise.iter().flatten().copied().collect::<Vec<_>>()),
                });
                (m.key.to_owned(), value)
            })
            .collect::<serde_json::Map<_, _>>();
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                let mut v = json!(r);
                v["run_dir"] = json!(crate::short(&r.run_dir));
                v
            })
            .collect();
        json!({
            "date": chrono::Utc::now().to_rfc3339(),
            "machine": {
                "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
                "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_owned()).unwrap_or_default(),
            },
            "config": self.config,
            "memory_limit": crate::MEMORY,
            "sides": {
                "off": "release profile, share-server's default features: jemalloc without profiling; no profiles",
                "on": "`profiling` profile (release, debug = \"limited\"), jemalloc-prof (lg_prof_sample:19); a profile after each new allocator-resident peak",
            },
            "medians": { "off": medians(false), "on": medians(true) },
            "ratios_on_over_off": ratios,
            "runs": runs,
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

fn ratio(on: Option<f64>, off: Option<f64>) -> Option<f64> {
    match (on, off) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}
