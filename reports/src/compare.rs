//! Two runs side by side on the same axes, with the differences of their
//! peaks: "did this change make memory better?" answered with one picture
//! and one table (e.g. before and after a fix, or two allocators).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;
use crate::error::ReportError;
use crate::heap::{self, growth, growth::Grown};
use crate::html::{self, VerdictView};
use crate::plot::{self, Axes};
use crate::summary;
use crate::timeline::Layer;
use crate::verdict::Verdict;

const MIB: f64 = 1024.0 * 1024.0;

pub const COMPARE_HTML: &str = "compare.html";
pub const COMPARE_MD: &str = "compare.md";
pub const COMPARE_JSON: &str = "compare.json";
pub const COMPARE_SVG: &str = "compare.svg";
pub const COMPARE_PNG: &str = "compare.png";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: RunRef,
    pub b: RunRef,
    /// Per layer: both peaks and B − A.
    pub peaks: Vec<PeakDiff>,
    /// Heap sites that grew most from A's heap peak to B's (both runs
    /// need heap profiles); else why not, in `heap_note`.
    #[serde(default)]
    pub heap_grew: Vec<Grown>,
    #[serde(default)]
    pub heap_note: Option<String>,
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub dir: PathBuf,
    pub name: String,
    pub verdict: Verdict,
    pub headline: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakDiff {
    pub layer: String,
    pub a_bytes: Option<u64>,
    pub b_bytes: Option<u64>,
    /// B − A.
    pub diff_bytes: Option<i64>,
    /// (B − A) / A.
    pub diff_share: Option<f64>,
}

fn run_ref(a: &Analysis) -> RunRef {
    RunRef {
        dir: a.run.dir.clone(),
        name: a.run.name(),
        verdict: a.diagnosis.verdict,
        headline: a.diagnosis.headline.clone(),
    }
}

/// Peak differences, B − A, for every layer either run has.
pub fn peak_diffs(a: &Analysis, b: &Analysis) -> Vec<PeakDiff> {
    Layer::PEAKS
        .iter()
        .filter_map(|l| {
            let (pa, pb) = (a.peak(*l).map(|p| p.0), b.peak(*l).map(|p| p.0));
            if pa.is_none() && pb.is_none() {
                return None;
            }
            let diff = pa.zip(pb).map(|(x, y)| y as i64 - x as i64);
            Some(PeakDiff {
                layer: l.key().into(),
                a_bytes: pa,
                b_bytes: pb,
                diff_bytes: diff,
                diff_share: diff
                    .zip(pa)
                    .filter(|(_, x)| *x > 0)
                    .map(|(d, x)| d as f64 / x as f64),
            })
        })
        .collect()
}

/// The sites that grew most from A's peak heap profile to B's, or why there
/// are none to show.
pub fn heap_growth(a: &Analysis, b: &Analysis) -> (Vec<Grown>, Option<String>) {
    let sites = |x: &Analysis| -> Result<Vec<growth::SiteBytes>, String> {
        let h = x.heap.as_ref().ok_or_else(|| {
            format!(
                "{} has no heap profiles (run it with --heap-profiles)",
                x.run.name()
            )
        })?;
        heap::peak_sites(&x.run.dir, h).map_err(|e| format!("{}: {e}", x.run.name()))
    };
    match (sites(a), sites(b)) {
        (Ok(a), Ok(b)) => {
            let grown = growth::grown(&a, &b, growth::TOP_GROWN);
            let note = grown
                .is_empty()
                .then(|| "no heap site grew by 1 MiB or more from A's peak to B's".to_owned());
            (grown, note)
        }
        (Err(e), _) | (_, Err(e)) => (Vec::new(), Some(e)),
    }
}

pub fn write(a: &Analysis, b: &Analysis, out: &Path) -> Result<Comparison, ReportError> {
    std::fs::create_dir_all(out).map_err(ReportError::io("creating", out))?;
    let (fa, fb) = (a.figure(), b.figure());
    let axes = Axes::of(&fa).union(Axes::of(&fb));
    let pair = [(&fa, axes), (&fb, axes)];
    let svg = plot::svg(&pair)?;
    let svg_path = out.join(COMPARE_SVG);
    std::fs::write(&svg_path, &svg).map_err(ReportError::io("writing", &svg_path))?;
    plot::png(&pair, &out.join(COMPARE_PNG))?;

    let (heap_grew, heap_note) = heap_growth(a, b);
    let comparison = Comparison {
        a: run_ref(a),
        b: run_ref(b),
        peaks: peak_diffs(a, b),
        heap_grew,
        heap_note,
        out_dir: out.to_owned(),
    };
    let json_path = out.join(COMPARE_JSON);
    let json = serde_json::to_string_pretty(&comparison).map_err(|cause| ReportError::Json {
        path: json_path.clone(),
        cause,
    })?;
    std::fs::write(&json_path, json + "\n").map_err(ReportError::io("writing", &json_path))?;
    let md = markdown(&comparison);
    let md_path = out.join(COMPARE_MD);
    std::fs::write(&md_path, &md).map_err(ReportError::io("writing", &md_path))?;
    summary::append_step_summary(&md)?;
    let html_path = out.join(COMPARE_HTML);
    std::fs::write(&html_path, page(&comparison, &svg)?)
        .map_err(ReportError::io("writing", &html_path))?;
    Ok(comparison)
}

fn cell(v: Option<u64>) -> String {
    v.map_or("–".into(), |b| format!("{:.1}", b as f64 / MIB))
}

fn diff_cell(d: &PeakDiff) -> (String, String) {
    (
        d.diff_bytes
            .map_or("–".into(), |x| format!("{:+.1}", x as f64 / MIB)),
        d.diff_share
            .map_or("–".into(), |s| format!("{:+.0} %", s * 100.0)),
    )
}

fn markdown(c: &Comparison) -> String {
    let mut md = format!(
        "## Memory comparison\n\n- A: {} — **{}**: {}\n- B: {} — **{}**: {}\n\n\
         | layer | A peak (MiB) | B peak (MiB) | B − A (MiB) | B − A |\n| --- | ---: | ---: | ---: | ---: |\n",
        c.a.name, c.a.verdict, c.a.headline, c.b.name, c.b.verdict, c.b.headline
    );
    for d in &c.peaks {
        let (diff, share) = diff_cell(d);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {diff} | {share} |",
            d.layer,
            cell(d.a_bytes),
            cell(d.b_bytes)
        );
    }
    md.push_str(&grown_markdown(c));
    md
}

/// The heap sites that grew most from A to B, as a table (or why none).
fn grown_markdown(c: &Comparison) -> String {
    let mut md = String::from("\n### What grew in the heap, A's peak → B's\n\n");
    if let Some(note) = &c.heap_note {
        let _ = writeln!(md, "{note}.");
    }
    if c.heap_grew.is_empty() {
        return md;
    }
    md.push_str("| site | A (MiB) | B (MiB) | B − A (MiB) |\n| --- | ---: | ---: | ---: |\n");
    for g in &c.heap_grew {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {:+.1} |",
            g.name,
            cell(Some(g.from_bytes)),
            cell(Some(g.to_bytes)),
            g.delta_bytes() as f64 / MIB
        );
    }
    md
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage<'a> {
    title: String,
    a_name: &'a str,
    b_name: &'a str,
    /// Tag (A, B), name and verdict of each run.
    runs: [(&'static str, &'a str, VerdictView); 2],
    /// Both figures from our own plot code (`plot::svg`), inserted unescaped.
    svg: &'a str,
    rows: Vec<PeakRow<'a>>,
    /// (site, A MiB, B MiB, B − A MiB).
    grew: Vec<(String, String, String, String)>,
    heap_note: Option<&'a str>,
}

struct PeakRow<'a> {
    layer: &'a str,
    a_mib: String,
    b_mib: String,
    diff_mib: String,
    diff_share: String,
}

fn page(c: &Comparison, svg: &str) -> Result<String, ReportError> {
    fn run<'r>(tag: &'static str, r: &'r RunRef) -> (&'static str, &'r str, VerdictView) {
        let verdict = VerdictView::new(r.verdict, &r.headline, &[]);
        (tag, &r.name, verdict)
    }
    let page = ComparePage {
        title: format!("{} vs {}", c.a.name, c.b.name),
        a_name: &c.a.name,
        b_name: &c.b.name,
        runs: [run("A", &c.a), run("B", &c.b)],
        svg,
        rows: c
            .peaks
            .iter()
            .map(|d| {
                let (diff_mib, diff_share) = diff_cell(d);
                PeakRow {
                    layer: &d.layer,
                    a_mib: cell(d.a_bytes),
                    b_mib: cell(d.b_bytes),
                    diff_mib,
                    diff_share,
                }
            })
            .collect(),
        grew: c
            .heap_grew
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    cell(Some(g.from_bytes)),
                    cell(Some(g.to_bytes)),
                    format!("{:+.1}", g.delta_bytes() as f64 / MIB),
                )
            })
            .collect(),
        heap_note: c.heap_note.as_deref(),
    };
    html::render(&page, "compare.html")
}
