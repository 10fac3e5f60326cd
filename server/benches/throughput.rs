//! Throughput and peak-memory benchmark of share-server, on loopback.
//!
//! `cargo bench -p share-server --bench throughput` prints, from one run:
//!
//! 1. a raw baseline: the file's bytes written as 327,680-byte chunk rows
//!    straight through the server's own storage layer (same pragmas, same
//!    2-chunk transactions, no HTTP), then read back one chunk per `SELECT`;
//! 2. the real release binary: one streamed upload and one download of the
//!    same size, and their ratios to the baseline (targets: ≥ 0.60); a
//!    second download checks the file's SHA-256 against the upload's;
//! 3. the server's peak RSS (`VmHWM`) after three parallel uploads
//!    (target: ≤ 32 MiB), with its peak right after startup for reference.
//!
//! The machine is shared and noisy, so the ratios (measured a minute apart in
//! the same run) are the figures to compare, not the absolute MB/s. Nothing
//! is asserted: targets are reported as PASS or MISS. The figures also go to
//! `target/bench-throughput.json`. See `docs/benchmarks.md`.
//!
//! Environment: `BENCH_SIZE_MB` (default 618) sizes phases 1 and 2,
//! `BENCH_PARALLEL_MB` (default 618) each of the parallel uploads;
//! MB = 10^6 bytes.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use share_server::config::{DEFAULT_CHUNK_SIZE, DEFAULT_DISK_RESERVE};
use share_server::entry::{EntryId, Expiration};
use share_server::storage::entries::{FinishedUpload, NewUpload};
use share_server::storage::{Store, chunks, entries, now_millis};
use share_server::upload::CHUNKS_PER_TRANSACTION;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Bytes per stored chunk, the same for the baseline and the server (which
/// is started with it explicitly, so a stray `PS_CHUNK_SIZE` cannot differ).
const CHUNK_SIZE: u64 = DEFAULT_CHUNK_SIZE;
/// Pieces the client streams into a request body: a typical socket write,
/// well below a chunk, so the server does its own re-chunking as in real use.
const PIECE_BYTES: usize = 64 * 1024;
/// One MB, as in "MB/s" (decimal, like the 618 MB file size).
const MB: f64 = 1e6;
/// Bytes per MiB, for memory figures.
const MIB: f64 = 1024.0 * 1024.0;
/// Seed of the content generator: every stream of a given length is identical,
/// which is what lets the upload's hash be computed outside the timed request.
const CONTENT_SEED: u64 = 0x5EED_F11E;
/// Default file size in MB, for phases 1 and 2 and for each parallel upload.
const DEFAULT_SIZE_MB: u64 = 618;
/// Uploads running at once in the memory phase.
const PARALLEL_UPLOADS: usize = 3;
/// Server throughput / raw throughput must reach this, for upload and download.
const RATIO_TARGET: f64 = 0.60;
/// Rounds of phases 1 and 2; their medians are reported.
const ROUNDS: usize = 3;
/// Peak RSS of the server during the parallel uploads must stay within this.
const PEAK_RSS_TARGET_MIB: f64 = 32.0;
/// The shared secret the benchmark's servers are started with.
const SECRET: &str = "throughput-bench-secret";
/// The session cookie set by `POST /api/auth`.
const SESSION_COOKIE: &str = "sharerig_session";
/// How long a server may take to print its address.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit on SIGTERM (it drains and checkpoints
/// the WAL on the way out) before it is killed.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_env()?;
    println!("share-server throughput benchmark");
    println!(
        "  machine: {} cores, Linux {}; file: {} ({} bytes), parallel: {} x {}",
        cores(),
        kernel_release(),
        fmt_mb(config.size),
        config.size,
        PARALLEL_UPLOADS,
        fmt_mb(config.parallel_size),
    );

    // Phases 1 and 2 alternate for ROUNDS rounds and the medians are kept:
    // on a shared machine one measurement of each side can be minutes-apart
    // noise, alternating puts both sides under the same noise.
    let mut raws = Vec::with_capacity(ROUNDS);
    let mut loopbacks = Vec::with_capacity(ROUNDS);
    let mut singles = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        println!("\n[1/4] raw baseline: storage layer, no HTTP (round {round}/{ROUNDS})");
        let size = config.size;
        let raw = tokio::task::spawn_blocking(move || raw_baseline(size))
            .await
            .context("the raw baseline thread panicked")??;
        println!("  write {}", raw.write);
        println!("  read  {}", raw.read);
        let loopback = loopback_ceiling(config.size).await?;
        println!("  loopback TCP, no HTTP, no storage {loopback}");
        println!(
            "\n[2/4] server: one streamed upload, a timed and a verified download (round {round}/{ROUNDS})"
        );
        let single = server_single(config.size).await?;
        println!("  upload   {}", single.upload);
        println!("  download {}", single.download);
        raws.push(raw);
        loopbacks.push(loopback);
        singles.push(single);
    }
    let raw = RawFigures {
        write: median_rate(
            config.size,
            &mut raws.iter().map(|r| r.write.elapsed).collect::<Vec<_>>(),
        ),
        read: median_rate(
            config.size,
            &mut raws.iter().map(|r| r.read.elapsed).collect::<Vec<_>>(),
        ),
    };
    let loopback = median_rate(
        config.size,
        &mut loopbacks.iter().map(|r| r.elapsed).collect::<Vec<_>>(),
    );
    let mut single = singles.pop().context("no rounds")?;
    singles.push(single.clone());
    single.upload = median_rate(
        config.size,
        &mut singles.iter().map(|s| s.upload.elapsed).collect::<Vec<_>>(),
    );
    single.download = median_rate(
        config.size,
        &mut singles
            .iter()
            .map(|s| s.download.elapsed)
            .collect::<Vec<_>>(),
    );
    single.verified_download = median_rate(
        config.size,
        &mut singles
            .iter()
            .map(|s| s.verified_download.elapsed)
            .collect::<Vec<_>>(),
    );
    single.hwm_mib = singles.iter().map(|s| s.hwm_mib).fold(0.0, f64::max);
    println!("\nmedians of {ROUNDS} rounds:");
    println!("  raw write {}", raw.write);
    println!("  raw read  {}", raw.read);
    println!("  loopback  {loopback}");
    println!("  upload   {}", single.upload);
    println!("  download {}", single.download);
    println!(
        "  download {} with client SHA-256",
        single.verified_download
    );
    println!("  sha-256 verified: {}", single.sha256);

    println!(
        "\n[3/4] server peak memory: {PARALLEL_UPLOADS} parallel uploads of {}",
        fmt_mb(config.parallel_size)
    );
    let memory = server_parallel(config.parallel_size).await?;
    println!("  VmHWM after startup: {:.1} MiB", memory.startup_hwm_mib);
    println!(
        "  VmHWM after uploads: {:.1} MiB; {} uploaded in {:.2} s, {:.1} MB/s aggregate",
        memory.peak_hwm_mib,
        fmt_mb(memory.total.bytes),
        memory.total.elapsed.as_secs_f64(),
        memory.total.mb_per_s()
    );

    println!(
        "\n[4/4] introspection cost: /debug/stats at idle, uploads with and without a 10 Hz poller"
    );
    let cost = introspection_cost(config.parallel_size).await?;
    println!(
        "  collect (server-side) median {:.3} ms, p99 {:.3} ms; request round trip median {:.3} ms",
        cost.collect_median_ms, cost.collect_p99_ms, cost.request_median_ms
    );
    println!(
        "  upload without poller {}; with poller {} ({} polls)",
        cost.without, cost.with, cost.polls
    );
    println!(
        "  VmHWM without poller {:.1} MiB, with poller {:.1} MiB",
        cost.hwm_without_mib, cost.hwm_with_mib
    );

    let report = Report {
        config,
        raw,
        loopback,
        single,
        memory,
        cost,
    };
    report.print_summary();
    let path = json_path();
    report.write_json(&path)?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// Sizes from the environment.
struct Config {
    /// Bytes of the file in phases 1 and 2.
    size: u64,
    /// Bytes of each parallel upload in phase 3.
    parallel_size: u64,
}

impl Config {
    fn from_env() -> Result<Config> {
        Ok(Config {
            size: size_from_env("BENCH_SIZE_MB")?,
            parallel_size: size_from_env("BENCH_PARALLEL_MB")?,
        })
    }
}

/// `name` in MB (10^6 bytes), or [`DEFAULT_SIZE_MB`] when unset.
fn size_from_env(name: &str) -> Result<u64> {
    let mb = match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{name}={v:?} is not a whole number of MB"))?,
        Err(std::env::VarError::NotPresent) => DEFAULT_SIZE_MB,
        Err(e) => return Err(e).with_context(|| format!("reading {name}")),
    };
    ensure!(mb > 0, "{name} must be at least 1 (MB)");
    mb.checked_mul(1_000_000)
        .with_context(|| format!("{name}={mb} MB overflows"))
}

// ---------------------------------------------------------------------------
// Content: deterministic, generated on the fly, never held whole.
// ---------------------------------------------------------------------------

/// Pseudo-random file content produced piece by piece, so a 618 MB "file"
/// never exists in memory or on disk. Random bytes also defeat any
/// compression on the way. `SmallRng` fills at several GB/s, far faster than
/// anything measured here.
struct Content {
    rng: SmallRng,
    remaining: u64,
}

impl Content {
    fn new(len: u64) -> Content {
        Content {
            rng: SmallRng::seed_from_u64(CONTENT_SEED),
            remaining: len,
        }
    }

    /// The next piece of at most `max` bytes; `None` once `len` bytes are out.
    fn next_piece(&mut self, max: usize) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = usize::try_from(self.remaining).map_or(max, |r| r.min(max));
        let mut piece = vec![0u8; n];
        self.rng.fill_bytes(&mut piece);
        self.remaining -= n as u64;
        Some(Bytes::from(piece))
    }
}

/// The content as a request body stream.
fn content_stream(len: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut content = Content::new(len);
    futures_util::stream::iter(std::iter::from_fn(move || content.next_piece(PIECE_BYTES)).map(Ok))
}

/// SHA-256 (hex) of the `len`-byte content, computed by generating it again.
fn content_sha256(len: u64) -> String {
    let mut content = Content::new(len);
    let mut hasher = Sha256::new();
    while let Some(piece) = content.next_piece(PIECE_BYTES) {
        hasher.update(&piece);
    }
    hex::encode(hasher.finalize())
}

// ---------------------------------------------------------------------------
// Phase 1: raw baseline through the storage layer.
// ---------------------------------------------------------------------------

/// Bytes moved in some time.
#[derive(Clone, Copy)]
struct Rate {
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn mb_per_s(self) -> f64 {
        self.bytes as f64 / MB / self.elapsed.as_secs_f64()
    }

    fn to_json(self) -> Value {
        json!({
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "mb_per_s": self.mb_per_s(),
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.1} MB/s  ({:.2} s)",
            self.mb_per_s(),
            self.elapsed.as_secs_f64()
        )
    }
}

struct RawFigures {
    write: Rate,
    read: Rate,
}

/// Writes then reads `size` bytes with the server's storage functions on a
/// fresh database in a temporary directory (removed afterwards).
///
/// `Store::open` (with the server's default disk reserve) applies the
/// server's pragmas and schema, `chunks::insert` is the server's chunk
/// transaction and `chunks::read` its one-chunk `SELECT`, so the baseline
/// differs from the server only by what the server adds: HTTP, multipart
/// parsing, and handing chunks between threads.
fn raw_baseline(size: u64) -> Result<RawFigures> {
    let dir = tempfile::Builder::new()
        .prefix("share-bench-raw-")
        .tempdir()
        .context("creating the raw baseline's temp dir")?;
    let db = dir.path().join("raw.db");
    let store = Store::open(&db, DEFAULT_DISK_RESERVE)
        .with_context(|| format!("opening {}", db.display()))?;
    let id = EntryId::generate();
    let write = raw_write(&store, &id, size)?;
    let (read, digest) = raw_read(&store, &id, size)?;
    ensure!(
        digest == content_sha256(size),
        "the raw baseline read back different bytes than it wrote"
    );
    drop(store);
    dir.close()
        .context("removing the raw baseline's temp dir")?;
    Ok(RawFigures { write, read })
}

/// Times only the storage calls (content generation is excluded, which makes
/// the baseline, and so the ratio's denominator, as fast as it can be). Like
/// an upload, it starts with the `uploading` row, commits
/// [`CHUNKS_PER_TRANSACTION`] chunks per transaction and ends with the
/// durable (fsynced) completion.
fn raw_write(store: &Store, id: &EntryId, size: u64) -> Result<Rate> {
    let upload = NewUpload {
        id: id.clone(),
        filename: "raw.bin".into(),
        chunk_size: CHUNK_SIZE,
        upload_time_ms: now_millis(),
        expiration: Expiration::Never,
        max_downloads: None,
        guest_link: None,
    };
    let mut content = Content::new(size);
    let chunk_len = chunk_len()?;
    let mut busy = Duration::ZERO;

    let started = Instant::now();
    entries::start_upload(store, &upload).context("raw: inserting the entry row")?;
    busy += started.elapsed();
    let mut next_index = 0u64;
    loop {
        let batch: Vec<Bytes> = (0..CHUNKS_PER_TRANSACTION)
            .map_while(|_| content.next_piece(chunk_len))
            .collect();
        if batch.is_empty() {
            break;
        }
        let started = Instant::now();
        chunks::insert(store, id, next_index, &batch)
            .with_context(|| format!("raw: inserting chunks from {next_index}"))?;
        busy += started.elapsed();
        next_index += batch.len() as u64;
    }
    let done = FinishedUpload {
        size,
        content_type: "application/octet-stream".into(),
        note: None,
    };
    let started = Instant::now();
    entries::finish_upload(store, id, &done).context("raw: completing the entry")?;
    busy += started.elapsed();
    Ok(Rate {
        bytes: size,
        elapsed: busy,
    })
}

/// Reads every chunk with one `SELECT … WHERE id = ? AND chunk_index = ?`
/// each, timing only the reads; returns the SHA-256 of what came back.
fn raw_read(store: &Store, id: &EntryId, size: u64) -> Result<(Rate, String)> {
    let mut hasher = Sha256::new();
    let mut busy = Duration::ZERO;
    for index in 0..size.div_ceil(CHUNK_SIZE) {
        let len =
            usize::try_from((size - index * CHUNK_SIZE).min(CHUNK_SIZE)).context("chunk length")?;
        let started = Instant::now();
        let chunk = chunks::read(store, id, index, 0, len)
            .with_context(|| format!("raw: reading chunk {index}"))?;
        busy += started.elapsed();
        hasher.update(&chunk);
    }
    let rate = Rate {
        bytes: size,
        elapsed: busy,
    };
    Ok((rate, hex::encode(hasher.finalize())))
}

fn chunk_len() -> Result<usize> {
    usize::try_from(CHUNK_SIZE).context("the chunk size does not fit in memory")
}

// ---------------------------------------------------------------------------
// The server process.
// ---------------------------------------------------------------------------

/// A running release `share-server` on a fresh database in its own temp dir.
/// Dropped without [`ServerProcess::stop`] (an error path), the child is
/// killed (`kill_on_drop`) and the directory removed.
struct ServerProcess {
    child: Child,
    pid: Pid,
    base_url: String,
    /// The debug listener, when started with one.
    debug_url: Option<String>,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
    dir: TempDir,
}

impl ServerProcess {
    /// Starts a server; with `debug`, also its debug listener (`/debug/stats`).
    async fn start(debug: bool) -> Result<ServerProcess> {
        let dir = tempfile::Builder::new()
            .prefix("share-bench-server-")
            .tempdir()
            .context("creating the server's temp dir")?;
        let db = dir.path().join("store.db");
        let mut child = Command::new(env!("CARGO_BIN_EXE_share-server"))
            .arg("--db")
            .arg(&db)
            .args([
                "--port",
                "0",
                "--listen",
                "127.0.0.1",
                "--debug-listen",
                if debug { "127.0.0.1:0" } else { "off" },
            ])
            .args(["--chunk-size", &CHUNK_SIZE.to_string()])
            .env("PS_SHARED_SECRET", SECRET)
            // Warnings and errors still reach our stderr; info lines would
            // drown the figures.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting share-server")?;
        let raw_pid = child.id().context("share-server exited at once")?;
        let pid = Pid::from_raw(i32::try_from(raw_pid).context("pid out of range")?);
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(SERVER_START_TIMEOUT, lines.next_line())
            .await
            .context("share-server did not print its address in time")?
            .context("reading share-server's stdout")?
            .context("share-server exited before printing its address")?;
        let base_url = line
            .strip_prefix("share-server listening on ")
            .with_context(|| format!("unexpected first line from share-server: {line:?}"))?
            .trim()
            .to_owned();
        let debug_url = if debug {
            let line = tokio::time::timeout(SERVER_START_TIMEOUT, lines.next_line())
                .await
                .context("share-server did not print its debug address in time")?
                .context("reading share-server's stdout")?
                .context("share-server exited before printing its debug address")?;
            Some(
                line.strip_prefix("share-server debug listening on ")
                    .with_context(|| format!("unexpected second line from share-server: {line:?}"))?
                    .trim()
                    .to_owned(),
            )
        } else {
            None
        };
        Ok(ServerProcess {
            child,
            pid,
            base_url,
            debug_url,
            _stdout: lines,
            dir,
        })
    }

    /// The server's peak resident set so far (`VmHWM`), in MiB.
    fn vm_hwm_mib(&self) -> Result<f64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .with_context(|| format!("no VmHWM line in {path}"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("unreadable VmHWM in {path}"))?;
        Ok(kib as f64 * 1024.0 / MIB)
    }

    /// SIGTERM (the graceful path: drain, checkpoint), wait for the exit,
    /// then remove the temp dir.
    async fn stop(mut self) -> Result<()> {
        kill(self.pid, Signal::SIGTERM).context("sending SIGTERM to share-server")?;
        let status = match tokio::time::timeout(SERVER_STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.context("waiting for share-server to exit")?,
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .context("killing share-server after SIGTERM timed out")?;
                bail!("share-server did not exit within {SERVER_STOP_TIMEOUT:?} of SIGTERM");
            }
        };
        ensure!(status.success(), "share-server exited with {status}");
        self.dir.close().context("removing the server's temp dir")?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// HTTP client side.
// ---------------------------------------------------------------------------

/// A logged-in client of one server.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    base_url: String,
    /// `sharerig_session=…`, sent as the `Cookie` header.
    cookie: String,
}

impl Session {
    async fn login(base_url: &str) -> Result<Session> {
        // No proxy: a proxy from the environment must not sit on loopback traffic.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let response = http
            .post(format!("{base_url}/api/auth"))
            .json(&json!({ "sharedSecret": SECRET }))
            .send()
            .await
            .context("POST /api/auth")?;
        ensure!(
            response.status().is_success(),
            "login failed: HTTP {}",
            response.status()
        );
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.starts_with(&format!("{SESSION_COOKIE}=")))
            .context("login set no session cookie")?
            .to_owned();
        Ok(Session {
            http,
            base_url: base_url.to_owned(),
            cookie,
        })
    }

    /// Uploads `size` generated bytes as one streamed multipart request and
    /// returns the new id and the time until the JSON response was read.
    async fn upload(&self, size: u64) -> Result<(String, Duration)> {
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(content_stream(size)),
            size,
        )
        .file_name("bench.bin")
        .mime_str("application/octet-stream")
        .context("multipart content type")?;
        let form = reqwest::multipart::Form::new().part("file", part);

        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/api/entry", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .multipart(form)
            .send()
            .await
            .context("POST /api/entry")?;
        let status = response.status();
        let body = response
            .text()
            .await
            .context("reading the upload response")?;
        let elapsed = started.elapsed();
        ensure!(status.is_success(), "upload failed: HTTP {status}: {body}");
        let created: Value = serde_json::from_str(&body)
            .with_context(|| format!("upload response is not JSON: {body}"))?;
        let id = created["id"]
            .as_str()
            .with_context(|| format!("upload response has no id: {body}"))?
            .to_owned();
        Ok((id, elapsed))
    }

    /// Downloads `/-{id}` and returns the time until the last byte, checking
    /// the length. With `hasher`, every byte is hashed as it arrives (inside
    /// the timed section); without, bytes are only counted and dropped.
    async fn download(
        &self,
        id: &str,
        size: u64,
        mut hasher: Option<&mut Sha256>,
    ) -> Result<Duration> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}/-{id}", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .with_context(|| format!("GET /-{id}"))?;
        ensure!(
            response.status() == reqwest::StatusCode::OK,
            "download failed: HTTP {}",
            response.status()
        );
        let mut body = response.bytes_stream();
        let mut received = 0u64;
        while let Some(piece) = body.next().await {
            let piece = piece.context("reading the download body")?;
            received += piece.len() as u64;
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(&piece);
            }
        }
        let elapsed = started.elapsed();
        ensure!(
            received == size,
            "downloaded {received} bytes, uploaded {size}"
        );
        Ok(elapsed)
    }
}

/// The most any download can reach on this machine: `size` bytes over
/// loopback TCP in the server's chunk-sized writes, with no HTTP and no
/// storage, read by a client that only counts. The raw read runs at memory
/// speed (the database is in the page cache), above this ceiling, so the
/// download ratio is bounded by `ceiling / raw read` whatever the server does.
async fn loopback_ceiling(size: u64) -> Result<Rate> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the loopback probe")?;
    let addr = listener.local_addr().context("loopback probe address")?;
    let sender = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let piece = vec![0x5a_u8; CHUNK_SIZE as usize];
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK_SIZE) as usize;
            socket.write_all(&piece[..n]).await?;
            left -= n as u64;
        }
        std::io::Result::Ok(())
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting to the loopback probe")?;
    let mut buf = vec![0u8; PIECE_BYTES];
    let mut received = 0u64;
    while received < size {
        let n = socket
            .read(&mut buf)
            .await
            .context("reading the loopback probe")?;
        ensure!(n > 0, "loopback probe closed after {received} bytes");
        received += n as u64;
    }
    let elapsed = started.elapsed();
    sender
        .await
        .context("loopback sender panicked")?
        .context("loopback sender")?;
    Ok(Rate {
        bytes: size,
        elapsed,
    })
}

// ---------------------------------------------------------------------------
// Phase 4: what introspection costs.
// ---------------------------------------------------------------------------

/// Target for one `/debug/stats` collection at steady state.
const COLLECT_TARGET_MS: f64 = 2.0;
/// Idle collections sampled for the collection time.
const IDLE_SAMPLES: usize = 200;
/// The poller's rate: 10 Hz, much more often than any scraper.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Uploads per server, alternating between the two servers.
const COST_ROUNDS: usize = 3;

struct CostFigures {
    collect_median_ms: f64,
    collect_p99_ms: f64,
    request_median_ms: f64,
    /// Median upload of the server nobody polls.
    without: Rate,
    /// Median upload of the server polled at 10 Hz meanwhile.
    with: Rate,
    polls: usize,
    hwm_without_mib: f64,
    hwm_with_mib: f64,
}

/// Two fresh servers; uploads alternate between them (so machine noise hits
/// both alike), and one of them is polled at 10 Hz during its uploads.
async fn introspection_cost(size: u64) -> Result<CostFigures> {
    let quiet = ServerProcess::start(true).await?;
    let polled = ServerProcess::start(true).await?;
    let debug = polled.debug_url.clone().context("no debug listener")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")?;

    let mut collect = Vec::with_capacity(IDLE_SAMPLES);
    let mut request = Vec::with_capacity(IDLE_SAMPLES);
    for _ in 0..IDLE_SAMPLES {
        let started = Instant::now();
        let stats = fetch_stats(&http, &debug).await?;
        request.push(started.elapsed().as_secs_f64() * 1e3);
        collect.push(
            stats["collect_seconds"]
                .as_f64()
                .context("stats without collect_seconds")?
                * 1e3,
        );
    }

    let quiet_session = Session::login(&quiet.base_url).await?;
    let polled_session = Session::login(&polled.base_url).await?;
    let (mut without, mut with, mut polls) = (Vec::new(), Vec::new(), 0);
    for _ in 0..COST_ROUNDS {
        without.push(quiet_session.upload(size).await?.1);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let poller = tokio::spawn(poll_stats(http.clone(), debug.clone(), stopped));
        with.push(polled_session.upload(size).await?.1);
        let _ = stop.send(());
        polls += poller.await.context("poller panicked")??;
    }
    let figures = CostFigures {
        collect_median_ms: percentile(&mut collect, 0.5),
        collect_p99_ms: percentile(&mut collect, 0.99),
        request_median_ms: percentile(&mut request, 0.5),
        without: median_rate(size, &mut without),
        with: median_rate(size, &mut with),
        polls,
        hwm_without_mib: quiet.vm_hwm_mib()?,
        hwm_with_mib: polled.vm_hwm_mib()?,
    };
    quiet.stop().await?;
    polled.stop().await?;
    Ok(figures)
}

async fn fetch_stats(http: &reqwest::Client, debug: &str) -> Result<Value> {
    http.get(format!("{debug}/debug/stats"))
        .send()
        .await
        .context("GET /debug/stats")?
        .error_for_status()
        .context("GET /debug/stats")?
        .json()
        .await
        .context("decoding /debug/stats")
}

/// Fetches `/debug/stats` every [`POLL_INTERVAL`] until `stop`; returns how many times.
async fn poll_stats(
    http: reqwest::Client,
    debug: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<usize> {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    let mut polls = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(polls),
            _ = ticker.tick() => {
                fetch_stats(&http, &debug).await?;
                polls += 1;
            }
        }
    }
}

/// The `q` quantile (nearest rank) of `values`, sorting them.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied().unwrap_or(f64::NAN)
}

fn median_rate(bytes: u64, times: &mut [Duration]) -> Rate {
    times.sort();
    Rate {
        bytes,
        elapsed: times.get(times.len() / 2).copied().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// Phases 2 and 3.
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct SingleFigures {
    upload: Rate,
    /// The timed download: bytes counted, not hashed (the figure compared
    /// with the raw read).
    download: Rate,
    /// The second, verifying download, hashed as it arrives (for reference:
    /// SHA-256 on the 2-core client is a large share of its time).
    verified_download: Rate,
    /// The verified SHA-256 of both the uploaded and the downloaded bytes.
    sha256: String,
    /// The server's VmHWM after the upload and downloads, for reference.
    hwm_mib: f64,
}

/// One upload then two downloads of `size` bytes on a fresh server: the
/// first timed with the client doing as little as possible, the second
/// hashing every byte to verify the stored file against the upload.
///
/// Hashing inside the timed download would measure the client: SHA-256
/// runs at ~2 GB/s here, about the speed of the raw read being compared.
async fn server_single(size: u64) -> Result<SingleFigures> {
    // Outside the timed request: the stream regenerates the same bytes.
    let expected = tokio::task::spawn_blocking(move || content_sha256(size))
        .await
        .context("hashing thread panicked")?;
    let server = ServerProcess::start(false).await?;
    let session = Session::login(&server.base_url).await?;
    let (id, upload) = session.upload(size).await?;
    let download = session.download(&id, size, None).await?;
    let mut hasher = Sha256::new();
    let verified_download = session.download(&id, size, Some(&mut hasher)).await?;
    let got = hex::encode(hasher.finalize());
    ensure!(
        got == expected,
        "download SHA-256 {got} differs from upload SHA-256 {expected}"
    );
    let hwm_mib = server.vm_hwm_mib()?;
    server.stop().await?;
    let rate = |elapsed| Rate {
        bytes: size,
        elapsed,
    };
    Ok(SingleFigures {
        upload: rate(upload),
        download: rate(download),
        verified_download: rate(verified_download),
        sha256: got,
        hwm_mib,
    })
}

struct MemoryFigures {
    /// VmHWM right after the server printed its address.
    startup_hwm_mib: f64,
    /// VmHWM after the parallel uploads completed.
    peak_hwm_mib: f64,
    /// All parallel uploads together, wall clock (for reference).
    total: Rate,
}

/// [`PARALLEL_UPLOADS`] uploads of `size` bytes at once on a fresh server.
async fn server_parallel(size: u64) -> Result<MemoryFigures> {
    let server = ServerProcess::start(false).await?;
    let startup_hwm_mib = server.vm_hwm_mib()?;
    let session = Session::login(&server.base_url).await?;
    let started = Instant::now();
    let uploads: Vec<_> = (0..PARALLEL_UPLOADS)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.upload(size).await })
        })
        .collect();
    for upload in uploads {
        upload.await.context("an upload task panicked")??;
    }
    let elapsed = started.elapsed();
    let peak_hwm_mib = server.vm_hwm_mib()?;
    server.stop().await?;
    Ok(MemoryFigures {
        startup_hwm_mib,
        peak_hwm_mib,
        total: Rate {
            bytes: size * PARALLEL_UPLOADS as u64,
            elapsed,
        },
    })
}

// ---------------------------------------------------------------------------
// Reporting.
// ---------------------------------------------------------------------------

struct Report {
    config: Config,
    raw: RawFigures,
    /// What any download can reach here (context for the download ratio).
    loopback: Rate,
    single: SingleFigures,
    memory: MemoryFigures,
    cost: CostFigures,
}

impl Report {
    fn upload_ratio(&self) -> f64 {
        self.single.upload.mb_per_s() / self.raw.write.mb_per_s()
    }

    fn download_ratio(&self) -> f64 {
        self.single.download.mb_per_s() / self.raw.read.mb_per_s()
    }

    fn print_summary(&self) {
        let up = self.upload_ratio();
        let down = self.download_ratio();
        let peak = self.memory.peak_hwm_mib;
        println!(
            "\nsummary ({} file, MB = 10^6 bytes)",
            fmt_mb(self.config.size)
        );
        println!(
            "  {:<34} {:>12}  {:>14}  result",
            "figure", "measured", "target"
        );
        row("raw write (storage layer)", &mbps(self.raw.write), "", "");
        row("raw read (storage layer)", &mbps(self.raw.read), "", "");
        row(
            "loopback TCP (no HTTP/storage)",
            &mbps(self.loopback),
            "",
            "",
        );
        row("server upload", &mbps(self.single.upload), "", "");
        row("server download", &mbps(self.single.download), "", "");
        row(
            "server download + client SHA-256",
            &mbps(self.single.verified_download),
            "",
            "",
        );
        row(
            "upload / raw write",
            &format!("{up:.2}"),
            &format!(">= {RATIO_TARGET:.2}"),
            verdict(up >= RATIO_TARGET),
        );
        row(
            "download / raw read",
            &format!("{down:.2}"),
            &format!(">= {RATIO_TARGET:.2}"),
            verdict(down >= RATIO_TARGET),
        );
        row(
            "download / loopback TCP",
            &format!(
                "{:.2}",
                self.single.download.mb_per_s() / self.loopback.mb_per_s()
            ),
            "",
            "",
        );
        row(
            "server VmHWM after startup",
            &format!("{:.1} MiB", self.memory.startup_hwm_mib),
            "",
            "",
        );
        row(
            "server VmHWM, 1 up + 1 down",
            &format!("{:.1} MiB", self.single.hwm_mib),
            "",
            "",
        );
        row(
            &format!(
                "server VmHWM, {PARALLEL_UPLOADS} x {} uploads",
                fmt_mb(self.config.parallel_size)
            ),
            &format!("{peak:.1} MiB"),
            &format!("<= {PEAK_RSS_TARGET_MIB:.0} MiB"),
            verdict(peak <= PEAK_RSS_TARGET_MIB),
        );
        row(
            "parallel uploads, aggregate",
            &mbps(self.memory.total),
            "",
            "",
        );
        row(
            "/debug/stats collect, median",
            &format!("{:.3} ms", self.cost.collect_median_ms),
            "< 2 ms",
            verdict(self.cost.collect_median_ms < COLLECT_TARGET_MS),
        );
        row(
            "/debug/stats collect, p99",
            &format!("{:.3} ms", self.cost.collect_p99_ms),
            "",
            "",
        );
        row(
            "upload with / without 10 Hz poller",
            &format!(
                "{:.2}",
                self.cost.with.mb_per_s() / self.cost.without.mb_per_s()
            ),
            "",
            "",
        );
        row(
            "VmHWM with - without poller",
            &format!(
                "{:+.1} MiB",
                self.cost.hwm_with_mib - self.cost.hwm_without_mib
            ),
            "",
            "",
        );
    }

    fn to_json(&self) -> Value {
        json!({
            "unix_time": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "machine": { "cores": cores(), "kernel": kernel_release() },
            "chunk_size": CHUNK_SIZE,
            "size_bytes": self.config.size,
            "parallel_uploads": PARALLEL_UPLOADS,
            "parallel_size_bytes": self.config.parallel_size,
            "raw": { "write": self.raw.write.to_json(), "read": self.raw.read.to_json() },
            "loopback_tcp": self.loopback.to_json(),
            "server": {
                "upload": self.single.upload.to_json(),
                "download": self.single.download.to_json(),
                "verified_download": self.single.verified_download.to_json(),
                "sha256": self.single.sha256,
                "vm_hwm_mib": self.single.hwm_mib,
            },
            "ratios": {
                "upload": self.upload_ratio(),
                "download": self.download_ratio(),
                "target": RATIO_TARGET,
                "upload_pass": self.upload_ratio() >= RATIO_TARGET,
                "download_pass": self.download_ratio() >= RATIO_TARGET,
            },
            "introspection_cost": {
                "collect_median_ms": self.cost.collect_median_ms,
                "collect_p99_ms": self.cost.collect_p99_ms,
                "request_median_ms": self.cost.request_median_ms,
                "upload_without_poller": self.cost.without.to_json(),
                "upload_with_poller": self.cost.with.to_json(),
                "polls": self.cost.polls,
                "vm_hwm_without_poller_mib": self.cost.hwm_without_mib,
                "vm_hwm_with_poller_mib": self.cost.hwm_with_mib,
            },
            "memory": {
                "startup_vm_hwm_mib": self.memory.startup_hwm_mib,
                "parallel_vm_hwm_mib": self.memory.peak_hwm_mib,
                "target_mib": PEAK_RSS_TARGET_MIB,
                "pass": self.memory.peak_hwm_mib <= PEAK_RSS_TARGET_MIB,
                "parallel_total": self.memory.total.to_json(),
            },
        })
    }

    fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json()).context("encoding the figures")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

fn row(name: &str, measured: &str, target: &str, result: &str) {
    let line = format!("  {name:<34} {measured:>12}  {target:>14}  {result}");
    println!("{}", line.trim_end());
}

fn mbps(rate: Rate) -> String {
    format!("{:.1} MB/s", rate.mb_per_s())
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

fn fmt_mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / MB)
}

/// `$CARGO_TARGET_DIR/bench-throughput.json`, else the workspace's
/// `target/` (the bench runs in `server/`, so the path is anchored on the
/// manifest dir, not the cwd). A relative `CARGO_TARGET_DIR` is taken from
/// the workspace root, as cargo does when invoked there.
fn json_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("bench-throughput.json")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
