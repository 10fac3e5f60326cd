//! The gate's output: a table on the terminal, `gate.md` (also appended to
//! `$GITHUB_STEP_SUMMARY` when set), `gate.json`.

use std::fmt::Write as _;
use std::path::Path;

use super::{GateError, GateReport, io};

pub const GATE_JSON: &str = "gate.json";
pub const GATE_MD: &str = "gate.md";

/// Writes `gate.json` and `gate.md` into `dir`, and the step summary.
pub fn write(report: &GateReport, dir: &Path) -> Result<(), GateError> {
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other);
    std::fs::write(
        dir.join(GATE_JSON),
        json.map_err(io("encoding gate.json"))? + "\n",
    )
    .map_err(io("writing gate.json"))?;
    let md = markdown(report);
    std::fs::write(dir.join(GATE_MD), &md).map_err(io("writing gate.md"))?;
    append_step_summary(&md);
    Ok(())
}

/// GitHub Actions shows what is appended to this file on the run's page.
pub(super) fn append_step_summary(md: &str) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return;
    };
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(md.as_bytes()));
    if let Err(e) = appended {
        eprintln!("rig gate: warning: could not write the step summary: {e}");
    }
}

fn result(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}

/// The terminal table (plain text, aligned).
pub fn terminal(report: &GateReport) -> String {
    let mut out = String::new();
    let n = report.replicates.len();
    let _ = writeln!(
        out,
        "gate {}: {} replicates, verdicts {}",
        report.scenario,
        n,
        report.verdicts().join(", ")
    );
    let _ = writeln!(
        out,
        "\n{:<26} {:>14} {:>16} {:>9}  result",
        "budget", "limit", "worst", "failing"
    );
    for b in &report.budgets {
        let _ = writeln!(
            out,
            "{:<26} {:>14} {:>16} {:>5} of {n}  {}",
            b.budget,
            b.limit,
            b.worst,
            b.failing_replicates,
            result(b.pass)
        );
    }
    match &report.baseline {
        None => {
            let _ = writeln!(out, "\nno baseline: budgets only");
        }
        Some(info) => {
            let _ = writeln!(
                out,
                "\nbaseline {} ({}, rev {})",
                info.path.display(),
                info.created.format("%Y-%m-%d"),
                info.git_revision
                    .as_deref()
                    .map_or("?", |r| &r[..r.len().min(10)])
            );
            for d in &info.machine_differences {
                let _ = writeln!(
                    out,
                    "warning: this machine differs from the baseline's: {d}"
                );
            }
            let _ = writeln!(
                out,
                "{:<24} {:>12} {:>12} {:>12} {:>26} {:>7}  result",
                "metric", "baseline", "now", "Δ", "95% CI of Δ", "p"
            );
            for c in &report.comparisons {
                let m = c.metric;
                let _ = writeln!(
                    out,
                    "{:<24} {:>12} {:>12} {:>12} {:>26} {:>7.3}  {}",
                    m.name(),
                    m.show(c.baseline_median),
                    m.show(c.current_median),
                    format!("{:+.1}%", c.delta_relative * 100.0),
                    format!("[{}, {}]", m.show(c.interval.low), m.show(c.interval.high)),
                    c.p_higher,
                    if c.regression { "REGRESSION" } else { "ok" }
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{}{}",
        if report.passed { "PASS" } else { "FAIL: " },
        report.failures.join(", ")
    );
    if let Some(a) = &report.attribution {
        let _ = writeln!(out, "{}", a.line());
        if let Some(dir) = &a.run_dir {
            let _ = writeln!(out, "attribution run: {}", dir.display());
        }
    }
    let _ = writeln!(out, "details: {}", report.dir.join(GATE_MD).display());
    out
}

/// `gate.md`: the same tables in markdown, with every replicate linked.
pub fn markdown(report: &GateReport) -> String {
    let mut md = String::new();
    let n = report.replicates.len();
    let _ = writeln!(
        md,
        "## Memory gate: `{}` — {}\n",
        report.scenario,
        if report.passed { "PASS" } else { "FAIL" }
    );
    if !report.passed {
        let _ = writeln!(md, "Failed: {}\n", report.failures.join(", "));
    }
    if let Some(a) = &report.attribution {
        let _ = writeln!(md, "**Where it went**: {}\n", a.line());
        md.push_str(&attribution_markdown(a));
    }
    let _ = writeln!(md, "| budget | limit | worst of {n} | failing | result |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for b in &report.budgets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            b.budget,
            b.limit,
            b.worst,
            b.failing_replicates,
            result(b.pass)
        );
    }
    if let Some(info) = &report.baseline {
        let _ = writeln!(
            md,
            "\nBaseline `{}` from {} (revision `{}`); one-sided exact Mann-Whitney p, bootstrap 95% interval of the difference of medians, effect floor max({}%, {} MiB).\n",
            info.path.display(),
            info.created.format("%Y-%m-%d"),
            info.git_revision.as_deref().unwrap_or("?"),
            super::baseline::MIN_RELATIVE_EFFECT * 100.0,
            super::baseline::MIN_ABSOLUTE_EFFECT_BYTES / (1024.0 * 1024.0)
        );
        for d in &info.machine_differences {
            let _ = writeln!(
                md,
                "> Warning: this machine differs from the baseline's: {d}\n"
            );
        }
        let _ = writeln!(
            md,
            "| metric | baseline | now | Δ | 95% CI of Δ | p | result |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        for c in &report.comparisons {
            let m = c.metric;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:+.1}% | [{}, {}] | {:.3} | {} |",
                m.name(),
                m.show(c.baseline_median),
                m.show(c.current_median),
                c.delta_relative * 100.0,
                m.show(c.interval.low),
                m.show(c.interval.high),
                c.p_higher,
                if c.regression { "**regression**" } else { "ok" }
            );
        }
    } else {
        let _ = writeln!(md, "\nNo baseline: budgets only.");
    }
    let _ = writeln!(
        md,
        "\n| replicate | verdict | OOM kills | failed requests | run |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for (i, r) in report.replicates.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | `{}` |",
            i + 1,
            r.verdict.as_deref().unwrap_or("no report"),
            r.oom_kills,
            r.failed_requests,
            r.run_dir.display()
        );
    }
    md
}

/// The attribution run's heap sites against the baseline's, as a table.
fn attribution_markdown(a: &super::attribution::Attribution) -> String {
    let mut md = String::new();
    if let Some(dir) = &a.run_dir {
        let limit = a
            .limit_bytes
            .map_or(String::new(), |l| format!(" with {} MiB", l >> 20));
        let _ = writeln!(
            md,
            "Attribution run (heap profiles{limit}, not a replicate): `{}`\n",
            dir.display()
        );
    }
    if a.grew_vs_baseline.is_empty() {
        return md;
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    md.push_str(
        "| heap site | baseline (MiB) | now (MiB) | Δ (MiB) |\n| --- | ---: | ---: | ---: |\n",
    );
    for g in &a.grew_vs_baseline {
        let _ = writeln!(
            md,
            "| `{}` | {:.1} | {:.1} | {:+.1} |",
            g.name,
            mib(g.from_bytes),
            mib(g.to_bytes),
            g.delta_bytes() as f64 / (1024.0 * 1024.0)
        );
    }
    md.push('\n');
    md
}
