//! How much of the machine's memory usage each layer explains, and how
//! closely it tracks it. A VM dashboard shows one line ("RAM maxed out");
//! this splits it: a layer whose level is a large share of the usage peak
//! and whose changes move with the usage's changes is what the usage is made
//! of. The differences matter because two series that both merely rise over
//! a run correlate in level without one driving the other.

use serde::{Deserialize, Serialize};

use crate::stats;
use crate::timeline::{Layer, Timeline};

/// The layers set against the machine's usage.
pub const LAYERS: [Layer; 10] = [
    Layer::MachineAnon,
    Layer::PageCacheClean,
    Layer::DirtyWriteback,
    Layer::ProcessRss,
    Layer::ProcessAnon,
    Layer::ProcessShmem,
    Layer::AllocatorAllocated,
    Layer::AllocatorResident,
    Layer::AllocatorFragmentation,
    Layer::SqliteMemory,
];

/// The longest lag looked at: 2 s, whatever the sampling rate (a cause and
/// its effect on memory are closer than that).
const MAX_LAG_S: f64 = 2.0;
/// Fewer pairs than this give no correlation (a run killed in its first
/// second has a handful of samples, and a handful correlate by chance).
pub const MIN_POINTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCorrelation {
    /// Stable layer name (`machine_anon`, `sqlite_memory`, ...).
    pub layer: String,
    pub label: String,
    pub peak_bytes: Option<u64>,
    pub peak_at_s: Option<f64>,
    /// The layer's figure at the moment the usage peaked.
    pub at_usage_peak_bytes: Option<u64>,
    /// That figure as a share (0–1) of the usage peak.
    pub share_of_usage_peak: Option<f64>,
    /// Pearson correlation of the two series' levels.
    pub r_levels: Option<f64>,
    /// Pearson correlation of their per-sample changes, at `lag_ms`.
    pub r_changes: Option<f64>,
    /// The lag with the best `r_changes`: positive, the layer moves first and
    /// the usage follows that many milliseconds later.
    pub lag_ms: Option<i64>,
}

pub fn correlate(t: &Timeline) -> Vec<LayerCorrelation> {
    let usage = t.col(Layer::MachineUsage);
    let usage_peak = stats::peak(usage);
    let step = stats::median_step(&t.t_s).filter(|s| *s > 0.0);
    let max_lag = step.map_or(0, |s| (MAX_LAG_S / s).round() as usize);
    LAYERS
        .iter()
        .filter(|l| t.has(**l))
        .map(|&layer| {
            let col = t.col(layer);
            let peak = stats::peak(col);
            let at_peak = usage_peak.and_then(|(i, _)| stats::last_at_or_before(col, i));
            let (x, y) = stats::paired(col, usage);
            let enough = x.len() >= MIN_POINTS;
            let changes =
                stats::best_lag(&stats::diffs(&x), &stats::diffs(&y), max_lag, MIN_POINTS);
            LayerCorrelation {
                layer: layer.key().into(),
                label: layer.label().into(),
                peak_bytes: peak.map(|(_, v)| v as u64),
                peak_at_s: peak.map(|(i, _)| t.t_s[i]),
                at_usage_peak_bytes: at_peak.map(|v| v as u64),
                share_of_usage_peak: at_peak
                    .zip(usage_peak)
                    .filter(|(_, (_, u))| *u > 0.0)
                    .map(|(v, (_, u))| v / u),
                r_levels: stats::pearson(&x, &y).filter(|_| enough),
                r_changes: changes.map(|(_, r)| r),
                lag_ms: changes
                    .zip(step)
                    .map(|((lag, _), s)| (lag as f64 * s * 1000.0).round() as i64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    fn some(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|x| Some(*x)).collect()
    }

    /// Usage = anon + cache. Anon is a flat 30 MiB; the cache rises 10 MiB a
    /// step to 120 MiB. At the usage peak (150 MiB, t = 6 s) anon explains
    /// 30/150 = 20 %, the cache 120/150 = 80 %, and the cache's level tracks
    /// the usage exactly (r = 1).
    #[test]
    fn shares_and_tracking_of_a_cache_driven_usage() {
        let t: Vec<f64> = (0..13).map(|i| i as f64 * 0.5).collect();
        let cache: Vec<f64> = (0..13).map(|i| (i as f64 * 10.0) * MIB).collect();
        let anon = vec![30.0 * MIB; 13];
        let usage: Vec<f64> = cache.iter().zip(&anon).map(|(c, a)| c + a).collect();
        let tl = Timeline::from_columns(
            t,
            &[
                (Layer::MachineUsage, some(&usage)),
                (Layer::MachineAnon, some(&anon)),
                (Layer::PageCacheClean, some(&cache)),
            ],
        );
        let c = correlate(&tl);
        assert_eq!(c.len(), 2, "only the layers with figures");
        let anon = &c[0];
        assert_eq!(anon.layer, "machine_anon");
        assert!((anon.share_of_usage_peak.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(anon.r_levels, None, "a flat layer tracks nothing");
        let cache = &c[1];
        assert!((cache.share_of_usage_peak.unwrap() - 0.8).abs() < 1e-9);
        assert!((cache.r_levels.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(cache.peak_bytes, Some((120.0 * MIB) as u64));
        assert_eq!(cache.peak_at_s, Some(6.0));
    }

    /// Dirty pages jump at steps 3, 8 and 13 of 20 (0.5 s apart); the usage
    /// makes the same jumps two steps later: r of the changes is 1 at a lag
    /// of 2 × 0.5 s = +1000 ms (the layer moves first).
    #[test]
    fn the_lag_is_in_milliseconds_and_positive_when_the_layer_leads() {
        let t: Vec<f64> = (0..20).map(|i| i as f64 * 0.5).collect();
        let jumps = |shift: usize| -> Vec<f64> {
            (0..20)
                .map(|i| {
                    [3, 8, 13]
                        .iter()
                        .zip([4.0, 9.0, 2.0])
                        .filter(|(at, _)| i >= *at + shift)
                        .map(|(_, by)| by * MIB)
                        .sum()
                })
                .collect()
        };
        let tl = Timeline::from_columns(
            t,
            &[
                (Layer::MachineUsage, some(&jumps(2))),
                (Layer::DirtyWriteback, some(&jumps(0))),
            ],
        );
        let c = correlate(&tl);
        assert_eq!(c[0].lag_ms, Some(1000), "{c:?}");
        assert!((c[0].r_changes.unwrap() - 1.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn a_handful_of_samples_gives_no_correlation() {
        let t: Vec<f64> = (0..5).map(f64::from).collect();
        let v = some(&[1.0, 5.0, 2.0, 8.0, 3.0]);
        let tl = Timeline::from_columns(
            t,
            &[(Layer::MachineUsage, v.clone()), (Layer::MachineAnon, v)],
        );
        let c = correlate(&tl);
        assert_eq!(
            (c[0].r_levels, c[0].r_changes, c[0].lag_ms),
            (None, None, None)
        );
        assert!((c[0].share_of_usage_peak.unwrap() - 1.0).abs() < 1e-9);
    }
}
