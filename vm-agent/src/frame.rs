//! One sample as text, one frame per write:
//!
//! ```text
//! @sample UPTIME_S PID
//! @meminfo            then /proc/meminfo
//! @status             then /proc/PID/status (absent once the server is gone)
//! @pss KB             Pss from /proc/PID/smaps_rollup
//! @fds N              open file descriptors of the server
//! @vmstat OOM_KILLS   oom_kill from /proc/vmstat
//! @psi                then /proc/pressure/memory
//! @files DB WAL SHM   the database files' sizes, bytes (0: absent)
//! @stats JSON         the server's /debug/stats on one line (absent if it did not answer)
//! @end
//! ```
//!
//! Besides frames the agent writes `@hello KERNEL`, `@started PID`,
//! `@failed REASON` and, last, `@exit CODE SIGNAL` (`-` for none).

use std::io::{Read, Write};
use std::path::Path;

use crate::stats;

/// A /proc file is a few KiB; more is cut (the host then fails to parse it
/// and records the figure as missing).
const MAX_PROC_FILE: u64 = 64 << 10;

pub fn kernel_release() -> String {
    read("/proc/sys/kernel/osrelease".as_ref())
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

/// Appends one frame to `out` (a `Vec`: writing to it cannot fail).
pub fn write(out: &mut Vec<u8>, pid: u32, data: &Path, stats: &stats::Client) {
    let uptime = read("/proc/uptime".as_ref())
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(out, "@sample {uptime} {pid}");
    section(out, "@meminfo", "/proc/meminfo".as_ref());
    let proc_dir = Path::new("/proc").join(pid.to_string());
    section(out, "@status", &proc_dir.join("status"));
    if let Some(pss) =
        read(&proc_dir.join("smaps_rollup")).and_then(|t| field(&t, "Pss:").map(str::to_owned))
    {
        let _ = writeln!(out, "@pss {pss}");
    }
    if let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) {
        let _ = writeln!(out, "@fds {}", fds.count());
    }
    if let Some(kills) =
        read("/proc/vmstat".as_ref()).and_then(|t| field(&t, "oom_kill").map(str::to_owned))
    {
        let _ = writeln!(out, "@vmstat {kills}");
    }
    section(out, "@psi", "/proc/pressure/memory".as_ref());
    let size = |suffix: &str| {
        std::fs::metadata(data.join(format!("store.db{suffix}")))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let _ = writeln!(out, "@files {} {} {}", size(""), size("-wal"), size("-shm"));
    if let Some(json) = stats.fetch() {
        let _ = writeln!(out, "@stats {json}");
    }
    let _ = writeln!(out, "@end");
}

/// A header line and the file's text (left out when the file cannot be read).
fn section(out: &mut Vec<u8>, header: &str, path: &Path) {
    if let Some(text) = read(path) {
        let _ = writeln!(out, "{header}");
        out.extend_from_slice(text.as_bytes());
        if !text.ends_with('\n') {
            out.push(b'\n');
        }
    }
}

fn read(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_PROC_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The first number after `key` at the start of a line.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_of_this_process_has_every_section() {
        let data = std::env::temp_dir();
        let mut out = Vec::new();
        write(
            &mut out,
            std::process::id(),
            &data,
            &stats::Client::new(1, std::time::Duration::from_millis(10)),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("@sample "), "{text}");
        assert!(text.ends_with("@end\n"));
        for header in [
            "\n@meminfo\nMemTotal:",
            "\n@status\nName:",
            "\n@fds ",
            "\n@files ",
        ] {
            assert!(text.contains(header), "no {header:?} in {text}");
        }
        // Nothing listens on port 1: no stats line, and no hang.
        assert!(!text.contains("@stats"));
    }

    #[test]
    fn fields_by_key() {
        let t = "Rss: 10 kB\nPss: 7 kB\n";
        assert_eq!(field(t, "Pss:"), Some("7"));
        assert_eq!(field("oom_kill 3\n", "oom_kill"), Some("3"));
        assert_eq!(field(t, "Swap:"), None);
    }
}
