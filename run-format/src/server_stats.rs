//! The server's `/debug/stats` as the rig keeps it in each sample (`server` of
//! `samples.jsonl`): the `allocator`, `sqlite` and `app` sections and
//! `collect_seconds`; the rest of the answer (process, cgroup, system) the rig
//! reads itself. The server writes the full answer with its own types
//! (`server/src/stats.rs`); this is the reading side.
//!
//! The figures the rig and the reports use are fields; every other figure of a
//! section is kept in its `other`, so a sample is written back as it came.
//! Every field may be missing: old runs and other allocators lack some.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerStats {
    pub allocator: AllocatorStats,
    pub sqlite: SqliteStats,
    pub app: AppStats,
    /// How long the server took to collect the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collect_seconds: Option<f64>,
}

/// Bytes; which figures exist depends on the allocator (`name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AllocatorStats {
    /// `jemalloc`, `dhat`, `system` or `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the program holds (jemalloc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_bytes: Option<u64>,
    /// What the allocator keeps in RAM (jemalloc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<u64>,
    /// Address space kept but returned to the OS (jemalloc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<u64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SqliteStats {
    /// Bytes SQLite holds from the allocator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The server's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent_total: Option<u64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole `/debug/stats` answer, shortened.
    const ANSWER: &str = r#"{
        "timestamp": "2026-12-05T16:26:57Z", "version": "share-server 0.1.0",
        "allocator": {"name": "jemalloc", "allocated_bytes": 8944344, "active_bytes": 9089024,
                      "resident_bytes": 11538432, "retained_bytes": 2408448, "profiling": false},
        "sqlite": {"memory_used_bytes": 7294968, "pagecache_used": 0},
        "process": {"vm_rss_bytes": 1}, "cgroup": null,
        "app": {"bytes_received_total": 10, "bytes_sent_total": 20, "db_bytes": 65536,
                "last_gc_duration_seconds": 0.000522},
        "collect_seconds": 0.002016822
    }"#;

    #[test]
    fn keeps_the_sections_and_every_figure_in_them() {
        let s: ServerStats = serde_json::from_str(ANSWER).unwrap();
        assert_eq!(s.allocator.resident_bytes, Some(11538432));
        assert_eq!(s.allocator.name.as_deref(), Some("jemalloc"));
        assert_eq!(s.sqlite.memory_used_bytes, Some(7294968));
        assert_eq!(s.app.bytes_sent_total, Some(20));
        assert_eq!(s.collect_seconds, Some(0.002016822));
        // Written back: the four sections, each with all its figures, nothing else.
        let back = serde_json::to_value(&s).unwrap();
        let mut expected: Value = serde_json::from_str(ANSWER).unwrap();
        if let Some(o) = expected.as_object_mut() {
            o.retain(|k, _| {
                ["allocator", "sqlite", "app", "collect_seconds"].contains(&k.as_str())
            });
        }
        assert_eq!(back, expected);
    }

    #[test]
    fn other_allocators_and_old_answers_miss_figures() {
        let dhat = r#"{"allocator": {"name": "dhat", "current_bytes": 5}, "app": {}}"#;
        let s: ServerStats = serde_json::from_str(dhat).unwrap();
        assert_eq!(s.allocator.resident_bytes, None);
        assert_eq!(s.allocator.other["current_bytes"], 5);
        assert_eq!(s.sqlite, SqliteStats::default());
        assert_eq!(s.collect_seconds, None);
        let back = serde_json::to_string(&s.allocator).unwrap();
        assert_eq!(back, r#"{"name":"dhat","current_bytes":5}"#);
    }
}
