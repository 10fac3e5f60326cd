//! `events.jsonl`: what happened when, one JSON object per line.

use serde::{Deserialize, Serialize};

/// One event. `event` is one of `server-started`, `phase-start`,
/// `phase-end`, `server-died`, `interrupted`, `server-stopped`.
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
