//! The guest's two streams into [`Shared`]: the kernel console (copied to
//! `console.log`, read for OOM kills and panics) and the agent's frames.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::agent::{self, Message};
use super::console;
use super::shared::Shared;
use crate::machine::OomKill;

/// A console or agent line longer than this is cut (bounds the reader's buffer).
const MAX_LINE: u64 = 64 << 10;

/// One line, at most [`MAX_LINE`] bytes; `None` at the end of the stream.
async fn next_line(reader: &mut (impl AsyncBufRead + Unpin), buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    match reader.take(MAX_LINE).read_until(b'\n', buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
    }
}

/// Copies the console to `console.log` and notes OOM kills and panics.
pub(super) async fn read_console(
    mut reader: impl AsyncBufRead + Unpin,
    path: PathBuf,
    shared: Arc<Shared>,
) {
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot write the guest console log");
            None
        }
    };
    let mut buf = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf).await {
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
        if let Some(kill) = console::oom_kill(&line) {
            shared.update(|s| {
                s.oom_kills.push(OomKill {
                    at: Instant::now(),
                    pid: kill.pid,
                    process: kill.process,
                    line: line.clone(),
                })
            });
        } else if console::is_panic(&line) {
            shared.update(|s| s.panic = Some(line.clone()));
        }
    }
}

/// Parses the agent's stream into the shared state.
pub(super) async fn read_agent(mut reader: impl AsyncBufRead + Unpin, shared: Arc<Shared>) {
    let mut parser = agent::Parser::default();
    let mut buf = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf).await {
        let now = Instant::now();
        let message = parser.push(&line);
        shared.update(|s| {
            s.last_agent_line = Some(now);
            match message {
                Some(Message::Hello { kernel }) => s.info.kernel = kernel,
                Some(Message::Started { pid }) => s.info.server_pid = Some(pid),
                Some(Message::Failed(reason)) => s.failed = Some(reason),
                Some(Message::Sample(sample)) => {
                    s.vmstat_oom_kills = s.vmstat_oom_kills.max(sample.oom_kills.unwrap_or(0));
                    s.info.guest_mem_total_bytes = sample.meminfo.map(|m| m.mem_total_bytes);
                    s.latest = Some((now, *sample));
                }
                Some(Message::Exit { code, signal }) => s.server_exit = Some((code, signal)),
                None => {}
            }
        });
    }
}
