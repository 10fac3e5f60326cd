//! The figures of each round, their medians, the ratios against the targets,
//! the layers of share-server's peak, and the JSON copy.

use anyhow::{Context, Result};

use crate::contender::Kind;
use crate::layers::Layers;

/// Targets of issue 21: share-server / dufs at most this, per figure.
const PEAK_RSS_RATIO: f64 = 1.5;
const PEAK_ANON_RATIO: f64 = 2.0;
const UPLOAD_RATIO: f64 = 1.0;
const DOWNLOAD_RATIO: f64 = 0.7;
/// share-server's idle RSS after start-up must be under this (MiB).
const IDLE_RSS_MIB: f64 = 11.0;

/// One server, one round.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Figures {
    pub(crate) idle_rss_kib: u64,
    pub(crate) peak_rss_kib: u64,
    pub(crate) peak_anon_kib: u64,
    pub(crate) upload_seconds: f64,
    pub(crate) download_seconds: f64,
}

impl Figures {
    pub(crate) fn line(&self) -> String {
        format!(
            "idle RSS {:5.1} MiB  peak RSS {:5.1} MiB  peak anon {:5.1} MiB  upload {:5.2} s  download {:5.2} s",
            mib(self.idle_rss_kib),
            mib(self.peak_rss_kib),
            mib(self.peak_anon_kib),
            self.upload_seconds,
            self.download_seconds
        )
    }
}

#[derive(Default, serde::Serialize)]
pub(crate) struct Report {
    share_server: Vec<Figures>,
    dufs: Vec<Figures>,
    pub(crate) layers: Option<Layers>,
}

/// A figure's name, how to read it from a round, and its target.
struct Row {
    name: &'static str,
    unit: &'static str,
    of: fn(&Figures) -> f64,
    target: Option<f64>,
}

const ROWS: [Row; 5] = [
    Row {
        name: "idle RSS",
        unit: "MiB",
        of: |f| mib(f.idle_rss_kib),
        target: None,
    },
    Row {
        name: "peak RSS (VmHWM)",
        unit: "MiB",
        of: |f| mib(f.peak_rss_kib),
        target: Some(PEAK_RSS_RATIO),
    },
    Row {
        name: "peak anon (RssAnon)",
        unit: "MiB",
        of: |f| mib(f.peak_anon_kib),
        target: Some(PEAK_ANON_RATIO),
    },
    Row {
        name: "3 uploads, wall",
        unit: "s",
        of: |f| f.upload_seconds,
        target: Some(UPLOAD_RATIO),
    },
    Row {
        name: "3 downloads, wall",
        unit: "s",
        of: |f| f.download_seconds,
        target: Some(DOWNLOAD_RATIO),
    },
];

impl Report {
    pub(crate) fn add(&mut self, kind: Kind, figures: Figures) {
        match kind {
            Kind::ShareServer => self.share_server.push(figures),
            Kind::Dufs => self.dufs.push(figures),
        }
    }

    pub(crate) fn print(&self) {
        println!();
        println!(
            "{:<22} {:>20} {:>20} {:>7}  target",
            "figure (median, range)", "share-server", "dufs", "ratio"
        );
        for row in &ROWS {
            let ours = spread(&self.share_server, row.of);
            let theirs = spread(&self.dufs, row.of);
            let ratio = ours.0 / theirs.0;
            let verdict = match row.target {
                Some(t) if ratio <= t => format!("<= {t:.2}  PASS"),
                Some(t) => format!("<= {t:.2}  MISS"),
                None => String::new(),
            };
            println!(
                "{:<22} {:>20} {:>20} {:>6.2}x  {verdict}",
                row.name,
                fmt_spread(ours, row.unit),
                fmt_spread(theirs, row.unit),
                ratio
            );
        }
        let idle = spread(&self.share_server, ROWS[0].of).0;
        let verdict = if idle < IDLE_RSS_MIB { "PASS" } else { "MISS" };
        println!("share-server idle RSS {idle:.1} MiB (target < {IDLE_RSS_MIB:.0} MiB): {verdict}");
        if let Some(l) = &self.layers {
            println!();
            println!("share-server at its peak anon during the uploads, by layer (MiB):");
            println!("  RSS                     {:6.1}", mib(l.rss_kib));
            println!("  file pages (binary, libs) {:4.1}", mib(l.rss_file_kib));
            println!("  anon                    {:6.1}", mib(l.rss_anon_kib));
            println!(
                "    allocated (live)      {:6.1}  (of which SQLite {:.1}; jemalloc's resident {:.1} is an upper bound)",
                mib(l.allocator_allocated_kib),
                mib(l.sqlite_kib),
                mib(l.allocator_resident_kib)
            );
            println!(
                "    thread stacks         {:6.1}  ({} threads)",
                mib(l.stacks_kib),
                l.threads
            );
            println!(
                "    the rest              {:6.1}  (freed pages not yet returned, jemalloc metadata, TLS, libc)",
                l.other_anon_kib() as f64 / 1024.0
            );
        }
    }

    pub(crate) fn write_json(&self) -> Result<()> {
        let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            std::path::PathBuf::from,
        );
        let path = dir.join("bench-vs-dufs.json");
        let text = serde_json::to_string_pretty(self).context("serialising the figures")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("figures: {}", path.display());
        Ok(())
    }
}

/// Median, min, max of a figure over rounds.
fn spread(rounds: &[Figures], of: fn(&Figures) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = rounds.iter().map(of).collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    };
    (
        median,
        values.first().copied().unwrap_or(f64::NAN),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

fn fmt_spread((median, min, max): (f64, f64, f64), unit: &str) -> String {
    format!("{median:.2} ({min:.1}-{max:.1}) {unit}")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
