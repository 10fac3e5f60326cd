//! Statistics as pure functions on slices: least-squares slope, Pearson
//! correlation, correlation of differences at the best lag, peaks. No run
//! directory, no I/O: each is unit-tested on series whose answer is
//! worked out by hand in the tests.

/// A straight line fitted by least squares: `y = slope * x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination: 1 is a perfect line, 0 no linear relation.
    pub r2: f64,
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Centered sums: Σ(x−x̄)(y−ȳ), Σ(x−x̄)², Σ(y−ȳ)².
fn centered_sums(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x)?, mean(y)?);
    let mut sums = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sums.0 += dx * dy;
        sums.1 += dx * dx;
        sums.2 += dy * dy;
    }
    Some(sums)
}

/// Least-squares line through the points; `None` with fewer than two points
/// or when x does not vary (no slope to speak of).
pub fn linear_fit(x: &[f64], y: &[f64]) -> Option<Fit> {
    let (sxy, sxx, syy) = centered_sums(x, y)?;
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean(y)? - slope * mean(x)?;
    // A y that does not vary has no variance to explain: 0, so a flat
    // layer never reads as "a perfect line".
    let r2 = if syy <= 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some(Fit {
        slope,
        intercept,
        r2,
    })
}

/// Pearson correlation; `None` when either series is constant (no variation to track).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let (sxy, sxx, syy) = centered_sums(x, y)?;
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// First differences: `xs[i+1] - xs[i]`.
pub fn diffs(xs: &[f64]) -> Vec<f64> {
    xs.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The correlation of `x[i]` with `y[i + lag]` for lags in `-max_lag..=max_lag`,
/// and the lag where it is highest. A positive lag means `x` moves first and
/// `y` follows `lag` steps later. Ties go to the smaller |lag|. Lags leaving
/// fewer than `min_points` pairs are skipped: three points correlate
/// perfectly by chance far too often.
pub fn best_lag(x: &[f64], y: &[f64], max_lag: usize, min_points: usize) -> Option<(isize, f64)> {
    let n = x.len().min(y.len());
    let mut best: Option<(isize, f64)> = None;
    let max_lag = max_lag.min(n.saturating_sub(min_points.max(2))) as isize;
    if n < min_points.max(2) {
        return None;
    }
    // 0, 1, -1, 2, -2, ...: smaller lags first so ties keep them.
    let lags = std::iter::once(0).chain((1..=max_lag).flat_map(|k| [k, -k]));
    for lag in lags {
        let (xs, ys) = if lag >= 0 {
            let k = lag as usize;
            (&x[..n - k], &y[k..n])
        } else {
            let k = (-lag) as usize;
            (&x[k..n], &y[..n - k])
        };
        if let Some(r) = pearson(xs, ys)
            && best.is_none_or(|(_, b)| r > b + 1e-12)
        {
            best = Some((lag, r));
        }
    }
    best
}

/// The points where both columns have a figure.
pub fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .unzip()
}

/// The highest figure and its index.
pub fn peak(xs: &[Option<f64>]) -> Option<(usize, f64)> {
    xs.iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i, (*v)?)))
        .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
}

/// The last figure at or before index `i`.
pub fn last_at_or_before(xs: &[Option<f64>], i: usize) -> Option<f64> {
    xs.get(..=i.min(xs.len().saturating_sub(1)))?
        .iter()
        .rev()
        .find_map(|v| *v)
}

/// The median step of a time axis (the sampling interval actually achieved).
pub fn median_step(t: &[f64]) -> Option<f64> {
    let mut steps = diffs(t);
    if steps.is_empty() {
        return None;
    }
    steps.sort_by(f64::total_cmp);
    Some(steps[steps.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// x̄ = 3, ȳ = 4; Σdxdy = 4+0+0+0+2 = 6, Σdx² = 10, Σdy² = 4+0+1+0+1 = 6:
    /// slope 0.6, intercept 4 − 1.8 = 2.2, r = 6/√60 = 0.774597, r² = 36/60 = 0.6.
    #[test]
    fn slope_intercept_and_r2_by_hand() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 4.0, 5.0, 4.0, 5.0];
        let fit = linear_fit(&x, &y).unwrap();
        assert!(close(fit.slope, 0.6), "{fit:?}");
        assert!(close(fit.intercept, 2.2), "{fit:?}");
        assert!(close(fit.r2, 0.6), "{fit:?}");
        assert!(close(pearson(&x, &y).unwrap(), 6.0 / 60f64.sqrt()));
    }

    /// 100 MiB leaked per GiB: y = 20 + 100·x exactly.
    #[test]
    fn an_exact_line_has_r2_one() {
        let x: Vec<f64> = (0..10).map(|i| i as f64 * 0.1).collect();
        let y: Vec<f64> = x.iter().map(|x| 20.0 + 100.0 * x).collect();
        let fit = linear_fit(&x, &y).unwrap();
        assert!(close(fit.slope, 100.0) && close(fit.intercept, 20.0) && close(fit.r2, 1.0));
        assert!(close(pearson(&x, &y).unwrap(), 1.0));
        let down: Vec<f64> = y.iter().map(|v| -v).collect();
        assert!(close(pearson(&x, &down).unwrap(), -1.0));
    }

    #[test]
    fn degenerate_inputs_give_none() {
        assert_eq!(linear_fit(&[1.0], &[2.0]), None);
        assert_eq!(linear_fit(&[1.0, 1.0], &[2.0, 3.0]), None, "x constant");
        assert_eq!(pearson(&[1.0, 2.0], &[3.0, 3.0]), None, "y constant");
        assert_eq!(
            linear_fit(&[1.0, 2.0], &[3.0, 3.0]).map(|f| (f.slope, f.r2)),
            Some((0.0, 0.0))
        );
        assert_eq!(mean(&[]), None);
    }

    /// y is x delayed by two steps: the best lag is +2 with r = 1; at lag 0
    /// the pulses never line up.
    #[test]
    fn the_lag_of_a_delayed_copy_is_found() {
        let x = [0.0, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let mut y = [0.0; 11];
        y[2..].copy_from_slice(&x[..9]);
        let (lag, r) = best_lag(&x, &y, 4, 5).unwrap();
        assert_eq!(lag, 2);
        assert!(close(r, 1.0), "{r}");
        let (lag, r) = best_lag(&y, &x, 4, 5).unwrap();
        assert_eq!(lag, -2);
        assert!(close(r, 1.0));
        assert_eq!(best_lag(&x[..4], &y[..4], 4, 5), None, "too few points");
        let (lag, _) = best_lag(&y, &x, 4, 5).unwrap();
        assert_eq!(lag, -2);
        assert!(close(r, 1.0));
    }

    #[test]
    fn differences_and_pairs() {
        assert_eq!(diffs(&[1.0, 4.0, 2.0]), vec![3.0, -2.0]);
        let (a, b) = paired(
            &[Some(1.0), None, Some(3.0)],
            &[Some(5.0), Some(6.0), Some(7.0)],
        );
        assert_eq!((a, b), (vec![1.0, 3.0], vec![5.0, 7.0]));
        assert_eq!(
            peak(&[None, Some(2.0), Some(5.0), Some(5.0), None]),
            Some((2, 5.0))
        );
        assert_eq!(last_at_or_before(&[Some(1.0), None, None], 2), Some(1.0));
        assert_eq!(median_step(&[0.0, 0.1, 0.2, 0.5]), Some(0.1));
    }
}
