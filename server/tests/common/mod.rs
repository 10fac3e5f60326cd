//! Shared harness for the integration tests: starts the real `share-server`
//! binary through [`testkit`] with a temp database, logs in, streams
//! deterministic uploads and checks downloads against them.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

pub use testkit::SECRET;
pub const CHUNK: u64 = 327_680;
/// Deterministic content is generated in blocks of this size (random access for ranges).
const BLOCK: u64 = 64 * 1024;

/// A temp directory holding the database; outlives server restarts.
pub struct DataDir {
    pub dir: tempfile::TempDir,
}

impl DataDir {
    pub fn new() -> Self {
        DataDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("store.db")
    }

    /// A direct connection to the server's database, for checking what is stored.
    pub fn sql(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.busy_timeout(Duration::from_secs(30))
            .expect("busy timeout");
        conn
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql()
            .query_row(sql, [], |r| r.get(0))
            .expect("count query")
    }
}

/// A running `share-server` (started by [`testkit`]) and a client of it.
pub struct TestServer {
    process: testkit::Server,
    pub base: String,
    /// The debug listener (`/debug/stats`, `/metrics`).
    pub debug_base: String,
    pub log: PathBuf,
    pub http: reqwest::Client,
    cookie: Option<String>,
}

impl TestServer {
    /// Starts the server on `dir`'s database with extra flags, and waits until it listens.
    pub fn start(dir: &DataDir, args: &[&str]) -> Self {
        Self::start_with_db(dir.db().as_path(), dir.dir.path(), args)
    }

    pub fn start_with_db(db: &Path, log_dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(db, log_dir, args, &[])
    }

    /// Like [`TestServer::start_with_db`], with extra environment variables.
    pub fn start_with_env(
        db: &Path,
        log_dir: &Path,
        args: &[&str],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let mut spawn = testkit::Spawn::new(binary())
            .db(db)
            .log_dir(log_dir)
            .args(args);
        for (key, value) in envs {
            spawn = spawn.env(key, value);
        }
        Self::from_spawn(spawn)
    }

    /// Starts the server as `spawn` says (a wrapper, its environment).
    pub fn from_spawn(spawn: testkit::Spawn) -> Self {
        let process = spawn.start().unwrap_or_else(|e| panic!("{e}"));
        TestServer {
            base: process.base.clone(),
            debug_base: process.debug_base.clone().expect("debug listener"),
            log: process.log.clone().expect("log file"),
            process,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&mut self) {
        self.cookie = Some(self.session_cookie().await);
    }

    /// Logs in and returns the session cookie's `name=value` (not kept).
    pub async fn session_cookie(&self) -> String {
        testkit::login(&self.http, &self.base, SECRET)
            .await
            .unwrap_or_else(|e| panic!("login: {e}"))
    }

    /// A request with the session cookie (if logged in).
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match &self.cookie {
            Some(c) => rb.header("cookie", c),
            None => rb,
        }
    }

    /// GETs `path` with the session cookie and decodes its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET request")
            .json()
            .await
            .expect("JSON body")
    }

    /// The ids `/api/entries` lists, newest first.
    pub async fn listed_ids(&self) -> Vec<String> {
        let list = self.get_json("/api/entries").await;
        list.as_array()
            .expect("an array of entries")
            .iter()
            .map(|e| e["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// Uploads `size` bytes of pattern `seed` as `name`; returns the response.
    pub async fn upload(&self, seed: u64, size: u64, name: &str, query: &str) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .part("file", pattern_part(seed, size, name, None))
            .text("note", "from the tests");
        self.req(reqwest::Method::POST, &format!("/api/entry{query}"))
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads and returns the new id, asserting success.
    pub async fn upload_ok(&self, seed: u64, size: u64, name: &str) -> String {
        self.upload_ok_query(seed, size, name, "").await
    }

    /// [`TestServer::upload_ok`] with a query string (`?expiration=...`).
    pub async fn upload_ok_query(&self, seed: u64, size: u64, name: &str, query: &str) -> String {
        let res = self.upload(seed, size, name, query).await;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert_eq!(status, 200, "upload failed: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Downloads `/-{id}` whole and returns (length, SHA-256 hex).
    pub async fn download_hash(&self, id: &str) -> (u64, String) {
        let res = self
            .http
            .get(self.url(&format!("/-{id}")))
            .send()
            .await
            .expect("download");
        assert_eq!(res.status(), 200);
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("body chunk");
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        (len, hex::encode(hasher.finalize()))
    }

    /// Sends a signal and waits for the exit (SIGKILL after `deadline`).
    pub fn stop_with(&mut self, signal: Signal, deadline: Duration) -> ExitStatus {
        self.process
            .stop_with(signal, deadline)
            .unwrap_or_else(|e| panic!("after {signal}: {e}"))
    }

    /// SIGKILLs it and every process it started (a wrapper's server).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// A field of `/proc/<pid>/status` in KiB (VmHWM, VmRSS, ...).
    pub fn status_kib(&self, field: &str) -> u64 {
        self.process
            .status_kib(field)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The `share-server` under test.
pub fn binary() -> PathBuf {
    testkit::share_server_binary!().expect("share-server binary")
}

/// One 64 KiB block of the deterministic pattern (splitmix64 seeded by seed and block).
fn block(seed: u64, index: u64) -> Vec<u8> {
    let mut state =
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(BLOCK as usize);
    while out.len() < BLOCK as usize {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Bytes `start..end` of pattern `seed`.
pub fn pattern_slice(seed: u64, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut pos = start;
    while pos < end {
        let b = block(seed, pos / BLOCK);
        let from = (pos % BLOCK) as usize;
        let to = ((end - pos) + from as u64).min(BLOCK) as usize;
        out.extend_from_slice(&b[from..to]);
        pos += (to - from) as u64;
    }
    out
}

/// SHA-256 hex of the first `size` bytes of pattern `seed`.
pub fn pattern_sha256(seed: u64, size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut pos = 0;
    while pos < size {
        let end = (pos + BLOCK).min(size);
        hasher.update(&block(seed, pos / BLOCK)[..(end - pos) as usize]);
        pos = end;
    }
    hex::encode(hasher.finalize())
}

/// A stream of pattern `seed` (`size` bytes) generated on the fly; `sent`
/// counts bytes handed to the client.
pub fn pattern_stream(
    seed: u64,
    size: u64,
    sent: Option<Arc<AtomicU64>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::iter((0..size.div_ceil(BLOCK)).map(move |i| {
        let mut b = block(seed, i);
        b.truncate((size - i * BLOCK).min(BLOCK) as usize);
        if let Some(sent) = &sent {
            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        Ok(Bytes::from(b))
    }))
}

pub fn pattern_part(
    seed: u64,
    size: u64,
    name: &str,
    sent: Option<Arc<AtomicU64>>,
) -> reqwest::multipart::Part {
    reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(pattern_stream(seed, size, sent)),
        size,
    )
    .file_name(name.to_owned())
    .mime_str("application/octet-stream")
    .expect("mime")
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Status and `error` message of a JSON error response.
pub async fn error_of(res: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = res.status();
    let text = res.text().await.expect("error body");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a JSON error body, got {status} {text:?}"));
    (
        status,
        body["error"].as_str().expect("error message").to_owned(),
    )
}
