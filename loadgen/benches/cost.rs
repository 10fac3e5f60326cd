//! What loadgen costs: its peak memory while it drives the story's three parallel 618 MB
//! uploads into the real server, and how much faster than the server it can push bytes.
//!
//! `cargo bench -p loadgen --bench cost` runs the release `loadgen` binary in three phases, each
//! `BENCH_ROUNDS` (3) times, interleaved:
//!
//! 1. against the real release `share-server`: 3 users × 1 upload of `BENCH_SIZE_MB` (618) at
//!    once. Reported: loadgen's peak RSS (VmHWM, read by loadgen itself at the end of the run,
//!    and cross-checked by polling `/proc/<pid>/status` every 20 ms) against the target of
//!    64 MiB, and the server's aggregate upload rate;
//! 2. against a fresh server: 1 upload alone, the server's single-upload rate;
//! 3. against a discard endpoint in this process (a minimal HTTP/1.1 server that answers the
//!    login and reads and drops upload bodies): the same 3 uploads. Target: loadgen's rate is at
//!    least 3 × the faster of the server's two rates, so loadgen is never what limits a run.
//!
//! Rates are loadgen's own (`aggregate_mb_per_s`: bytes / first start to last end, MB = 10^6
//! bytes); each phase's best round is compared (the machine is shared: one burst of other work
//! during a 1.5 s run would otherwise decide the ratio). Peak RSS is the highest of the rounds. Nothing is asserted: targets print PASS or MISS. Figures also go to
//! `target/bench-loadgen.json` (or `$CARGO_TARGET_DIR/bench-loadgen.json`). See
//! `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use loadgen::Summary;
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const SECRET: &str = "loadgen-cost-bench";
const DEFAULT_SIZE_MB: u64 = 618;
const PARALLEL: usize = 3;
/// Each phase runs this many times, interleaved; the best rate of each phase is compared, so a
/// burst of other work on the (shared) machine during one run does not decide the ratio.
const DEFAULT_ROUNDS: usize = 3;
const PEAK_RSS_TARGET_MIB: f64 = 64.0;
const SPEED_TARGET: f64 = 3.0;
const MIB: f64 = 1024.0 * 1024.0;
/// The discard endpoint reads from its socket in pieces of up to this size.
const DISCARD_READ: usize = 1 << 20;
/// Request headers longer than this are refused by the discard endpoint.
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let size_mb: u64 = match std::env::var("BENCH_SIZE_MB") {
        Ok(v) => v.parse().context("BENCH_SIZE_MB")?,
        Err(_) => DEFAULT_SIZE_MB,
    };
    let repeats: usize = match std::env::var("BENCH_ROUNDS") {
        Ok(v) => v.parse().context("BENCH_ROUNDS")?,
        Err(_) => DEFAULT_ROUNDS,
    };
    ensure!(repeats > 0, "BENCH_ROUNDS must be at least 1");
    let work = tempfile::tempdir()?;
    println!("loadgen cost benchmark");
    println!(
        "  machine: {} cores, Linux {}; uploads of {size_mb} MB",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let server_bin = testkit::binary::built(testkit::binary::Profile::Release)?;
    let (address, discarded) = discard_endpoint().await?;
    let discard_host = format!("http://{address}");

    let (mut parallel, mut single, mut discard) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=repeats {
        println!("\nround {round} of {repeats}");
        println!("  {PARALLEL} parallel uploads into the release share-server");
        let server = Server::start(&server_bin).await?;
        let run = run_loadgen(&server.base, PARALLEL, size_mb, work.path()).await?;
        server.stop().await?;
        run.print();
        parallel.push(run);

        println!("  1 upload alone into a fresh share-server");
        let server = Server::start(&server_bin).await?;
        let run = run_loadgen(&server.base, 1, size_mb, work.path()).await?;
        server.stop().await?;
        run.print();
        single.push(run);

        println!("  {PARALLEL} parallel uploads into the discard endpoint");
        let before = discarded.load(Ordering::Relaxed);
        let run = run_loadgen(&discard_host, PARALLEL, size_mb, work.path()).await?;
        let read = discarded.load(Ordering::Relaxed) - before;
        let expected = PARALLEL as u64 * size_mb * 1_000_000;
        ensure!(
            read >= expected,
            "the discard endpoint read {read} bytes, expected {expected}"
        );
        run.print();
        discard.push(run);
    }

    let peak = parallel.iter().map(Measured::peak_mib).fold(0.0, f64::max);
    let best = |runs: &[Measured]| runs.iter().map(|m| m.rate).fold(0.0, f64::max);
    let rates = |runs: &[Measured]| {
        runs.iter()
            .map(|m| format!("{:.0}", m.rate))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let server_rate = best(&parallel).max(best(&single));
    let ratio = best(&discard) / server_rate;
    println!("\nsummary (MB = 10^6 bytes; rates: best of {repeats} rounds, then every round)");
    println!(
        "  {:<46} {:>12} {:>12}  result",
        "figure", "measured", "target"
    );
    println!(
        "  {:<46} {:>8.1} MiB {:>8} MiB  {}",
        format!("loadgen peak RSS, {PARALLEL} x {size_mb} MB into share-server"),
        peak,
        format!("<= {PEAK_RSS_TARGET_MIB:.0}"),
        verdict(peak <= PEAK_RSS_TARGET_MIB)
    );
    for (name, runs) in [
        (
            format!("share-server, {PARALLEL} parallel uploads"),
            &parallel,
        ),
        ("share-server, 1 upload".to_owned(), &single),
        (
            format!("discard endpoint, {PARALLEL} parallel uploads"),
            &discard,
        ),
    ] {
        println!(
            "  {name:<46} {:>7.1} MB/s   ({} MB/s)",
            best(runs),
            rates(runs)
        );
    }
    println!(
        "  {:<46} {:>12.2} {:>12}  {}",
        "discard rate / faster server rate",
        ratio,
        format!(">= {SPEED_TARGET:.1}"),
        verdict(ratio >= SPEED_TARGET)
    );

    let all = |runs: &[Measured]| runs.iter().map(|m| m.rate).collect::<Vec<_>>();
    let figures = json!({
        "size_mb": size_mb,
        "parallel": PARALLEL,
        "rounds": repeats,
        "loadgen_peak_rss_mib": peak,
        "loadgen_peak_rss_polled_mib": parallel.iter().map(|m| m.polled_hwm_kib).max().unwrap_or(0) as f64 / 1024.0,
        "server_parallel_mb_per_s": all(&parallel),
        "server_single_mb_per_s": all(&single),
        "discard_parallel_mb_per_s": all(&discard),
        "discard_over_server": ratio,
        "targets": { "peak_rss_mib": PEAK_RSS_TARGET_MIB, "discard_over_server": SPEED_TARGET },
    });
    let path = json_path();
    std::fs::write(&path, serde_json::to_vec_pretty(&figures)?)?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// One loadgen run and what it measured.
struct Measured {
    summary: Summary,
    /// Highest VmHWM seen by polling the process, KiB.
    polled_hwm_kib: u64,
    /// Aggregate upload rate, MB/s.
    rate: f64,
    wall: Duration,
}

impl Measured {
    fn peak_mib(&self) -> f64 {
        self.summary.loadgen_peak_rss_bytes.unwrap_or(0) as f64 / MIB
    }

    fn print(&self) {
        let upload = &self.summary.scenarios["upload"].transfers["upload"];
        println!(
            "  {} uploads, {:.0} MB in {:.2} s: {:.1} MB/s together, {:.1} MB/s each",
            upload.seconds.count,
            upload.bytes as f64 / 1e6,
            self.wall.as_secs_f64(),
            self.rate,
            upload.mb_per_s
        );
        println!(
            "  loadgen VmHWM {:.1} MiB (its own reading), {:.1} MiB (polled)",
            self.peak_mib(),
            self.polled_hwm_kib as f64 / 1024.0
        );
    }
}

/// Runs the release loadgen binary: `users` × 1 upload of `size_mb` MB.
async fn run_loadgen(host: &str, users: usize, size_mb: u64, work: &Path) -> Result<Measured> {
    let report = tempfile::tempdir_in(work)?;
    let report = report.path();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--host", host, "--secret", SECRET, "--scenario", "upload"])
        .args(["--users", &users.to_string(), "--iterations", "1"])
        .args(["--size", &format!("{size_mb}MB"), "--quiet"])
        .arg("--report-dir")
        .arg(report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn loadgen")?;
    let pid = child.id().context("loadgen pid")?;
    let mut polled = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            polled = polled.max(kib);
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let wall = start.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            stderr.read_to_string(&mut err).await?;
        }
        bail!("loadgen failed ({status}):\n{err}");
    }
    let summary = Summary::read(&report.join(loadgen::SUMMARY_FILE))?;
    ensure!(summary.ok, "loadgen run not ok: {}", summary.to_text());
    let rate = summary.scenarios["upload"].transfers["upload"].aggregate_mb_per_s;
    Ok(Measured {
        summary,
        polled_hwm_kib: polled,
        rate,
        wall,
    })
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}

/// A release share-server on a fresh temp database, started by [`testkit`].
struct Server {
    process: testkit::Server,
    base: String,
}

impl Server {
    async fn start(binary: &Path) -> Result<Self> {
        let spawn = testkit::Spawn::new(binary)
            .secret(Some(SECRET))
            .debug_listener(false)
            .rust_log("warn")
            .inherit_stderr();
        let process = tokio::task::block_in_place(|| spawn.start())?;
        Ok(Server {
            base: process.base.clone(),
            process,
        })
    }

    /// SIGTERM, wait, and remove the database (a 1.9 GB one is not kept around).
    async fn stop(mut self) -> Result<()> {
        tokio::task::block_in_place(|| {
            self.process
                .stop_with(Signal::SIGTERM, Duration::from_secs(60))
        })?;
        Ok(())
    }
}

/// A minimal HTTP/1.1 server that loadgen can log into and upload to: `GET /healthz`,
/// `POST /api/auth` (sets a cookie) and `POST /api/entry` (reads the body, drops it, answers an
/// id). Keep-alive, Content-Length bodies only. Returns its address and a count of body bytes.
async fn discard_endpoint() -> Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let discarded = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&discarded);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                if let Err(e) = serve(socket, &counter).await {
                    eprintln!("discard endpoint: {e:#}");
                }
            });
        }
    });
    Ok((address, discarded))
}

async fn serve(socket: TcpStream, discarded: &AtomicU64) -> Result<()> {
    socket.set_nodelay(true)?;
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::with_capacity(DISCARD_READ, read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(()); // the client closed the connection
        }
        let mut content_length = 0u64;
        let mut header_bytes = request_line.len();
        loop {
            let mut line = String::new();
            header_bytes += reader.read_line(&mut line).await?;
            ensure!(header_bytes <= MAX_HEADER_BYTES, "headers too long");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse()?;
                }
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked bodies are not supported");
                }
            }
        }
        // Dropped straight from the reader's buffer: no copy besides the kernel's.
        let mut left = content_length;
        while left > 0 {
            let available = reader.fill_buf().await?.len();
            ensure!(available > 0, "body ended {left} bytes early");
            let n = available.min(usize::try_from(left).unwrap_or(usize::MAX));
            reader.consume(n);
            left -= n as u64;
        }
        let mut words = request_line.split_whitespace();
        let response = match (words.next(), words.next()) {
            (Some("GET"), Some("/healthz")) => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            (Some("POST"), Some("/api/auth")) => {
                "HTTP/1.1 200 OK\r\nset-cookie: sharerig_session=discard; Path=/\r\n\
                 content-length: 0\r\n\r\n"
            }
            (Some("POST"), Some(path)) if path.starts_with("/api/entry") => {
                discarded.fetch_add(content_length, Ordering::Relaxed);
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 content-length: 17\r\n\r\n{\"id\":\"discard0\"}"
            }
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        };
        write.write_all(response.as_bytes()).await?;
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// `$CARGO_TARGET_DIR/bench-loadgen.json`, else the workspace's `target/`.
fn json_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"))
        .join("bench-loadgen.json")
}
