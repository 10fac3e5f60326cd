//! `summary.json` (for machines: the gate reads it) and `summary.md` (for
//! people: appended to `$GITHUB_STEP_SUMMARY` in CI). The JSON schema is
//! documented in `docs/reports.md`; `schema` changes when a field changes
//! meaning or goes away (adding a field does not change it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;
use crate::cause::{self, Cause};
use crate::correlate::LayerCorrelation;
use crate::error::ReportError;
use crate::files::{self, FilesSummary};
use crate::heap::HeapSummary;
use crate::processes::{self, GroupSummary};
use crate::suspects::{Finding, Suspect};
use crate::timeline::Layer;
use crate::verdict::Verdict;
use run_format::HealthSummary;

pub const SCHEMA: u32 = 1;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    /// `crash`, `pressure`, `bloat` or `healthy`.
    pub verdict: Verdict,
    pub headline: String,
    pub reasons: Vec<String>,
    pub run: RunFacts,
    /// Per layer (stable keys, see docs/reports.md): the highest figure and when.
    pub peaks: BTreeMap<String, Peak>,
    /// Each layer against the machine's usage.
    pub layers: Vec<LayerCorrelation>,
    /// Bytes the server received while uploads ran.
    pub uploaded_bytes: u64,
    pub suspects: Vec<Suspect>,
    /// Keys of the layers that grew linearly with the bytes uploaded.
    pub leaks: Vec<String>,
    pub files: Files,
    /// Machine anon against time over the load phases less any `warm-up`, MiB per hour (see `drift`).
    #[serde(default)]
    pub anon_slope_mib_per_hour: Option<f64>,
    /// Allocator resident against time over the same window, MiB per hour.
    #[serde(default)]
    pub allocator_slope_mib_per_hour: Option<f64>,
    /// Seconds of run those slopes cover.
    #[serde(default)]
    pub slope_window_s: f64,
    /// The rig's `/healthz` probes in numbers (absent for runs without them).
    #[serde(default)]
    pub health: Option<HealthSummary>,
    /// The top allocation sites at the peak (runs with heap profiles).
    #[serde(default)]
    pub heap: Option<HeapSummary>,
    /// What grew most during the run, named (see `cause`).
    #[serde(default)]
    pub cause: Option<Cause>,
    /// The server's files outside the heap at their peak (local modes; not
    /// `files`, which names the report's own files).
    #[serde(default)]
    pub outside_heap: Option<FilesSummary>,
    /// The processes of the machine's group by name (`cgroup` mode runs of
    /// rigs that list them): what a wrapper such as Litestream takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    pub dir: PathBuf,
    pub name: String,
    pub scenario: Option<String>,
    /// `cgroup`, `machine`, `none`, `vm` (or `unknown` without meta.json).
    pub mode: String,
    /// `vm` mode: qemu's accelerator, `kvm` or `tcg` (software emulation,
    /// whose durations and rates are not comparable to native runs).
    #[serde(default)]
    pub accel: Option<String>,
    pub limit_bytes: Option<u64>,
    pub duration_s: f64,
    pub samples: usize,
    /// `outcome.json`'s verdict on the run (no OOM kill, server alive, phases ok).
    pub passed: Option<bool>,
    pub died_at_s: Option<f64>,
    pub exit: Option<String>,
    pub oom_kills: u64,
    pub interrupted: bool,
    pub git_revision: Option<String>,
    pub git_dirty: Option<bool>,
    pub allocator: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    pub bytes: u64,
    pub at_s: f64,
}

/// The files written, relative to the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Files {
    pub report_html: String,
    pub summary_md: String,
    pub summary_json: String,
    pub plot_svg: String,
    pub plot_png: String,
}

pub const REPORT_HTML: &str = "report.html";
pub const SUMMARY_MD: &str = "summary.md";
pub const SUMMARY_JSON: &str = "summary.json";
pub const PLOT_SVG: &str = "report.svg";
pub const PLOT_PNG: &str = "report.png";

impl RunFacts {
    /// What the run's durations and rates can be compared with.
    pub fn timing_note(&self) -> Option<&'static str> {
        match self.accel.as_deref()? {
            "tcg" => Some(
                "Ran in a qemu guest under TCG (software emulation): durations and rates are \
                 **not comparable to native runs**; memory figures are.",
            ),
            _ => Some("Ran in a qemu guest with KVM: timings are close to native."),
        }
    }
}

impl Summary {
    pub fn of(a: &Analysis) -> Summary {
        let run = &a.run;
        let drift = crate::drift::drift(&run.samples);
        let meta = run.meta.as_ref();
        Summary {
            schema: SCHEMA,
            verdict: a.diagnosis.verdict,
            headline: a.diagnosis.headline.clone(),
            reasons: a.diagnosis.reasons.clone(),
            run: RunFacts {
                dir: run.dir.clone(),
                name: run.name(),
                scenario: run.meta_text(|m| &m.scenario),
                mode: run.mode(),
                accel: run.meta_text(|m| m.machine.vm.as_ref().map_or("", |v| &v.accel)),
                limit_bytes: a.limit_bytes,
                duration_s: a.timeline.end_s(),
                samples: a.timeline.len(),
                passed: run.outcome.as_ref().map(|o| o.passed),
                died_at_s: a.ending.died_at_s,
                exit: a.ending.how.clone(),
                oom_kills: a.ending.oom_kills,
                interrupted: a.ending.interrupted,
                git_revision: meta.and_then(|m| m.git.revision.clone()),
                git_dirty: meta.and_then(|m| m.git.dirty),
                allocator: run.meta_text(|m| &m.server.allocator),
            },
            peaks: Layer::PEAKS
                .iter()
                .filter_map(|l| {
                    let (bytes, at_s) = a.peak(*l)?;
                    Some((l.key().to_owned(), Peak { bytes, at_s }))
                })
                .collect(),
            layers: a.correlations.clone(),
            uploaded_bytes: a.suspects.uploaded_bytes as u64,
            suspects: a.suspects.layers.clone(),
            leaks: a.suspects.leaks().map(|s| s.layer.clone()).collect(),
            files: Files {
                report_html: REPORT_HTML.into(),
                summary_md: SUMMARY_MD.into(),
                summary_json: SUMMARY_JSON.into(),
                plot_svg: PLOT_SVG.into(),
                plot_png: PLOT_PNG.into(),
            },
            anon_slope_mib_per_hour: drift.anon_mib_per_hour,
            allocator_slope_mib_per_hour: drift.allocator_mib_per_hour,
            slope_window_s: drift.window_s,
            health: (!run.health.is_empty()).then(|| {
                let limit = run
                    .outcome
                    .as_ref()
                    .and_then(|o| o.health.as_ref()?.max_latency_ms);
                HealthSummary::of(&run.health, limit)
            }),
            heap: a.heap.clone(),
            outside_heap: FilesSummary::of(meta),
            group: processes::summarise(&run.samples),
            cause: None,
        }
        .with_cause()
    }

    /// Names what grew most, from the heap and the files outside it.
    fn with_cause(mut self) -> Summary {
        self.cause = cause::of_run(self.heap.as_ref(), self.outside_heap.as_ref());
        self
    }

    /// The markdown summary: verdict, reasons, peaks, suspects.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Memory report: {} — **{}**\n\n{}\n",
            self.run.name,
            self.verdict.as_str().to_uppercase(),
            self.headline
        );
        for r in &self.reasons {
            let _ = writeln!(md, "- {r}");
        }
        if let Some(c) = &self.cause {
            let _ = writeln!(md, "\n**Where it went:** {}", c.text);
        }
        let _ = writeln!(
            md,
            "\nMachine: mode `{}`, limit {}, {:.1} s, {} samples.\n",
            self.run.mode,
            self.run
                .limit_bytes
                .map_or("none".into(), |l| format!("{:.0} MiB", l as f64 / MIB)),
            self.run.duration_s,
            self.run.samples
        );
        if let Some(note) = self.run.timing_note() {
            let _ = writeln!(md, "{note}\n");
        }
        if let Some(h) = &self.health {
            let _ = writeln!(md, "{}\n", health_text(h));
        }
        md.push_str(
            "| layer | peak (MiB) | at (s) | share of usage peak | r levels | r changes (lag) |\n",
        );
        md.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
        for key in ["machine_usage", "machine_working_set"] {
            if let Some(p) = self.peaks.get(key) {
                let _ = writeln!(
                    md,
                    "| {key} | {:.1} | {:.1} | | | |",
                    p.bytes as f64 / MIB,
                    p.at_s
                );
            }
        }
        for l in &self.layers {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                l.layer,
                l.peak_bytes
                    .map_or("–".into(), |b| format!("{:.1}", b as f64 / MIB)),
                l.peak_at_s.map_or("–".into(), |t| format!("{t:.1}")),
                l.share_of_usage_peak
                    .map_or("–".into(), |s| format!("{:.0} %", s * 100.0)),
                fmt_r(l.r_levels),
                match (l.r_changes, l.lag_ms) {
                    (Some(r), Some(lag)) => format!("{r:.2} ({lag} ms)"),
                    _ => "–".into(),
                }
            );
        }
        if self.suspects.is_empty() {
            let _ = writeln!(md, "\n{}", no_suspects_text(self));
        } else {
            let _ = writeln!(
                md,
                "\nSuspects: growth against the {:.2} GiB uploaded.\n",
                self.uploaded_bytes as f64 / GIB
            );
            md.push_str("| layer | MiB per GiB uploaded | r² | growth (MiB) | kept at the end (MiB) | finding |\n");
            md.push_str("| --- | ---: | ---: | ---: | ---: | --- |\n");
            for s in &self.suspects {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} | {:.2} | {:.1} | {} | {} |",
                    s.layer,
                    s.slope_mib_per_gib,
                    s.r2,
                    s.growth_bytes / MIB,
                    s.kept_bytes
                        .map_or("–".into(), |k| format!("{:.1}", k / MIB)),
                    finding_text(s.finding)
                );
            }
        }
        let per_hour = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:+.2}"));
        if self.slope_window_s < crate::drift::MIN_WINDOW.as_secs_f64() {
            let _ = writeln!(
                md,
                "\nDrift: too short to tell ({:.0} s of load, warm-up left out; a drift needs {} s).",
                self.slope_window_s,
                crate::drift::MIN_WINDOW.as_secs()
            );
        } else {
            let _ = writeln!(
                md,
                "\nDrift over {:.0} s of load (warm-up left out): anon {} MiB/h, allocator resident {} MiB/h.",
                self.slope_window_s,
                per_hour(self.anon_slope_mib_per_hour),
                per_hour(self.allocator_slope_mib_per_hour)
            );
        }
        if let Some(heap) = &self.heap {
            md.push_str(&heap_markdown(heap));
        }
        if let Some(outside) = &self.outside_heap {
            md.push_str(&outside_heap_markdown(outside));
        }
        if let Some(group) = &self.group {
            md.push_str(&processes::markdown(group));
        }
        let _ = writeln!(
            md,
            "\nFull report: `{}`",
            self.run.dir.join(&self.files.report_html).display()
        );
        md
    }
}

/// The heap at its peak: which profile, and its top sites as a table.
pub fn heap_markdown(h: &HeapSummary) -> String {
    let mut md = format!("\n{}\n", heap_text(h));
    if let Some(flame) = &h.flame_graph {
        let _ = writeln!(md, "\nFlame graph of the whole profile: `{flame}`.");
    }
    if !h.grew.is_empty() {
        md.push_str("\n| grew most, first profile → peak | from (MiB) | to (MiB) | Δ (MiB) |\n");
        md.push_str("| --- | ---: | ---: | ---: |\n");
        for g in &h.grew {
            let _ = writeln!(
                md,
                "| `{}` | {:.1} | {:.1} | {:+.1} |",
                g.name,
                g.from_bytes as f64 / MIB,
                g.to_bytes as f64 / MIB,
                g.delta_bytes() as f64 / MIB
            );
        }
    }
    if h.sites.is_empty() {
        return md;
    }
    md.push_str("\n| site | exclusive (MiB) | share | inclusive (MiB) | share |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for s in &h.sites {
        let _ = writeln!(
            md,
            "| `{}` | {:.1} | {:.0} % | {:.1} | {:.0} % |",
            s.name,
            s.exclusive_bytes as f64 / MIB,
            s.exclusive_share * 100.0,
            s.inclusive_bytes as f64 / MIB,
            s.inclusive_share * 100.0
        );
    }
    md
}

/// The files outside the heap at their peak: what grew, each kind, each group.
pub fn outside_heap_markdown(s: &FilesSummary) -> String {
    let mut md = format!("\n### Outside the heap\n\n{}\n", outside_heap_text(s));
    md.push_str("\n| kind | first sample (MiB) | at the peak (MiB) | growth (MiB) | lives in |\n");
    md.push_str("| --- | ---: | ---: | ---: | --- |\n");
    for g in &s.growth {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:+.1} | {} |",
            g.kind.as_str(),
            g.first_bytes as f64 / MIB,
            g.peak_bytes as f64 / MIB,
            g.growth_bytes as f64 / MIB,
            g.place.meaning()
        );
    }
    if s.groups.is_empty() {
        return md;
    }
    md.push_str("\n| kind | pattern | files | MiB | lives in | example |\n");
    md.push_str("| --- | --- | ---: | ---: | --- | --- |\n");
    for g in &s.groups {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {:.1} | {} | `{}` |",
            g.kind.as_str(),
            g.pattern,
            g.files,
            g.bytes as f64 / MIB,
            g.place.as_str(),
            g.example
        );
    }
    if s.groups_left_out > 0 {
        let _ = writeln!(md, "\n{} smaller groups left out.", s.groups_left_out);
    }
    md
}

/// One paragraph on the files at their peak, for the markdown and the HTML.
pub fn outside_heap_text(s: &FilesSummary) -> String {
    let temp = s
        .temp_dir
        .as_ref()
        .map_or(String::new(), |d| format!(" (temp dir `{}`)", d.display()));
    let head = format!(
        "The server's temp files, deleted-but-open files and WAL peaked at {:.1} MiB at {:.1} s{temp}.",
        s.peak_bytes as f64 / MIB,
        s.at_s
    );
    let cause = match files::largest_growth(s) {
        Some(g) => format!(" Largest growth since the first sample: {}.", g.phrase),
        None => format!(
            " None of them grew by {} MiB or more.",
            files::MIN_GROWTH_BYTES >> 20
        ),
    };
    format!(
        "{head}{cause} Files on a tmpfs are RAM charged to the cgroup that cannot be dropped; \
         files on disk are page cache, dropped once written back. The database is listed for \
         scale: its page cache is the product's data, not a cause."
    )
}

/// One paragraph on the peak profile, for the markdown and the HTML.
pub fn heap_text(h: &HeapSummary) -> String {
    let resident = h.allocator_resident_bytes.map_or(String::new(), |r| {
        format!("allocator resident {:.1} MiB, ", r as f64 / MIB)
    });
    let head = format!(
        "Heap at the peak: `{}` at {:.1} s ({resident}{:.1} MiB sampled live; {} profiles taken).",
        h.profile,
        h.at_s,
        h.sampled_bytes as f64 / MIB,
        h.profiles
    );
    match &h.error {
        Some(e) => format!("{head} Not readable: {e}"),
        None => format!(
            "{head} Allocation sites: the server's frames (`share_server::`) and SQLite's; a stack \
             whose leaf is in a library is charged to the nearest of them. Exclusive: bytes \
             allocated there; inclusive: on the stack. Sampled estimates (one sample per 512 KiB)."
        ),
    }
}

/// Why there is no slope to show.
pub fn no_suspects_text(s: &Summary) -> String {
    if s.uploaded_bytes == 0 {
        "No upload in this run: no slope against the bytes uploaded.".into()
    } else {
        format!(
            "Only {:.1} MiB uploaded: too little for a slope against the bytes uploaded (at least {:.0} MiB).",
            s.uploaded_bytes as f64 / MIB,
            crate::suspects::MIN_UPLOAD_BYTES / MIB
        )
    }
}

pub fn fmt_r(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

pub fn finding_text(f: Finding) -> &'static str {
    match f {
        Finding::Leak => "**linear with uploads: leak signature**",
        Finding::Grows => "grows with uploads (not linear)",
        Finding::Flat => "flat",
    }
}

/// Writes `summary.json` and `summary.md`, and appends the markdown to
/// `$GITHUB_STEP_SUMMARY` when CI set it.
pub fn write(summary: &Summary, dir: &Path) -> Result<(), ReportError> {
    let json_path = dir.join(SUMMARY_JSON);
    let json = serde_json::to_string_pretty(summary).map_err(|cause| ReportError::Json {
        path: json_path.clone(),
        cause,
    })?;
    std::fs::write(&json_path, json + "\n").map_err(ReportError::io("writing", &json_path))?;
    let md = summary.to_markdown();
    let md_path = dir.join(SUMMARY_MD);
    std::fs::write(&md_path, &md).map_err(ReportError::io("writing", &md_path))?;
    append_step_summary(&md)
}

pub(crate) fn append_step_summary(md: &str) -> Result<(), ReportError> {
    match std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        Some(path) => append_to(&PathBuf::from(path), md),
        None => Ok(()),
    }
}

/// Appends `md` and a blank line to `path`, creating it: several reports in
/// one CI step add up instead of replacing each other.
fn append_to(path: &Path, md: &str) -> Result<(), ReportError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(ReportError::io("opening", path))?;
    writeln!(file, "{md}").map_err(ReportError::io("appending to", path))
}

/// One line on the `/healthz` probes, for the markdown and the HTML.
pub fn health_text(h: &HealthSummary) -> String {
    let limit = h.max_latency_ms.map_or(String::new(), |m| {
        format!(
            "; limit {m:.0} ms: {}",
            if h.passed {
                "met".to_owned()
            } else {
                format!("**{} probes failed or over it**", h.over_limit)
            }
        )
    });
    format!(
        "Health: {} `/healthz` probes (a fresh connection each): p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms, {} failed (a failure counts as its timeout){limit}.",
        h.probes, h.p50_ms, h.p99_ms, h.max_ms, h.failures
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_summaries_are_appended_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step-summary.md");
        append_to(&path, "## one").unwrap();
        append_to(&path, "## two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "## one\n## two\n");
    }
}
