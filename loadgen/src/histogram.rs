//! A fixed-size duration histogram, so a long run's statistics take constant memory.
//!
//! Buckets grow by 2^(1/8) (~9 %) from 1 µs; 320 buckets reach past 10^11 µs (more than a
//! day). Quantiles are read at the bucket's geometric middle and clamped to the exact min and
//! max, so they are within ~5 % of the true value.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const BUCKETS_PER_DOUBLING: f64 = 8.0;
/// 320 × 8 bytes = 2.5 KiB per histogram.
const BUCKETS: usize = 320;

#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum_micros: u128,
    min_micros: u64,
    max_micros: u64,
}

/// Seconds: count, min, mean, percentiles and max of one kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationStats {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Sum of all durations.
    pub total: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_micros: 0,
            min_micros: u64::MAX,
            max_micros: 0,
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let index = ((micros as f64).log2() * BUCKETS_PER_DOUBLING) as usize;
    index.min(BUCKETS - 1)
}

fn bucket_middle(index: usize) -> f64 {
    2f64.powf((index as f64 + 0.5) / BUCKETS_PER_DOUBLING)
}

impl Histogram {
    pub(crate) fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += 1;
        self.count += 1;
        self.sum_micros += u128::from(micros);
        self.min_micros = self.min_micros.min(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    pub(crate) fn total_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    fn quantile_micros(&self, q: f64) -> f64 {
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_middle(index).clamp(self.min_micros as f64, self.max_micros as f64);
            }
        }
        self.max_micros as f64
    }

    pub(crate) fn stats(&self) -> DurationStats {
        if self.count == 0 {
            return DurationStats::default();
        }
        DurationStats {
            count: self.count,
            min: self.min_micros as f64 / 1e6,
            mean: self.total_seconds() / self.count as f64,
            p50: self.quantile_micros(0.50) / 1e6,
            p90: self.quantile_micros(0.90) / 1e6,
            p99: self.quantile_micros(0.99) / 1e6,
            max: self.max_micros as f64 / 1e6,
            total: self.total_seconds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close_ordered_and_within_min_max() {
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.stats();
        assert_eq!(s.count, 1000);
        assert!((s.mean - 0.5005).abs() < 1e-9);
        assert!((s.p50 / 0.5 - 1.0).abs() < 0.06, "{}", s.p50);
        assert!((s.p90 / 0.9 - 1.0).abs() < 0.06, "{}", s.p90);
        assert!(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
        assert_eq!(s.min, 0.001);
        assert_eq!(s.max, 1.0);
    }

    #[test]
    fn one_sample_is_exact_and_extremes_fit() {
        let mut h = Histogram::default();
        h.record(Duration::from_secs(7));
        assert_eq!(h.stats().p50, 7.0);
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(10 * 86_400));
        assert_eq!(h.stats().count, 3);
        assert_eq!(Histogram::default().stats(), DurationStats::default());
    }
}
