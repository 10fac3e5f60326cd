//! The `/healthz` prober: during the whole run, every `[health] interval`, a fresh connection
//! from 127.0.0.1 asks `GET /healthz` with a timeout, like a load balancer's health check or a
//! new visitor. Each probe is one line of `healthz.jsonl` (`run_format::HealthProbe`). Probes
//! run concurrently, so a server that stalls them is still probed on time.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sampler;
use crate::scenario::HealthSpec;
use run_format::HealthProbe;

pub(crate) struct Prober {
    /// `host:port` of the server (from its base URL).
    pub address: String,
    pub spec: HealthSpec,
    pub started: Instant,
    pub label: sampler::Phase,
}

impl Prober {
    /// Probes until `stop`, then waits for the probes in flight (each ends within its
    /// timeout) and returns how many were written.
    pub(crate) async fn run(self, path: &Path, stop: CancellationToken) -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut probes = JoinSet::new();
        let mut tick = tokio::time::interval(self.spec.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut written = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let t_ms = self.started.elapsed().as_millis() as u64;
                    let (address, phase, timeout) =
                        (self.address.clone(), self.label.get(), self.spec.timeout);
                    probes.spawn(async move { probe(&address, t_ms, phase, timeout).await });
                }
                Some(Ok(done)) = probes.join_next() => {
                    written += write(&mut out, &done)?;
                }
                () = stop.cancelled() => break,
            }
        }
        while let Some(done) = probes.join_next().await {
            if let Ok(done) = done {
                written += write(&mut out, &done)?;
            }
        }
        out.flush()?;
        Ok(written)
    }
}

fn write(out: &mut impl Write, probe: &HealthProbe) -> std::io::Result<u64> {
    let line = serde_json::to_string(probe).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    // Flushed as written, like the samples: a killed rig keeps its probes.
    out.flush()?;
    Ok(1)
}

/// One probe: connect, `GET /healthz`, read the status line.
async fn probe(address: &str, t_ms: u64, phase: String, timeout: Duration) -> HealthProbe {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, ask(address)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, error) = match result {
        Ok(Ok(status)) if status == 200 => (Some(status), None),
        Ok(Ok(status)) => (Some(status), Some(format!("status {status}"))),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (None, Some("timed out".to_owned())),
    };
    HealthProbe {
        t_ms,
        phase,
        ok: error.is_none(),
        status,
        latency_ms,
        timeout_ms: timeout.as_secs_f64() * 1000.0,
        error,
    }
}

async fn ask(address: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a status line",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_of(&head).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP status line")
    })
}

/// `HTTP/1.1 200 OK` → 200.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// `host:port` of a base URL like `http://127.0.0.1:4001`.
pub(crate) fn address_of(base_url: &str) -> String {
    base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_addresses() {
        assert_eq!(
            status_of(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"),
            Some(200)
        );
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"garbage\r\n"), None);
        assert_eq!(address_of("http://127.0.0.1:4001/"), "127.0.0.1:4001");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failed_probe() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe(
            &format!("127.0.0.1:{port}"),
            5,
            "x".into(),
            Duration::from_secs(1),
        )
        .await;
        assert!(!p.ok);
        assert!(p.status.is_none() && p.error.is_some());
        assert_eq!(p.counted_ms(), 1000.0);
    }
}
