//! `events.jsonl`: what happened when, one JSON object per line.

use serde::{Deserialize, Serialize};

/// The event names, written by the rig and read by the reports.
pub mod name {
    /// `{"pid": ..}`
    pub const SERVER_STARTED: &str = "server-started";
    /// `{"phase": ..}`
    pub const PHASE_START: &str = "phase-start";
    /// `{"phase": .., "ok": ..}`
    pub const PHASE_END: &str = "phase-end";
    /// `{"at_ms": .., "exit": ..}`: the server ended during the run.
    pub const SERVER_DIED: &str = "server-died";
    /// The run was stopped by Ctrl-C.
    pub const INTERRUPTED: &str = "interrupted";
    /// `{"exit": ..}`: the rig stopped the server at the end.
    pub const SERVER_STOPPED: &str = "server-stopped";
    /// The kernel OOM-killed a process of the run (cgroup count or guest console).
    pub const OOM_KILL: &str = "oom-kill";
}

/// One event; `event` is one of the names in [`name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started (the samples' clock).
    pub t_ms: u64,
    pub event: String,
    /// Event-specific: `{"phase": ..}`, `{"exit": ..}`, ...
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// Reads `events.jsonl` text; lines that do not parse (a cut last line) are skipped.
pub fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
