//! Drift over time, for soaks: least-squares slopes of the cgroup's (or
//! machine's) anonymous memory and of the allocator's resident bytes against
//! time, in MiB per hour. A server that leaks a little per request climbs
//! here even when no single peak looks bad.
//!
//! The window is the samples taken while load phases ran, less a phase named
//! [`WARM_UP_PHASE`]: caches (SQLite's page cache, allocator arenas) fill in
//! the first minute, and that one-off rise would otherwise read as a slope;
//! the rig's `start`, `pause` and `end` samples are idle time, whose drop
//! after the last phase would read as a fall. A window shorter than
//! [`MIN_WINDOW`] has no drift: ten seconds of noise extrapolated to an hour
//! read as "−1987 MiB/h".

use run_format::Sample;
use serde::{Deserialize, Serialize};

use crate::stats::linear_fit;

/// Samples of a phase with this name are not part of the drift window.
pub const WARM_UP_PHASE: &str = "warm-up";
/// The shortest window a drift is fitted over: two minutes, which is still
/// noisy (CI's 3.5-minute soak swings by a few MiB/h) but no longer absurd.
pub const MIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

const MIB: f64 = 1024.0 * 1024.0;
const HOUR_MS: f64 = 3_600_000.0;

/// Slopes over the drift window; `None` where fewer than two samples had the
/// figure, or the window is shorter than [`MIN_WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub anon_mib_per_hour: Option<f64>,
    pub allocator_mib_per_hour: Option<f64>,
    /// Length of the window, seconds.
    pub window_s: f64,
}

/// Whether a sample is in the drift window.
pub fn in_window(s: &Sample) -> bool {
    !matches!(s.phase.as_str(), WARM_UP_PHASE | "start" | "pause" | "end")
}

/// Machine (cgroup) anonymous memory, bytes.
pub fn anon_bytes(s: &Sample) -> Option<f64> {
    s.machine.as_ref().map(|m| m.anon_bytes as f64)
}

/// The allocator's resident bytes, from the server's `/debug/stats`.
pub fn allocator_resident_bytes(s: &Sample) -> Option<f64> {
    Some(s.server.as_ref()?.allocator.resident_bytes? as f64)
}

/// The drift of `samples` (in time order).
pub fn drift(samples: &[Sample]) -> Drift {
    let window: Vec<&Sample> = samples.iter().filter(|s| in_window(s)).collect();
    let slope = |figure: fn(&Sample) -> Option<f64>| {
        let (hours, mib): (Vec<f64>, Vec<f64>) = window
            .iter()
            .filter_map(|s| Some((s.t_ms as f64 / HOUR_MS, figure(s)? / MIB)))
            .unzip();
        linear_fit(&hours, &mib).map(|f| f.slope)
    };
    let window_s = match (window.first(), window.last()) {
        (Some(a), Some(b)) => (b.t_ms - a.t_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    if window_s < MIN_WINDOW.as_secs_f64() {
        return Drift {
            window_s,
            ..Drift::default()
        };
    }
    Drift {
        anon_mib_per_hour: slope(anon_bytes),
        allocator_mib_per_hour: slope(allocator_resident_bytes),
        window_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: u64, phase: &str, anon_mib: f64, alloc_mib: f64) -> Sample {
        serde_json::from_value(serde_json::json!({
            "t_ms": t_s * 1000,
            "phase": phase,
            "process": null,
            "machine": {
                "source": "cgroup-v1", "usage_bytes": 0, "limit_bytes": null, "peak_bytes": null,
                "anon_bytes": (anon_mib * MIB) as u64, "file_bytes": 0, "mapped_file_bytes": 0,
                "dirty_bytes": 0, "writeback_bytes": 0, "inactive_file_bytes": 0,
                "working_set_bytes": 0, "oom_kills": 0, "limit_hits": 0, "pressure": null
            },
            "system": null,
            "server": {"allocator": {"resident_bytes": (alloc_mib * MIB) as u64}},
            "files": null
        }))
        .expect("a valid sample")
    }

    #[test]
    fn the_warm_up_rise_is_not_drift() {
        // Warm-up: anon climbs 20 MiB in a minute; then flat for an hour.
        let mut samples: Vec<Sample> = (0..=60)
            .map(|t| sample(t, WARM_UP_PHASE, 10.0 + t as f64 / 3.0, 5.0))
            .collect();
        samples.extend(
            (61..=3660)
                .step_by(10)
                .map(|t| sample(t, "soak", 30.0, 8.0)),
        );
        // Idle after the load: memory falls, which is not drift either.
        samples.extend((3661..=3700).map(|t| sample(t, "pause", 12.0, 4.0)));
        let d = drift(&samples);
        assert_eq!(d.anon_mib_per_hour, Some(0.0));
        assert_eq!(d.allocator_mib_per_hour, Some(0.0));
        assert_eq!(d.window_s, 3590.0, "from 61 s to 3651 s");
    }

    #[test]
    fn a_steady_leak_shows_in_mib_per_hour() {
        // 3 MiB per hour of anon, 1.5 of allocator resident, sampled every 10 s for 30 min.
        let samples: Vec<Sample> = (0..=180)
            .map(|i| {
                let h = i as f64 * 10.0 / 3600.0;
                sample(i * 10, "soak", 20.0 + 3.0 * h, 6.0 + 1.5 * h)
            })
            .collect();
        let d = drift(&samples);
        assert!((d.anon_mib_per_hour.unwrap() - 3.0).abs() < 0.01, "{d:?}");
        assert!(
            (d.allocator_mib_per_hour.unwrap() - 1.5).abs() < 0.01,
            "{d:?}"
        );
        assert_eq!(d.window_s, 1800.0);
    }

    #[test]
    fn no_figures_no_slope() {
        let d = drift(&[]);
        assert_eq!(d, Drift::default());
    }

    #[test]
    fn a_window_under_the_minimum_has_no_drift() {
        let samples: Vec<Sample> = (0..10)
            .map(|t| sample(t, "upload", 10.0 + t as f64, 5.0))
            .collect();
        let d = drift(&samples);
        assert_eq!(
            (d.anon_mib_per_hour, d.allocator_mib_per_hour),
            (None, None)
        );
        assert_eq!(d.window_s, 9.0);
    }
}
