//! Harness for loadgen's integration tests: builds and starts the real `share-server` binary on
//! ephemeral ports with a temp database, and reads what the server says it stored and counted.
//!
//! A test in another package cannot use `CARGO_BIN_EXE_share-server`, so the binary is built
//! with `cargo build -p share-server --message-format=json` and its path taken from cargo's
//! own report: right whatever `CARGO_TARGET_DIR` is (CI sets it outside the checkout).
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loadgen::{ByteSize, Config, Scenario};

pub const SECRET: &str = "loadgen-test-secret";

/// The `share-server` binary, built once per test process.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = Command::new(env!("CARGO"))
            .current_dir(&workspace)
            .args(["build", "-p", "share-server", "--message-format=json"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p share-server");
        assert!(
            output.status.success(),
            "cargo build -p share-server failed"
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "share-server")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no share-server executable")
    })
}

/// A running `share-server` on a temp database; killed when dropped.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub debug_base: String,
    http: reqwest::Client,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the server with extra flags.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(server_binary())
            .arg("--db")
            .arg(dir.path().join("data").join("store.db"))
            .args(["--port", "0", "--listen", "127.0.0.1"])
            .args(["--debug-listen", "127.0.0.1:0"])
            .args(args)
            .env("PS_SHARED_SECRET", SECRET)
            .env_remove("PS_SHARED_SECRET_FILE")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn share-server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            match line.trim().strip_prefix(prefix) {
                Some(address) => address.to_owned(),
                None => panic!("share-server printed {line:?}, expected {prefix}..."),
            }
        };
        let base = read("share-server listening on ");
        let debug_base = read("share-server debug listening on ");
        Server {
            child,
            dir,
            base,
            debug_base,
            http: reqwest::Client::new(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("store.db")
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// A loadgen config for this server: small, quick, quiet, reports in the server's temp dir.
    pub fn config(&self, scenario: Scenario, name: &str) -> Config {
        Config {
            host: self.base.clone(),
            secret: SECRET.to_owned(),
            scenario,
            users: 1,
            increase_rate: 100.0,
            size: ByteSize(20_000_000),
            timeout: Duration::from_secs(60),
            report_dir: self.dir.path().join(name),
            quiet: true,
            ..Config::default()
        }
    }

    /// `app` of `/debug/stats`: the server's counters.
    pub async fn counters(&self) -> serde_json::Value {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/debug/stats", self.debug_base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["app"].clone()
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.counters().await[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name} in /debug/stats"))
    }

    /// Ids of `GET /api/entries`.
    pub async fn listed_ids(&self) -> Vec<String> {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login = client
            .post(format!("{}/api/auth", self.base))
            .json(&serde_json::json!({ "sharedSecret": SECRET }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let entries: Vec<serde_json::Value> = client
            .get(format!("{}/api/entries", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut ids: Vec<String> = entries
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
