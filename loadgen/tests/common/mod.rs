//! Harness for loadgen's integration tests: starts the real `share-server` binary through
//! [`testkit`] (which builds it: a test in another package has no `CARGO_BIN_EXE_share-server`)
//! on a temp database, and reads what the server says it stored and counted.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different part

use std::path::PathBuf;
use std::time::{Duration, Instant};

use loadgen::{ByteSize, Config, Scenario};

pub use testkit::SECRET;

/// A running `share-server` on a temp database; killed when dropped.
pub struct Server {
    process: testkit::Server,
    /// Holds the database, the server's log and the loadgen reports.
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
        let binary = testkit::binary::built(testkit::binary::Profile::Debug).unwrap();
        let process = testkit::Spawn::new(binary)
            .db(dir.path().join("data").join("store.db"))
            .log_dir(dir.path())
            .args(args)
            .rust_log("warn")
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        Server {
            base: process.base.clone(),
            debug_base: process.debug_base.clone().unwrap(),
            process,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("store.db")
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.process.pid()).unwrap()
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
        let cookie = testkit::login(&self.http, &self.base, SECRET)
            .await
            .unwrap();
        let entries: Vec<serde_json::Value> = self
            .http
            .get(format!("{}/api/entries", self.base))
            .header(reqwest::header::COOKIE, cookie)
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
        self.process.kill();
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
