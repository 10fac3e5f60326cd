//! One sample as text, one frame per write: `@sample`, the sections, `@end`
//! (the tags and their words are in `vm_wire`).

use std::io::{Read, Write};
use std::path::Path;

use vm_wire::Tag;

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
    let _ = writeln!(out, "{} {uptime} {pid}", Tag::Sample);
    section(out, Tag::Meminfo, "/proc/meminfo".as_ref());
    let proc_dir = Path::new("/proc").join(pid.to_string());
    section(out, Tag::Status, &proc_dir.join("status"));
    if let Some(pss) =
        read(&proc_dir.join("smaps_rollup")).and_then(|t| field(&t, "Pss:").map(str::to_owned))
    {
        let _ = writeln!(out, "{} {pss}", Tag::Pss);
    }
    if let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) {
        let _ = writeln!(out, "{} {}", Tag::Fds, fds.count());
    }
    if let Some(kills) =
        read("/proc/vmstat".as_ref()).and_then(|t| field(&t, "oom_kill").map(str::to_owned))
    {
        let _ = writeln!(out, "{} {kills}", Tag::Vmstat);
    }
    section(out, Tag::Psi, "/proc/pressure/memory".as_ref());
    let size = |suffix: &str| {
        std::fs::metadata(data.join(format!("store.db{suffix}")))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let files = vm_wire::files_words(size(""), size("-wal"), size("-shm"));
    let _ = writeln!(out, "{} {files}", Tag::Files);
    if let Some(json) = stats.fetch() {
        let _ = writeln!(out, "{} {json}", Tag::Stats);
    }
    let _ = writeln!(out, "{}", Tag::End);
}

/// A tag line and the file's text (left out when the file cannot be read).
fn section(out: &mut Vec<u8>, tag: Tag, path: &Path) {
    if let Some(text) = read(path) {
        let _ = writeln!(out, "{tag}");
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
        // Read back with the wire's parser: known tags only, from @sample to @end.
        let mut tags = Vec::new();
        for line in text.lines() {
            match vm_wire::parse(line) {
                vm_wire::Line::Tag(tag, rest) => {
                    tags.push(tag);
                    if tag == Tag::Files {
                        assert!(vm_wire::parse_files(rest).is_some(), "{line}");
                    }
                }
                vm_wire::Line::Unknown(word) => panic!("@{word} is no tag"),
                vm_wire::Line::Text(_) => {}
            }
        }
        assert_eq!(tags.first(), Some(&Tag::Sample), "{text}");
        assert_eq!(tags.last(), Some(&Tag::End), "{text}");
        for tag in [Tag::Meminfo, Tag::Status, Tag::Fds, Tag::Files] {
            assert!(tags.contains(&tag), "no {tag} in {text}");
        }
        assert!(text.contains(&format!("\n{}\nMemTotal:", Tag::Meminfo)));
        assert!(text.contains(&format!("\n{}\nName:", Tag::Status)));
        // Nothing listens on port 1: no stats line, and no hang.
        assert!(!tags.contains(&Tag::Stats));
    }

    #[test]
    fn fields_by_key() {
        let t = "Rss: 10 kB\nPss: 7 kB\n";
        assert_eq!(field(t, "Pss:"), Some("7"));
        assert_eq!(field("oom_kill 3\n", "oom_kill"), Some("3"));
        assert_eq!(field(t, "Swap:"), None);
    }
}
