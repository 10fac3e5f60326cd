//! A process's memory from `/proc/<pid>/status` and its open file descriptors.

use procfs::FromRead;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Resident memory of one process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// VmRSS: everything resident (anon + file + shmem).
    pub vm_rss_bytes: u64,
    /// RssAnon: heap, stacks, allocator arenas: what an OOM kill is about.
    pub rss_anon_bytes: u64,
    /// RssFile: mapped files (the binary, libraries, mmapped data).
    pub rss_file_bytes: u64,
    /// RssShmem: shared memory (e.g. SQLite's WAL index `-shm`).
    pub rss_shmem_bytes: u64,
    /// VmHWM: peak VmRSS since start.
    pub vm_hwm_bytes: u64,
    pub threads: u64,
    /// Open file descriptors; `None` when `/proc/<pid>/fd` is not readable.
    pub open_fds: Option<u64>,
}

/// Parses `/proc/<pid>/status` text (fds are not in it: `open_fds` is `None`).
pub fn parse_status(text: &str) -> Result<ProcessMemory> {
    let status = procfs::process::Status::from_read(text.as_bytes()).map_err(|e| Error::Parse {
        what: "/proc/<pid>/status",
        detail: e.to_string(),
    })?;
    let kib = |v: Option<u64>| v.unwrap_or(0) * 1024;
    Ok(ProcessMemory {
        vm_rss_bytes: kib(status.vmrss),
        rss_anon_bytes: kib(status.rssanon),
        rss_file_bytes: kib(status.rssfile),
        rss_shmem_bytes: kib(status.rssshmem),
        vm_hwm_bytes: kib(status.vmhwm),
        threads: status.threads,
        open_fds: None,
    })
}

/// Reads process `pid` (`None`: this process).
pub fn read(pid: Option<i32>) -> Result<ProcessMemory> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let mut memory = parse_status(&crate::read_to_string(format!("{dir}/status").as_ref())?)?;
    memory.open_fds = std::fs::read_dir(format!("{dir}/fd"))
        .ok()
        .map(|entries| entries.count() as u64);
    Ok(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tshare-server\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nNgid:\t0\nPid:\t42\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\nVmPeak:\t  100000 kB\nVmSize:\t   90000 kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   12288 kB\nRssAnon:\t    8192 kB\nRssFile:\t    4000 kB\nRssShmem:\t      96 kB\nVmData:\t   50000 kB\nVmStk:\t     132 kB\nVmExe:\t    4000 kB\nVmLib:\t    2000 kB\nVmPTE:\t     100 kB\nVmSwap:\t       0 kB\nThreads:\t7\nSigQ:\t0/1000\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180000440\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nCpus_allowed:\tff\nCpus_allowed_list:\t0-7\nMems_allowed:\t1\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t1\n";

    #[test]
    fn parses_status_in_bytes() {
        let m = parse_status(STATUS).unwrap();
        assert_eq!(m.vm_rss_bytes, 12288 * 1024);
        assert_eq!(m.rss_anon_bytes, 8192 * 1024);
        assert_eq!(m.rss_file_bytes, 4000 * 1024);
        assert_eq!(m.rss_shmem_bytes, 96 * 1024);
        assert_eq!(m.vm_hwm_bytes, 20480 * 1024);
        assert_eq!(m.threads, 7);
    }

    #[test]
    fn reads_this_process() {
        let m = read(None).unwrap();
        assert!(m.vm_rss_bytes > 0 && m.vm_hwm_bytes >= m.vm_rss_bytes);
        assert!(m.open_fds.unwrap() >= 3);
    }
}
