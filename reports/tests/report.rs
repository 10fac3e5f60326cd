//! `reports::report` end to end on a real short run: the debug share-server
//! in a small cgroup (root; else no limit), one upload and one download
//! phase through `profiling::run::run`, then the report. Every output must
//! exist, and `report.html` must render in headless Chromium (a non-blank
//! screenshot, no console message) from the file alone.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use profiling::run::{RunOptions, run};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The debug share-server, built if needed.
fn server_binary() -> PathBuf {
    profiling::target::build_debug(&workspace()).unwrap()
}

/// Chromium, installed first when missing and root (testkit::tools).
fn chromium() -> PathBuf {
    testkit::tools::CHROMIUM.require().unwrap()
}

/// Screenshots `page` in headless Chromium; returns the PNG and Chromium's console lines.
fn screenshot(page: &Path, dir: &Path) -> (PathBuf, Vec<String>) {
    let shot = dir.join("screenshot.png");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    // Every console message (errors, failed loads) is logged as `INFO:CONSOLE`;
    // the page has no script, so any at all is a fault.
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (shot, console)
}

/// Share of pixels that are not (near) white.
fn inked_share(png_path: &Path) -> f64 {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let total = pixels.len() / channels;
    let inked = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|c| *c < 235))
        .count();
    inked as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_gets_a_complete_report_that_renders_in_chromium() {
    let chromium = chromium(); // fail early, before minutes of building and running
    eprintln!("using {}", chromium.display());
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { "cgroup" } else { "none" };
    if !root {
        eprintln!("not root: running in mode = \"none\" (no cgroup)");
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("small.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "small"
            [machine]
            mode = "{mode}"
            memory = "128MiB"
            [server]
            binary = "{}"
            args = ["--gc-interval", "1h"]
            [sampling]
            interval = "50ms"
            [[phases]]
            name = "upload"
            pause_after = "300ms"
            [phases.loadgen]
            scenario = "upload"
            users = 2
            iterations = 1
            size = "24MB"
            [[phases]]
            name = "download"
            [phases.loadgen]
            scenario = "download"
            users = 2
            iterations = 1
            ranges-per-download = 2
            "#,
            server_binary().display()
        ),
    )
    .unwrap();
    let outcome = run(RunOptions {
        scenario,
        runs_dir: dir.path().join("runs"),
        workspace: workspace(),
        progress: false,
        heap_profiles: None,
        regression: None,
    })
    .await
    .unwrap();
    assert!(outcome.passed, "{outcome:#?}");
    let run_dir = &outcome.run_dir;

    let summary = reports::report(run_dir).unwrap();
    for file in [
        "report.html",
        "report.svg",
        "report.png",
        "summary.md",
        "summary.json",
    ] {
        let path = run_dir.join(file);
        assert!(
            path.metadata().is_ok_and(|m| m.len() > 0),
            "{file} missing or empty"
        );
    }
    assert!(
        matches!(
            summary.verdict,
            reports::Verdict::Healthy | reports::Verdict::Bloat
        ),
        "a passing small run: {summary:#?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["verdict"], summary.verdict.as_str());
    assert_eq!(json["schema"], 1);
    assert!(json["peaks"]["machine_usage"]["bytes"].as_u64().unwrap() > 0);
    assert!(
        json["uploaded_bytes"].as_u64().unwrap() >= 48_000_000,
        "{json}"
    );
    assert_eq!(json["run"]["mode"], mode);

    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let verdict_at = html.find("class=\"badge\"").unwrap();
    let plot_at = html.find("<svg").unwrap();
    assert!(verdict_at < plot_at, "the verdict comes first");
    for outside in ["<script", "<link", "src=\"http", "url(http", "@import"] {
        assert!(!html.contains(outside), "self-contained: found {outside}");
    }
    assert!(
        html.contains("loadgen/1-upload/goose-report.html"),
        "links goose's report"
    );
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(md.contains(&summary.verdict.as_str().to_uppercase()));

    let (shot, console) = screenshot(&run_dir.join("report.html"), dir.path());
    assert!(console.is_empty(), "console messages: {console:#?}");
    let inked = inked_share(&shot);
    assert!(
        inked > 0.05,
        "screenshot looks blank: {:.1} % inked",
        inked * 100.0
    );
    let inked = inked_share(&run_dir.join("report.png"));
    assert!(
        inked > 0.05,
        "report.png looks blank: {:.1} % inked",
        inked * 100.0
    );

    // Two runs side by side: the run against itself has zero differences.
    let out = dir.path().join("compare");
    let c = reports::compare(run_dir, run_dir, &out).unwrap();
    assert!(c.peaks.iter().all(|d| d.diff_bytes == Some(0)), "{c:#?}");
    for file in [
        "compare.html",
        "compare.svg",
        "compare.png",
        "compare.md",
        "compare.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
}
