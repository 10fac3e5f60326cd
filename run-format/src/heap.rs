//! The server's heap profiles taken during a run: `heap/<t_ms>.pb.gz` (gzipped
//! pprof protobuf from `/debug/pprof/heap`), listed in `meta.json`.

use serde::{Deserialize, Serialize};

/// The profiles' directory inside a run directory.
pub const HEAP_DIR: &str = "heap";

/// A profile's path relative to the run directory.
pub fn file_name(t_ms: u64) -> String {
    format!("{HEAP_DIR}/{t_ms}.pb.gz")
}

/// `meta.json`'s `heap_profiles`: how profiles were taken, and each one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeapProfiles {
    /// As set (`peak`, or an interval such as `5s`).
    pub setting: String,
    /// Least time between two profiles (the rate limit), ms.
    pub min_gap_ms: u64,
    pub profiles: Vec<HeapProfile>,
    /// Fetches that failed, and the first reasons.
    pub failures: u64,
    pub failure_examples: Vec<String>,
}

/// One saved profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeapProfile {
    /// When the fetch began, ms since the run's start (the samples' clock).
    pub t_ms: u64,
    /// Relative to the run directory (`heap/<t_ms>.pb.gz`).
    pub file: String,
    pub trigger: Trigger,
    /// The allocator's resident bytes in the sample that triggered it.
    pub allocator_resident_bytes: Option<u64>,
    /// The gzipped file's size.
    pub bytes: u64,
    /// How long the server took to dump it and send it.
    pub fetch_ms: u64,
}

/// Why a profile was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A new peak of the allocator's resident bytes.
    #[default]
    Peak,
    /// The interval elapsed.
    Interval,
}

impl HeapProfiles {
    /// The profile taken at the highest allocator resident bytes (the first
    /// of equals); `None` without profiles.
    pub fn at_peak(&self) -> Option<&HeapProfile> {
        self.profiles
            .iter()
            .rev()
            .max_by_key(|p| p.allocator_resident_bytes.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_profile_is_the_first_at_the_highest_resident() {
        let p = |t_ms, resident| HeapProfile {
            t_ms,
            file: file_name(t_ms),
            allocator_resident_bytes: Some(resident),
            ..HeapProfile::default()
        };
        let heap = HeapProfiles {
            profiles: vec![p(100, 5), p(2100, 9), p(4100, 9), p(6100, 7)],
            ..HeapProfiles::default()
        };
        assert_eq!(heap.at_peak().map(|p| p.t_ms), Some(2100));
        assert_eq!(
            heap.at_peak().map(|p| p.file.as_str()),
            Some("heap/2100.pb.gz")
        );
        assert!(HeapProfiles::default().at_peak().is_none());
        let json = serde_json::to_string(&Trigger::Interval).unwrap_or_default();
        assert_eq!(json, "\"interval\"");
    }
}
