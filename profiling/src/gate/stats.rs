//! The statistics of the baseline comparison, for a handful of replicates
//! per side: an exact Mann-Whitney U (permutation) test and a bootstrap
//! confidence interval of the difference of medians.
//!
//! Memory peaks are not normally distributed (a run either hits a cache
//! fill or it does not), and with 5 replicates a t-test's assumptions cannot
//! be checked; rank tests and the bootstrap need none of them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Most replicates per side: the exact test enumerates every split of the
/// pooled sample, C(20, 10) = 184,756 at most.
pub const MAX_PER_SIDE: usize = 10;
/// Bootstrap resamples: enough for stable 2.5/97.5 % percentiles.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The Mann-Whitney U statistic of `x` over `y`: pairs with x > y, plus half
/// of the ties.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> f64 {
    let mut u = 0.0;
    for a in x {
        for b in y {
            if a > b {
                u += 1.0;
            } else if a == b {
                u += 0.5;
            }
        }
    }
    u
}

/// One-sided exact p-value that `x` tends to be greater than `y`: the share
/// of all equally likely splits of the pooled values into groups of |x| and
/// |y| whose U is at least the observed one. Exact with ties too (the
/// permutation distribution is built from the values themselves).
///
/// `None` when a side is empty or has more than [`MAX_PER_SIDE`] values.
pub fn mann_whitney_p_greater(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.is_empty() || y.is_empty() || x.len() > MAX_PER_SIDE || y.len() > MAX_PER_SIDE {
        return None;
    }
    let observed = mann_whitney_u(x, y);
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let n = pooled.len();
    let k = x.len();
    let (mut at_least, mut total) = (0u64, 0u64);
    // Walk every k-subset of 0..n as the "x" group (lexicographic indices).
    let mut idx: Vec<usize> = (0..k).collect();
    let mut in_x = vec![false; n];
    loop {
        in_x.iter_mut().for_each(|b| *b = false);
        idx.iter().for_each(|&i| in_x[i] = true);
        let (gx, gy): (Vec<f64>, Vec<f64>) = {
            let mut gx = Vec::with_capacity(k);
            let mut gy = Vec::with_capacity(n - k);
            for (i, v) in pooled.iter().enumerate() {
                if in_x[i] { gx.push(*v) } else { gy.push(*v) }
            }
            (gx, gy)
        };
        total += 1;
        // A tolerance for the half-counted ties' floating-point sums.
        if mann_whitney_u(&gx, &gy) >= observed - 1e-9 {
            at_least += 1;
        }
        // Next combination.
        let Some(i) = (0..k).rev().find(|&i| idx[i] != i + n - k) else {
            break;
        };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
    Some(at_least as f64 / total as f64)
}

/// A two-sided percentile bootstrap interval of `median(x) - median(y)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// e.g. 0.95.
    pub confidence: f64,
}

/// Resamples each side with replacement `resamples` times (seeded: the same
/// inputs always give the same interval) and takes the percentiles of the
/// difference of medians.
pub fn bootstrap_median_difference(
    x: &[f64],
    y: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    if x.is_empty() || y.is_empty() || resamples == 0 || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draw = |v: &[f64], buf: &mut Vec<f64>| {
        buf.clear();
        buf.extend((0..v.len()).map(|_| v[rng.random_range(0..v.len())]));
    };
    let (mut bx, mut by) = (Vec::new(), Vec::new());
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        draw(x, &mut bx);
        draw(y, &mut by);
        diffs.push(median(&bx)? - median(&by)?);
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| diffs[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some(Interval {
        low: at(tail),
        high: at(1.0 - tail),
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn u_counts_pairs_and_half_ties() {
        assert_eq!(mann_whitney_u(&[6.0, 7.0], &[1.0, 2.0]), 4.0);
        assert_eq!(mann_whitney_u(&[1.0, 2.0], &[6.0, 7.0]), 0.0);
        assert_eq!(mann_whitney_u(&[2.0], &[2.0]), 0.5);
        // U(x,y) + U(y,x) = |x||y|.
        let (x, y) = ([1.0, 4.0, 4.0, 9.0], [2.0, 4.0, 8.0]);
        assert_eq!(mann_whitney_u(&x, &y) + mann_whitney_u(&y, &x), 12.0);
    }

    #[test]
    fn exact_p_matches_the_tables() {
        // Complete separation, 5 vs 5: 1 of C(10,5) = 252 splits.
        let p = mann_whitney_p_greater(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0])
            .unwrap();
        assert!((p - 1.0 / 252.0).abs() < 1e-12, "{p}");
        // The other direction: every split has U >= 0.
        let p = mann_whitney_p_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0])
            .unwrap();
        assert_eq!(p, 1.0);
        // 3 vs 3, U = 8 of 9: P(U >= 8) = 2/20 (U = 9 once, U = 8 once).
        let p = mann_whitney_p_greater(&[3.0, 5.0, 6.0], &[1.0, 2.0, 4.0]).unwrap();
        assert!((p - 2.0 / 20.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn identical_samples_are_not_significant() {
        let p = mann_whitney_p_greater(&[7.0; 5], &[7.0; 5]).unwrap();
        assert_eq!(p, 1.0);
    }

    #[test]
    fn p_needs_both_sides_and_bounded_sizes() {
        assert_eq!(mann_whitney_p_greater(&[], &[1.0]), None);
        assert_eq!(mann_whitney_p_greater(&[1.0; 11], &[1.0]), None);
        assert!(mann_whitney_p_greater(&[1.0; 10], &[2.0; 10]).is_some());
    }

    #[test]
    fn bootstrap_of_constants_is_the_difference() {
        let ci = bootstrap_median_difference(&[10.0; 5], &[4.0; 5], 0.95, 1000, 1).unwrap();
        assert_eq!((ci.low, ci.high), (6.0, 6.0));
    }

    #[test]
    fn bootstrap_brackets_the_shift_and_is_reproducible() {
        let y = [100.0, 101.0, 99.0, 102.0, 98.0];
        let x: Vec<f64> = y.iter().map(|v| v + 20.0).collect();
        let a = bootstrap_median_difference(&x, &y, 0.95, BOOTSTRAP_RESAMPLES, 7).unwrap();
        let b = bootstrap_median_difference(&x, &y, 0.95, BOOTSTRAP_RESAMPLES, 7).unwrap();
        assert_eq!(a, b);
        assert!(a.low <= 20.0 && 20.0 <= a.high, "{a:?}");
        assert!(
            a.low > 0.0,
            "a shift of 20 over a spread of 4 excludes 0: {a:?}"
        );
        // The same samples: the interval straddles 0.
        let c = bootstrap_median_difference(&y, &y, 0.95, BOOTSTRAP_RESAMPLES, 7).unwrap();
        assert!(c.low <= 0.0 && 0.0 <= c.high, "{c:?}");
    }
}
