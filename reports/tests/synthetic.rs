//! `report` and `compare` on run directories written by the test: a run
//! that fills its cgroup with page cache (bloat) and one killed by the OOM
//! killer (crash). Fast and without the rig, a server or a browser.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// One sample line in the rig's schema (docs/scenarios.md).
fn sample(t_ms: u64, phase: &str, anon: u64, cache: u64, received: u64, oom: u64) -> String {
    let usage = anon + cache + 6 * MIB;
    json!({
        "t_ms": t_ms,
        "phase": phase,
        "process": { "vm_rss_bytes": anon + 9 * MIB, "rss_anon_bytes": anon, "rss_file_bytes": 9 * MIB,
                     "rss_shmem_bytes": 0, "vm_hwm_bytes": anon + 9 * MIB, "threads": 7,
                     "open_fds": 30, "pss_bytes": anon + 5 * MIB },
        "machine": { "source": "cgroup-v1", "usage_bytes": usage, "limit_bytes": 256 * MIB,
                     "peak_bytes": usage, "anon_bytes": anon, "file_bytes": cache,
                     "mapped_file_bytes": 0, "dirty_bytes": (cache / 10).min(8 * MIB), "writeback_bytes": 0,
                     "inactive_file_bytes": cache * 8 / 10, "working_set_bytes": usage - cache * 8 / 10,
                     "oom_kills": oom, "limit_hits": 0, "pressure": null },
        "system": null,
        "server": { "allocator": { "name": "jemalloc", "allocated_bytes": anon / 2, "active_bytes": anon * 6 / 10,
                                   "resident_bytes": anon * 8 / 10, "retained_bytes": 3 * MIB },
                    "sqlite": { "memory_used_bytes": 7 * MIB },
                    "app": { "bytes_received_total": received, "bytes_sent_total": 0 } },
        "files": { "db_bytes": received, "wal_bytes": 4 * MIB, "shm_bytes": 32768 }
    })
    .to_string()
}

fn write_run(
    dir: &Path,
    lines: &[String],
    events: &[serde_json::Value],
    outcome: serde_json::Value,
) {
    std::fs::create_dir_all(dir.join("loadgen/1-upload")).unwrap();
    std::fs::write(dir.join("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(dir.join("events.jsonl"), events.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("outcome.json"), outcome.to_string()).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        json!({"scenario": "synthetic", "machine": {"mode": "cgroup", "limit_bytes": 256 * MIB},
               "git": {"revision": "0123456789abcdef0123456789abcdef01234567", "dirty": false},
               "server": {"allocator": "jemalloc", "features": [], "args": ["--gc-interval", "1h"]}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("scenario.toml"), "name = \"synthetic\"\n").unwrap();
    std::fs::write(
        dir.join("loadgen/1-upload/goose-report.html"),
        "<html></html>",
    )
    .unwrap();
}

/// 60 s at 10 Hz: uploads for 40 s fill the page cache to 220 MiB; anon stays near 30 MiB.
fn bloat_run(dir: &Path) {
    let lines: Vec<String> = (0..600u64)
        .map(|i| {
            let up = i.min(400);
            let cache = (220 * MIB * up) / 400;
            let anon = 24 * MIB + (i % 7) * MIB;
            sample(
                i * 100,
                if i < 400 { "upload" } else { "pause" },
                anon,
                cache,
                up * 4 * MIB,
                0,
            )
        })
        .collect();
    write_run(
        dir,
        &lines,
        &[
            json!({"t_ms": 0, "event": "server-started", "detail": {"pid": 1}}),
            json!({"t_ms": 10, "event": "phase-start", "detail": {"phase": "upload"}}),
            json!({"t_ms": 40000, "event": "phase-end", "detail": {"phase": "upload", "ok": true}}),
            json!({"t_ms": 60000, "event": "server-stopped", "detail": {"exit": "killed by signal 15"}}),
        ],
        json!({"passed": true, "oom_kills": 0, "died_at_ms": null, "interrupted": false,
               "server_exit": {"code": null, "signal": 15, "stopped_by_rig": true},
               "phases": [{"name": "upload", "started_ms": 10, "ended_ms": 40000, "ok": true, "error": null,
                           "summary": {"requests": 3, "failures": 0, "bytes_sent": 1600000000u64, "bytes_received": 900}}]}),
    );
}

/// Anon grows 1 MiB per 4 MiB uploaded (256 MiB per GiB: a leak) until the OOM kill at 20.05 s.
fn crash_run(dir: &Path) {
    let lines: Vec<String> = (0..=201u64)
        .map(|i| {
            let anon = 20 * MIB + i * MIB;
            let oom = u64::from(i > 200);
            sample(i * 100, "upload", anon, 10 * MIB, i * 4 * MIB, oom)
        })
        .collect();
    write_run(
        dir,
        &lines,
        &[
            json!({"t_ms": 10, "event": "phase-start", "detail": {"phase": "upload"}}),
            json!({"t_ms": 20050, "event": "phase-end", "detail": {"phase": "upload", "ok": false}}),
            json!({"t_ms": 20050, "event": "server-died", "detail": {"at_ms": 20050, "exit": "killed by SIGKILL"}}),
        ],
        json!({"passed": false, "oom_kills": 1, "died_at_ms": 20050, "interrupted": false,
               "server_exit": {"code": null, "signal": 9, "stopped_by_rig": false},
               "phases": [{"name": "upload", "started_ms": 10, "ended_ms": 20050, "ok": false,
                           "error": "the server died", "summary": null}]}),
    );
}

#[test]
fn page_cache_filling_the_limit_is_reported_as_bloat() {
    let dir = tempfile::tempdir().unwrap();
    bloat_run(dir.path());
    let s = reports::report(dir.path()).unwrap();
    assert_eq!(s.verdict, reports::Verdict::Bloat, "{s:#?}");
    assert!(s.leaks.is_empty(), "{s:#?}");
    for f in [
        "report.html",
        "report.svg",
        "report.png",
        "summary.md",
        "summary.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("false alarm"));
    assert!(html.contains("href=\"loadgen/1-upload/goose-report.html\""));
    assert!(
        html.contains("0123456789abcdef0123456789abcdef01234567"),
        "meta facts"
    );
}

#[test]
fn an_oom_kill_with_a_leak_is_a_crash_with_the_leak_named() {
    let dir = tempfile::tempdir().unwrap();
    crash_run(dir.path());
    let s = reports::report(dir.path()).unwrap();
    assert_eq!(s.verdict, reports::Verdict::Crash, "{s:#?}");
    assert!(
        s.headline.contains("killed by SIGKILL at 20.1 s"),
        "{}",
        s.headline
    );
    assert!(s.leaks.contains(&"process_anon".to_owned()), "{s:#?}");
    let anon = s
        .suspects
        .iter()
        .find(|x| x.layer == "process_anon")
        .unwrap();
    assert!((anon.slope_mib_per_gib - 256.0).abs() < 1e-6, "{anon:?}");
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("leak signature"), "{md}");
}

#[test]
fn two_runs_compare_with_peak_differences() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    bloat_run(a.path());
    crash_run(b.path());
    let out = a.path().join("compare");
    let c = reports::compare(a.path(), b.path(), &out).unwrap();
    assert_eq!(
        (c.a.verdict, c.b.verdict),
        (reports::Verdict::Bloat, reports::Verdict::Crash)
    );
    // anon peaks: A 24 + 6 = 30 MiB, B 20 + 201 = 221 MiB.
    let anon = c.peaks.iter().find(|d| d.layer == "process_anon").unwrap();
    assert_eq!(anon.diff_bytes, Some(191 * MIB as i64));
    assert!(out.join("compare.png").is_file() && out.join("compare.html").is_file());
}

#[test]
fn a_directory_without_samples_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = reports::report(dir.path()).unwrap_err().to_string();
    assert!(e.contains("samples.jsonl"), "{e}");
}

#[test]
fn values_from_the_run_files_are_escaped_in_report_html() {
    let dir = tempfile::tempdir().unwrap();
    bloat_run(dir.path());
    let evil = "<script>alert(1)</script>";
    // A phase name (outcome.json and events.jsonl, so also in the plot), the scenario and a meta fact.
    let events = [
        json!({"t_ms": 10, "event": "phase-start", "detail": {"phase": evil}}),
        json!({"t_ms": 40000, "event": "phase-end", "detail": {"phase": evil, "ok": true}}),
    ];
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(dir.path().join("events.jsonl"), events.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("outcome.json"),
        json!({"passed": false, "phases": [{"name": evil, "started_ms": 10, "ended_ms": 40000,
               "ok": false, "error": evil, "summary": null}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scenario.toml"),
        format!("name = \"{evil}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("meta.json"),
        json!({"scenario": evil, "description": evil}).to_string(),
    )
    .unwrap();
    reports::report(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(!html.contains("<script"), "{html}");
    // askama's escaping in the tables, plotters' in the SVG.
    assert!(
        html.contains("<td>&#60;script&#62;alert(1)&#60;/script&#62;</td>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}
