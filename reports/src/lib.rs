//! reports: turns a rig run directory into an answer to the story's
//! hardest question, "is memory full of something that will crash the
//! server, or of page cache the kernel will drop?". [`report`] writes, into
//! the run directory, the plots, `report.html`, `summary.md` and
//! `summary.json` (whose `verdict` the gate reads); [`compare`] puts two runs
//! side by side.
//!
//! Module map:
//! - [`load`]: reading a run directory (samples, events, meta, outcome, loadgen files).
//! - [`timeline`]: the samples as columns, one per memory layer, on one time axis.
//! - [`stats`]: slopes, correlations, lags and peaks as pure functions on slices.
//! - [`correlate`]: each layer against the machine's usage (share of the peak, tracking).
//! - [`suspects`]: slopes against the bytes uploaded; the leak signature.
//! - [`drift`]: slopes against time (MiB per hour) for soaks.
//! - [`verdict`]: crash, pressure, bloat or healthy, with reasons.
//! - [`heap`]: the heap profile at the peak: top allocation sites, the server's and SQLite's.
//! - [`files`]: memory outside the heap named by files (temp, deleted but open, WAL) at their peak.
//! - [`processes`]: the processes of the machine's group (a wrapper such as
//!   Litestream beside the server): peaks by name, their anon against the cgroup's.
//! - [`analysis`]: all of the above for one run.
//! - [`plot`]: the three-panel figure, SVG and PNG.
//! - [`html`], [`summary`]: `report.html` (askama templates in `templates/`),
//!   `summary.md`, `summary.json`.
//! - [`compare`]: two runs on the same axes with the differences of their peaks.

pub mod analysis;
pub mod cause;
pub mod compare;
pub mod correlate;
pub mod drift;
mod error;
pub mod files;
pub mod heap;
pub mod html;
pub mod load;
pub mod plot;
pub mod processes;
pub mod stats;
pub mod summary;
pub mod suspects;
pub mod timeline;
pub mod verdict;

use std::path::Path;

pub use analysis::Analysis;
pub use compare::Comparison;
pub use error::ReportError;
pub use summary::Summary;
pub use verdict::Verdict;

/// Analyses the run in `run_dir` and writes its report there: `report.svg`,
/// `report.png`, `report.html`, `summary.md`, `summary.json` (and appends
/// the markdown to `$GITHUB_STEP_SUMMARY` when set).
pub fn report(run_dir: &Path) -> Result<Summary, ReportError> {
    let analysis = Analysis::of(load::load(run_dir)?);
    let mut summary = Summary::of(&analysis);
    if let Some(heap) = summary.heap.as_mut() {
        heap::write_flame_graph(run_dir, heap);
    }
    let fig = analysis.figure();
    let axes = plot::Axes::of(&fig);
    let svg = plot::svg(&[(&fig, axes)])?;
    let svg_path = run_dir.join(summary::PLOT_SVG);
    std::fs::write(&svg_path, &svg).map_err(ReportError::io("writing", &svg_path))?;
    plot::png(&[(&fig, axes)], &run_dir.join(summary::PLOT_PNG))?;
    let html_path = run_dir.join(summary::REPORT_HTML);
    std::fs::write(&html_path, html::report(&analysis, &summary, &svg)?)
        .map_err(ReportError::io("writing", &html_path))?;
    summary::write(&summary, run_dir)?;
    Ok(summary)
}

/// Puts runs `a` and `b` side by side on the same axes and writes
/// `compare.html`, `compare.svg`, `compare.png`, `compare.md` and
/// `compare.json` (peaks and their differences, B − A) into `out`.
pub fn compare(a: &Path, b: &Path, out: &Path) -> Result<Comparison, ReportError> {
    let a = Analysis::of(load::load(a)?);
    let b = Analysis::of(load::load(b)?);
    compare::write(&a, &b, out)
}
