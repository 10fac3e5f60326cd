//! Two runs side by side on the same axes, with the differences of their
//! peaks: "did this change make memory better?" answered with one picture
//! and one table (e.g. before and after a fix, or two allocators).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;
use crate::error::ReportError;
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

pub fn write(a: &Analysis, b: &Analysis, out: &Path) -> Result<Comparison, ReportError> {
    std::fs::create_dir_all(out).map_err(ReportError::io("creating", out))?;
    let (fa, fb) = (a.figure(), b.figure());
    let axes = Axes::of(&fa).union(Axes::of(&fb));
    let pair = [(&fa, axes), (&fb, axes)];
    let svg = plot::svg(&pair)?;
    let svg_path = out.join(COMPARE_SVG);
    std::fs::write(&svg_path, &svg).map_err(ReportError::io("writing", &svg_path))?;
    plot::png(&pair, &out.join(COMPARE_PNG))?;

    let comparison = Comparison {
        a: run_ref(a),
        b: run_ref(b),
        peaks: peak_diffs(a, b),
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
    };
    html::render(&page, "compare.html")
}
