//! `report.html`: one self-contained page (inline SVG and CSS, no script,
//! no network), verdict first, because the question it answers is "is this
//! a crash coming or a false alarm?". Then the plots, the tables of peaks
//! and slopes, the run's facts and links to goose's own reports.
//!
//! The markup is in askama templates (`reports/templates/`), which escape
//! every value; this module builds their view models: already-formatted
//! strings and numbers.

use askama::Template;
use run_format::{PhaseOutcome, PhaseSummary};
use serde_json::Value;

use crate::analysis::Analysis;
use crate::error::ReportError;
use crate::files::FilesSummary;
use crate::heap::{HeapSummary, SiteKind};
use crate::summary::{self, Summary};
use crate::suspects::{self, Finding};
use crate::timeline::Layer;
use crate::verdict::{self, Verdict};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

pub fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Crash => "#c62828",
        Verdict::Pressure => "#ef6c00",
        Verdict::Bloat => "#1565c0",
        Verdict::Healthy => "#2e7d32",
    }
}

/// The verdict box: badge, headline and reasons (`macros.html`).
pub(crate) struct VerdictView {
    pub word: &'static str,
    pub color: &'static str,
    pub headline: String,
    pub reasons: Vec<String>,
}

impl VerdictView {
    pub(crate) fn new(v: Verdict, headline: &str, reasons: &[String]) -> VerdictView {
        VerdictView {
            word: v.as_str(),
            color: verdict_color(v),
            headline: headline.to_owned(),
            reasons: reasons.to_vec(),
        }
    }
}

/// Renders a page template; a failure names the page.
pub(crate) fn render(page: &impl Template, what: &'static str) -> Result<String, ReportError> {
    page.render()
        .map_err(|cause| ReportError::Render { what, cause })
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    title: String,
    name: &'a str,
    verdict: VerdictView,
    mode: &'a str,
    limit: String,
    duration_s: String,
    samples: usize,
    uploaded_gib: String,
    timing_note: Option<String>,
    health: Option<String>,
    /// The figure from our own plot code (`plot::svg`), inserted unescaped.
    svg: &'a str,
    plot_png: &'a str,
    plot_svg: &'a str,
    layers: Vec<LayerRow>,
    suspects: SuspectsView,
    /// `None` without `outcome.json`.
    phases: Option<Vec<PhaseRow>>,
    /// `meta.json` flattened to `a.b.c = value` rows; `None` without it.
    meta: Option<Vec<(String, String)>>,
    scenario_text: Option<&'a str>,
    loadgen_files: Vec<String>,
    heap: Option<HeapView>,
    /// What grew most, named (`summary.json`'s `cause`).
    cause: Option<String>,
    outside_heap: Option<OutsideHeapView>,
    rules: Rules,
}

/// The server's files outside the heap at their peak.
struct OutsideHeapView {
    text: String,
    /// kind, first MiB, peak MiB, growth MiB, lives in.
    kinds: Vec<[String; 5]>,
    /// kind, pattern, files, MiB, lives in, example.
    groups: Vec<[String; 6]>,
}

/// The heap profile at the peak and its top sites.
struct HeapView {
    text: String,
    profile: String,
    flame_graph: Option<String>,
    sites: Vec<SiteRow>,
    /// (site, from MiB, to MiB, Δ MiB), first profile → peak.
    grew: Vec<(String, String, String, String)>,
}

struct SiteRow {
    name: String,
    kind: &'static str,
    exclusive_mib: String,
    exclusive_share: String,
    inclusive_mib: String,
    inclusive_share: String,
}

struct LayerRow {
    label: &'static str,
    peak_mib: String,
    at_s: String,
    share: String,
    r_levels: String,
    r_changes: String,
    lag_ms: String,
}

struct SuspectsView {
    uploaded_gib: String,
    grows_mib_per_gib: String,
    linear_r2: String,
    /// Why there is no table, when `rows` is empty.
    none_text: String,
    rows: Vec<SuspectRow>,
}

struct SuspectRow {
    leak: bool,
    label: String,
    slope: String,
    r2: String,
    growth_mib: String,
    kept_mib: String,
    finding: &'static str,
}

struct PhaseRow {
    name: String,
    from_s: String,
    to_s: String,
    ok: bool,
    requests: String,
    failures: String,
    mb_sent: String,
    mb_received: String,
    error: String,
}

/// The thresholds the verdict rules quote, in per cent.
struct Rules {
    near: String,
    psi: String,
    anon: String,
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / MIB)
}

pub fn report(a: &Analysis, s: &Summary, svg: &str) -> Result<String, ReportError> {
    let page = ReportPage {
        title: format!("{} — {}", s.run.name, s.verdict),
        name: &s.run.name,
        verdict: VerdictView::new(s.verdict, &s.headline, &s.reasons),
        mode: &s.run.mode,
        limit: s
            .run
            .limit_bytes
            .map_or("none".into(), |l| format!("{} MiB", mib(l as f64))),
        duration_s: format!("{:.1}", s.run.duration_s),
        samples: s.run.samples,
        uploaded_gib: format!("{:.2}", s.uploaded_bytes as f64 / GIB),
        timing_note: s.run.timing_note().map(|n| n.replace("**", "")),
        health: s
            .health
            .as_ref()
            .map(|h| summary::health_text(h).replace("**", "").replace('`', "")),
        svg,
        plot_png: &s.files.plot_png,
        plot_svg: &s.files.plot_svg,
        layers: layer_rows(s),
        suspects: suspects_view(s),
        phases: phase_rows(a),
        meta: a.run.meta.as_ref().map(|meta| {
            let mut rows = Vec::new();
            // Back to JSON: its keys, sorted, name the rows.
            if let Ok(mut value) = serde_json::to_value(meta) {
                // Profiles and file groups have their own sections: their count is enough here.
                for key in ["/heap_profiles/profiles", "/files_at_peak/groups"] {
                    if let Some(list) = value.pointer_mut(key) {
                        *list = Value::from(list.as_array().map_or(0, Vec::len));
                    }
                }
                flatten("", &value, &mut rows);
            }
            rows
        }),
        scenario_text: a.run.scenario_text.as_deref(),
        loadgen_files: a
            .run
            .loadgen_files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect(),
        heap: s.heap.as_ref().map(heap_view),
        cause: s.cause.as_ref().map(|c| c.text.replace('`', "")),
        outside_heap: s.outside_heap.as_ref().map(outside_heap_view),
        rules: Rules {
            near: format!("{:.0}", verdict::NEAR_LIMIT * 100.0),
            psi: format!("{:.0}", verdict::PSI_SOME_AVG10),
            anon: format!("{:.0}", verdict::ANON_FAR_BELOW * 100.0),
        },
    };
    render(&page, "report.html")
}

fn layer_rows(s: &Summary) -> Vec<LayerRow> {
    Layer::PEAKS
        .iter()
        .filter_map(|layer| {
            let p = s.peaks.get(layer.key())?;
            let c = s.layers.iter().find(|c| c.layer == layer.key());
            Some(LayerRow {
                label: layer.label(),
                peak_mib: mib(p.bytes as f64),
                at_s: format!("{:.1}", p.at_s),
                share: c
                    .and_then(|c| c.share_of_usage_peak)
                    .map_or(String::new(), |v| format!("{:.0} %", v * 100.0)),
                r_levels: c.map_or(String::new(), |c| summary::fmt_r(c.r_levels)),
                r_changes: c.map_or(String::new(), |c| summary::fmt_r(c.r_changes)),
                lag_ms: c
                    .and_then(|c| c.lag_ms)
                    .map_or(String::new(), |l| l.to_string()),
            })
        })
        .collect()
}

fn suspects_view(s: &Summary) -> SuspectsView {
    SuspectsView {
        uploaded_gib: format!("{:.2}", s.uploaded_bytes as f64 / GIB),
        grows_mib_per_gib: suspects::GROWS_MIB_PER_GIB.to_string(),
        linear_r2: suspects::LINEAR_R2.to_string(),
        none_text: summary::no_suspects_text(s),
        rows: s
            .suspects
            .iter()
            .map(|x| SuspectRow {
                leak: x.finding == Finding::Leak,
                label: x.label.clone(),
                slope: format!("{:.1}", x.slope_mib_per_gib),
                r2: format!("{:.2}", x.r2),
                growth_mib: mib(x.growth_bytes),
                kept_mib: x.kept_bytes.map_or("–".into(), mib),
                finding: match x.finding {
                    Finding::Leak => "linear growth with bytes uploaded: the leak signature",
                    Finding::Grows => "grows with uploads, not in a straight line",
                    Finding::Flat => "flat",
                },
            })
            .collect(),
    }
}

/// A phase's name, marked when it ran in the background (beside the phases after it).
fn phase_name(p: &PhaseOutcome) -> String {
    if p.background {
        format!("{} (background)", p.name)
    } else {
        p.name.clone()
    }
}

/// The phases of `outcome.json`; `None` when the rig did not write it.
fn phase_rows(a: &Analysis) -> Option<Vec<PhaseRow>> {
    let phases = &a.run.outcome.as_ref()?.phases;
    let rows = phases.iter().map(|p| {
        let cell = |figure: fn(&PhaseSummary) -> u64, scale: f64| {
            p.summary
                .as_ref()
                .map_or("–".into(), |s| format!("{:.0}", figure(s) as f64 / scale))
        };
        PhaseRow {
            name: phase_name(p),
            from_s: format!("{:.1}", p.started_ms as f64 / 1000.0),
            to_s: format!("{:.1}", p.ended_ms as f64 / 1000.0),
            ok: p.ok,
            requests: cell(|s| s.requests, 1.0),
            failures: cell(|s| s.failures, 1.0),
            mb_sent: cell(|s| s.bytes_sent, 1e6),
            mb_received: cell(|s| s.bytes_received, 1e6),
            error: p.error.clone().unwrap_or_default(),
        }
    });
    Some(rows.collect())
}

/// Leaf values of a JSON object as `a.b.c = value` rows.
fn heap_view(h: &HeapSummary) -> HeapView {
    let share = |v: f64| format!("{:.0} %", v * 100.0);
    HeapView {
        text: summary::heap_text(h).replace('`', ""),
        profile: h.profile.clone(),
        flame_graph: h.flame_graph.clone(),
        grew: h
            .grew
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    mib(g.from_bytes as f64),
                    mib(g.to_bytes as f64),
                    format!("{:+.1}", g.delta_bytes() as f64 / (1024.0 * 1024.0)),
                )
            })
            .collect(),
        sites: h
            .sites
            .iter()
            .map(|s| SiteRow {
                name: s.name.clone(),
                kind: match s.kind {
                    SiteKind::Server => "server",
                    SiteKind::Sqlite => "SQLite",
                    SiteKind::Other => "",
                },
                exclusive_mib: mib(s.exclusive_bytes as f64),
                exclusive_share: share(s.exclusive_share),
                inclusive_mib: mib(s.inclusive_bytes as f64),
                inclusive_share: share(s.inclusive_share),
            })
            .collect(),
    }
}

fn outside_heap_view(f: &FilesSummary) -> OutsideHeapView {
    OutsideHeapView {
        text: summary::outside_heap_text(f).replace('`', ""),
        kinds: f
            .growth
            .iter()
            .map(|g| {
                [
                    g.kind.as_str().to_owned(),
                    mib(g.first_bytes as f64),
                    mib(g.peak_bytes as f64),
                    format!("{:+.1}", g.growth_bytes as f64 / MIB),
                    g.place.meaning().to_owned(),
                ]
            })
            .collect(),
        groups: f
            .groups
            .iter()
            .map(|g| {
                [
                    g.kind.as_str().to_owned(),
                    g.pattern.clone(),
                    g.files.to_string(),
                    mib(g.bytes as f64),
                    g.place.as_str().to_owned(),
                    g.example.clone(),
                ]
            })
            .collect(),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => out.push((
            prefix.to_owned(),
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => out.push((prefix.to_owned(), "–".into())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}
