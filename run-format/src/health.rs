//! `healthz.jsonl`: the rig's `/healthz` probes, one JSON object per line, and their summary.
//! Each probe is a fresh connection from 127.0.0.1 with a timeout, so it measures what a new
//! client (a load balancer's health check, the owner's browser) gets while the load runs.

use serde::{Deserialize, Serialize};

/// One probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthProbe {
    /// When the probe started, ms since the run started (the samples' clock).
    pub t_ms: u64,
    /// The sampler's phase label at the start.
    pub phase: String,
    /// `200` came back within the timeout.
    pub ok: bool,
    /// The status answered, if any.
    pub status: Option<u16>,
    /// Connect to status line (or to the failure), ms.
    pub latency_ms: f64,
    /// The probe's timeout, ms.
    pub timeout_ms: f64,
    /// Why it failed: `timed out`, `connection refused`, `status 503`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HealthProbe {
    /// The latency a probe counts for: a failed one never answered in time, so it counts as
    /// its timeout (or what it took, if longer).
    pub fn counted_ms(&self) -> f64 {
        if self.ok {
            self.latency_ms
        } else {
            self.latency_ms.max(self.timeout_ms)
        }
    }
}

/// The probes in numbers. Percentiles and the maximum are over `counted_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSummary {
    pub probes: u64,
    pub failures: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The scenario's `[health] max_latency`, if set.
    pub max_latency_ms: Option<f64>,
    /// Probes that failed or took longer than `max_latency_ms`.
    pub over_limit: u64,
    /// Within the limit (no limit: no failed probe).
    pub passed: bool,
    /// The first failures or slow probes (at most 10): when and why.
    pub worst: Vec<HealthProbe>,
}

/// Probes kept in `HealthSummary::worst`.
const WORST: usize = 10;

impl HealthSummary {
    pub fn of(probes: &[HealthProbe], max_latency_ms: Option<f64>) -> HealthSummary {
        let mut counted: Vec<f64> = probes.iter().map(HealthProbe::counted_ms).collect();
        counted.sort_by(f64::total_cmp);
        let bad = |p: &&HealthProbe| !p.ok || max_latency_ms.is_some_and(|m| p.counted_ms() > m);
        let failures = probes.iter().filter(|p| !p.ok).count() as u64;
        let over_limit = probes.iter().filter(bad).count() as u64;
        HealthSummary {
            probes: probes.len() as u64,
            failures,
            p50_ms: percentile(&counted, 0.50),
            p99_ms: percentile(&counted, 0.99),
            max_ms: counted.last().copied().unwrap_or(0.0),
            max_latency_ms,
            over_limit,
            passed: !probes.is_empty() && over_limit == 0,
            worst: probes.iter().filter(bad).take(WORST).cloned().collect(),
        }
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Reads `healthz.jsonl` text; lines that do not parse (a cut last line) are skipped.
pub fn parse(text: &str) -> Vec<HealthProbe> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(t_ms: u64, latency_ms: f64, ok: bool) -> HealthProbe {
        HealthProbe {
            t_ms,
            phase: "upload".into(),
            ok,
            status: ok.then_some(200),
            latency_ms,
            timeout_ms: 5000.0,
            error: (!ok).then(|| "timed out".into()),
        }
    }

    #[test]
    fn percentiles_count_failures_as_their_timeout() {
        let mut probes: Vec<HealthProbe> = (0..99).map(|i| probe(i, 2.0, true)).collect();
        probes.push(probe(99, 10.0, false));
        let s = HealthSummary::of(&probes, Some(1000.0));
        assert_eq!((s.probes, s.failures, s.over_limit), (100, 1, 1));
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 2.0);
        assert_eq!(s.max_ms, 5000.0);
        assert!(!s.passed);
        assert_eq!(s.worst.len(), 1);
    }

    #[test]
    fn slow_answers_fail_only_with_a_limit() {
        let probes = vec![probe(0, 1500.0, true), probe(500, 3.0, true)];
        assert!(HealthSummary::of(&probes, None).passed);
        let limited = HealthSummary::of(&probes, Some(1000.0));
        assert_eq!(limited.over_limit, 1);
        assert!(!limited.passed);
        assert!(
            !HealthSummary::of(&[], None).passed,
            "no probe proves nothing"
        );
        let line = serde_json::to_string(&probes[0]).unwrap();
        assert_eq!(parse(&format!("{line}\n{{cut")), vec![probes[0].clone()]);
    }
}
