//! The live terminal line during a run: phase, bytes received by the server,
//! machine usage against the limit, anon, page cache, OOM kills.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use run_format::Sample;

const MIB: f64 = 1024.0 * 1024.0;

pub struct Live {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// Draws the latest sample on stderr (hidden when stderr is not a terminal).
pub fn spawn(mut latest: watch::Receiver<Option<Sample>>, limit: Option<u64>) -> Live {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let line = bar.clone();
    let task = tokio::spawn(async move {
        while latest.changed().await.is_ok() {
            let text = latest.borrow().as_ref().map(|s| describe(s, limit));
            if let Some(text) = text {
                line.set_message(text);
            }
        }
    });
    Live { bar, task }
}

fn describe(s: &Sample, limit: Option<u64>) -> String {
    let mib = |b: u64| b as f64 / MIB;
    let received = s
        .server
        .as_ref()
        .and_then(|v| v.app.bytes_received_total)
        .map(|b| format!("{:.0} MB in", b as f64 / 1e6))
        .unwrap_or_else(|| "server silent".into());
    let machine = s
        .machine
        .as_ref()
        .map(|m| {
            let limit = limit.map(|l| format!("/{:.0}", mib(l))).unwrap_or_default();
            format!(
                "used {:.0}{limit} MiB (working set {:.0}) | anon {:.0} | cache {:.0} | oom {}",
                mib(m.usage_bytes),
                mib(m.working_set_bytes),
                mib(m.anon_bytes),
                mib(m.file_bytes),
                m.oom_kills
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        })
        .unwrap_or_else(|| "machine unreadable".into());
    let rss = s
        .process
        .as_ref()
        .map(|p| format!(" | server rss {:.1} MiB", mib(p.memory.vm_rss_bytes)))
        .unwrap_or_default();
    format!("{} | {received} | {machine}{rss}", s.phase)
}
