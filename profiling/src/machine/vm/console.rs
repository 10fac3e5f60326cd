//! The guest kernel's console: what it says about OOM kills and panics.

/// An OOM kill as the guest kernel printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillLine {
    pub pid: u32,
    pub process: String,
    /// anon-rss of the killed process, kB, when printed.
    pub anon_rss_kib: Option<u64>,
}

/// `Out of memory: Killed process 123 (share-server) total-vm:...kB, anon-rss:...kB, ...`
pub fn oom_kill(line: &str) -> Option<KillLine> {
    let rest = line.split("Killed process ").nth(1)?;
    if !line.contains("out of memory") && !line.contains("Out of memory") {
        return None;
    }
    let (pid, rest) = rest.split_once(' ')?;
    let process = rest.strip_prefix('(')?.split_once(')')?.0.to_owned();
    let anon_rss_kib = rest
        .split("anon-rss:")
        .nth(1)
        .and_then(|r| r.split("kB").next())
        .and_then(|n| n.trim().parse().ok());
    Some(KillLine {
        pid: pid.parse().ok()?,
        process,
        anon_rss_kib,
    })
}

/// `Kernel panic - not syncing: ...`
pub fn is_panic(line: &str) -> bool {
    line.contains("Kernel panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_oom_kill_line() {
        let line = "[   41.137853] Out of memory: Killed process 112 (share-server) total-vm:1338420kB, \
                    anon-rss:171224kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:604kB oom_score_adj:0";
        assert_eq!(
            oom_kill(line),
            Some(KillLine {
                pid: 112,
                process: "share-server".into(),
                anon_rss_kib: Some(171224)
            })
        );
        assert_eq!(oom_kill("[ 1.0] sharerig-init: share-server started"), None);
        assert_eq!(oom_kill("Killed process 5 (x) by hand"), None);
        assert!(is_panic(
            "[ 1.75] Kernel panic - not syncing: No working init found."
        ));
    }
}
