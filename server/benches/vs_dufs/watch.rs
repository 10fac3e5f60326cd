//! Peaks of a process's memory, polled from `/proc/<pid>/status` every few
//! milliseconds. `VmHWM` is the kernel's own peak of RSS; anon has no
//! high-water mark, so it is the highest `RssAnon` seen by the poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// Poll period: short enough to catch an anon peak that lasts a chunk or two.
const POLL: Duration = Duration::from_millis(2);

/// One read of `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Status {
    pub(crate) vm_rss_kib: u64,
    pub(crate) vm_hwm_kib: u64,
    pub(crate) rss_anon_kib: u64,
    pub(crate) rss_file_kib: u64,
    pub(crate) threads: u64,
}

impl Status {
    /// One read, parsed by `memstat` (the server's own `/proc` reader; its
    /// `read` also lists the fds, which a 2 ms poll does not need).
    pub(crate) fn read(pid: u32) -> Result<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let m = memstat::process::parse_status(&text)
            .with_context(|| format!("parsing /proc/{pid}/status"))?;
        Ok(Status {
            vm_rss_kib: m.vm_rss_bytes / 1024,
            vm_hwm_kib: m.vm_hwm_bytes / 1024,
            rss_anon_kib: m.rss_anon_bytes / 1024,
            rss_file_kib: m.rss_file_bytes / 1024,
            threads: m.threads,
        })
    }
}

/// Polls a process until stopped; [`Watch::finish`] gives the read with the
/// highest anon, with the final `VmHWM`.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Status>,
}

impl Watch {
    pub(crate) fn start(pid: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = Status::default();
            while !flag.load(Ordering::Relaxed) {
                match Status::read(pid) {
                    Ok(now) if now.rss_anon_kib > peak.rss_anon_kib => peak = now,
                    Ok(now) => peak.vm_hwm_kib = now.vm_hwm_kib,
                    Err(_) => break,
                }
                std::thread::sleep(POLL);
            }
            peak
        });
        Watch { stop, thread }
    }

    pub(crate) fn finish(self) -> Status {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
