//! `report.html`: one self-contained page (inline SVG and CSS, no script,
//! no network), verdict first, because the question it answers is "is this
//! a crash coming or a false alarm?". Then the plots, the tables of peaks
//! and slopes, the run's facts and links to goose's own reports.

use std::fmt::Write as _;

use serde_json::Value;

use crate::analysis::Analysis;
use crate::summary::{self, Summary};
use crate::suspects::{self, Finding};
use crate::timeline::Layer;
use crate::verdict::{self, Verdict};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Crash => "#c62828",
        Verdict::Pressure => "#ef6c00",
        Verdict::Bloat => "#1565c0",
        Verdict::Healthy => "#2e7d32",
    }
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; color: #222; background: #fff;
       margin: 24px auto; max-width: 1440px; padding: 0 16px; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.verdict { border-left: 8px solid; padding: 10px 18px; background: #f7f7f7; margin: 12px 0 20px; }
.badge { display: inline-block; color: #fff; font-weight: bold; padding: 2px 12px; border-radius: 4px;
         text-transform: uppercase; letter-spacing: 0.05em; margin-right: 10px; }
.headline { font-size: 1.15em; font-weight: bold; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; }
.leak { background: #ffebee; font-weight: bold; }
.plot svg { width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 0.88em; }
.muted { color: #666; font-size: 0.9em; }
";

/// A complete page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        esc(title)
    )
}

pub fn verdict_block(v: Verdict, headline: &str, reasons: &[String]) -> String {
    let mut out = format!(
        "<div class=\"verdict\" style=\"border-color: {c}\">\n<p><span class=\"badge\" style=\"background: {c}\">{v}</span>\
         <span class=\"headline\">{h}</span></p>\n<ul>\n",
        c = verdict_color(v),
        h = esc(headline),
    );
    for r in reasons {
        let _ = writeln!(out, "<li>{}</li>", esc(r));
    }
    out.push_str("</ul>\n</div>\n");
    out
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / MIB)
}

pub fn report(a: &Analysis, s: &Summary, svg: &str) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "<h1>Memory report: {}</h1>", esc(&s.run.name));
    b.push_str(&verdict_block(s.verdict, &s.headline, &s.reasons));
    let _ = writeln!(
        b,
        "<p class=\"muted\">Machine mode <b>{}</b>, limit <b>{}</b>, {:.1} s, {} samples; \
         {:.2} GiB uploaded. Verdict rules at the end of the page.</p>",
        esc(&s.run.mode),
        s.run
            .limit_bytes
            .map_or("none".into(), |l| format!("{} MiB", mib(l as f64))),
        s.run.duration_s,
        s.run.samples,
        s.uploaded_bytes as f64 / GIB
    );
    if let Some(note) = s.run.timing_note() {
        let _ = writeln!(
            b,
            "<p class=\"muted\"><b>{}</b></p>",
            esc(&note.replace("**", ""))
        );
    }
    if let Some(h) = &s.health {
        let _ = writeln!(
            b,
            "<p>{}</p>",
            esc(&crate::summary::health_text(h)
                .replace("**", "")
                .replace('`', ""))
        );
    }
    b.push_str("<h2>Plots</h2>\n<div class=\"plot\">\n");
    b.push_str(svg);
    let _ = writeln!(
        b,
        "</div>\n<p class=\"muted\">Also as <a href=\"{0}\">{0}</a> and <a href=\"{1}\">{1}</a>.</p>",
        s.files.plot_png, s.files.plot_svg
    );
    b.push_str(&layers_table(s));
    b.push_str(&suspects_table(s));
    b.push_str(&phases_table(a));
    b.push_str(&facts(a));
    b.push_str(&loadgen_links(a));
    b.push_str(&rules());
    page(&format!("{} — {}", s.run.name, s.verdict), &b)
}

fn layers_table(s: &Summary) -> String {
    let mut b = String::from(
        "<h2>Layers: peaks and how they track the machine's usage</h2>\n\
         <p class=\"muted\">Share: the layer's figure when the usage peaked, as a share of that peak. \
         r levels: correlation of the two series; r changes: of their per-sample changes, at the lag \
         where it is highest (positive: the layer moves first).</p>\n<table>\n\
         <tr><th>layer</th><th>peak (MiB)</th><th>at (s)</th><th>share of usage peak</th>\
         <th>r levels</th><th>r changes</th><th>lag (ms)</th></tr>\n",
    );
    for layer in Layer::PEAKS {
        let Some(p) = s.peaks.get(layer.key()) else {
            continue;
        };
        let c = s.layers.iter().find(|c| c.layer == layer.key());
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(layer.label()),
            mib(p.bytes as f64),
            p.at_s,
            c.and_then(|c| c.share_of_usage_peak)
                .map_or(String::new(), |v| format!("{:.0} %", v * 100.0)),
            c.map_or(String::new(), |c| summary::fmt_r(c.r_levels)),
            c.map_or(String::new(), |c| summary::fmt_r(c.r_changes)),
            c.and_then(|c| c.lag_ms)
                .map_or(String::new(), |l| l.to_string()),
        );
    }
    b.push_str("</table>\n");
    b
}

fn suspects_table(s: &Summary) -> String {
    let mut b = format!(
        "<h2>Suspects: what grew with the bytes uploaded</h2>\n<p class=\"muted\">Least-squares slope \
         of each layer against the {:.2} GiB the server received, over the samples while uploads ran. \
         A streaming server holds a fixed amount per upload in flight; a layer growing in a straight \
         line with the bytes uploaded (≥ {} MiB/GiB, r² ≥ {}) keeps something per byte: the classic \
         leak signature.</p>\n",
        s.uploaded_bytes as f64 / GIB,
        suspects::GROWS_MIB_PER_GIB,
        suspects::LINEAR_R2
    );
    if s.suspects.is_empty() {
        let _ = writeln!(b, "<p>{}</p>", esc(&summary::no_suspects_text(s)));
        return b;
    }
    b.push_str(
        "<table>\n<tr><th>layer</th><th>MiB per GiB uploaded</th><th>r²</th><th>growth (MiB)</th>\
         <th>kept at the end (MiB)</th><th>finding</th></tr>\n",
    );
    for x in &s.suspects {
        let leak = x.finding == Finding::Leak;
        let _ = writeln!(
            b,
            "<tr{}><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            if leak { " class=\"leak\"" } else { "" },
            esc(&x.label),
            x.slope_mib_per_gib,
            x.r2,
            mib(x.growth_bytes),
            x.kept_bytes.map_or("–".into(), mib),
            match x.finding {
                Finding::Leak => "linear growth with bytes uploaded: the leak signature",
                Finding::Grows => "grows with uploads, not in a straight line",
                Finding::Flat => "flat",
            }
        );
    }
    b.push_str("</table>\n");
    b
}

/// A phase's name, marked when it ran in the background (beside the phases after it).
fn phase_name(p: &Value) -> String {
    let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
    match p.get("background").and_then(Value::as_bool) {
        Some(true) => format!("{name} (background)"),
        _ => name.to_owned(),
    }
}

fn phases_table(a: &Analysis) -> String {
    let mut b = String::from("<h2>Phases</h2>\n");
    let phases = a
        .run
        .outcome
        .as_ref()
        .and_then(|o| o.get("phases"))
        .and_then(Value::as_array);
    let Some(phases) = phases else {
        b.push_str("<p>No outcome.json: the rig did not finish this run.</p>\n");
        return b;
    };
    b.push_str(
        "<table>\n<tr><th>phase</th><th>from (s)</th><th>to (s)</th><th>ok</th><th>requests</th>\
         <th>failures</th><th>MB sent by loadgen</th><th>MB received by loadgen</th><th>error</th></tr>\n",
    );
    for p in phases {
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        let sum = p.get("summary").filter(|s| !s.is_null());
        let cell = |k: &str, scale: f64| {
            sum.and_then(|s| n(s, k))
                .map_or("–".into(), |v| format!("{:.0}", v / scale))
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            esc(&phase_name(p)),
            n(p, "started_ms").unwrap_or(0.0) / 1000.0,
            n(p, "ended_ms").unwrap_or(0.0) / 1000.0,
            if p.get("ok").and_then(Value::as_bool) == Some(true) {
                "yes"
            } else {
                "<b>no</b>"
            },
            cell("requests", 1.0),
            cell("failures", 1.0),
            cell("bytes_sent", 1e6),
            cell("bytes_received", 1e6),
            esc(p.get("error").and_then(Value::as_str).unwrap_or("")),
        );
    }
    b.push_str("</table>\n");
    b
}

/// Leaf values of a JSON object as `a.b.c = value` rows.
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

fn facts(a: &Analysis) -> String {
    let mut b = String::from("<h2>What ran</h2>\n");
    match &a.run.meta {
        Some(meta) => {
            let mut rows = Vec::new();
            flatten("", meta, &mut rows);
            b.push_str("<table>\n<tr><th>meta.json</th><th>value</th></tr>\n");
            for (k, v) in rows {
                let _ = writeln!(
                    b,
                    "<tr><td>{}</td><td class=\"text\">{}</td></tr>",
                    esc(&k),
                    esc(&v)
                );
            }
            b.push_str("</table>\n");
        }
        None => b.push_str("<p>No meta.json in this run directory.</p>\n"),
    }
    if let Some(text) = &a.run.scenario_text {
        let _ = writeln!(
            b,
            "<p>The scenario as run (scenario.toml):</p>\n<pre>{}</pre>",
            esc(text)
        );
    }
    b
}

fn loadgen_links(a: &Analysis) -> String {
    let mut b = String::from("<h2>Load generator reports</h2>\n");
    if a.run.loadgen_files.is_empty() {
        b.push_str("<p>None in this run directory.</p>\n");
        return b;
    }
    b.push_str("<ul>\n");
    for f in &a.run.loadgen_files {
        let href = f.to_string_lossy();
        let _ = writeln!(b, "<li><a href=\"{0}\">{0}</a></li>", esc(&href));
    }
    b.push_str("</ul>\n");
    b
}

fn rules() -> String {
    format!(
        "<h2>How the verdict is decided</h2>\n<ul class=\"muted\">\n\
         <li><b>crash</b>: the server died on its own or the OOM kill count rose.</li>\n\
         <li><b>pressure</b>: the working set (usage − inactive file cache) came within {near:.0} % of the limit, \
         or PSI some avg10 reached {psi:.0} %, or the limit was hit while the working set was above {anon:.0} % of it.</li>\n\
         <li><b>bloat</b>: usage came within {near:.0} % of the limit (or hit it) but anonymous memory stayed below \
         {anon:.0} % of it: the rest is page cache the kernel reclaims.</li>\n\
         <li><b>healthy</b>: none of these.</li>\n</ul>\n",
        near = verdict::NEAR_LIMIT * 100.0,
        psi = verdict::PSI_SOME_AVG10,
        anon = verdict::ANON_FAR_BELOW * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
