//! The figures of a power measurement: detection and false-alarm rates with
//! Wilson intervals, the minimum detectable effect, and the tuning grid (the
//! same gates decided again with their first k replicates, other floors).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{PowerGate, PowerReport};
use crate::gate::baseline::{Baseline, Floor, MIN_RELATIVE_EFFECT};
use crate::gate::budgets::Budgets;
use crate::gate::decide_with;
use crate::gate::prove::Variant;
use crate::gate::stats::median;

/// Detection a size must reach to count as detectable.
pub const TARGET_DETECTION: f64 = 0.9;
/// The effect floors the tuning grid tries (MiB; the relative floor stays).
pub const TUNING_FLOORS_MIB: [f64; 4] = [0.5, 1.0, 2.0, 3.0];
const MIB: f64 = 1024.0 * 1024.0;

/// k of n gates, with a 95 % Wilson score interval (sound at small n and at
/// 0 or n, where the normal interval collapses).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Rate {
    pub gates: usize,
    pub flagged: usize,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    pub fn of(flagged: usize, gates: usize) -> Rate {
        if gates == 0 {
            return Rate::default();
        }
        let (n, z) = (gates as f64, 1.96_f64);
        let p = flagged as f64 / n;
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
        Rate {
            gates,
            flagged,
            rate: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }

    fn show(&self) -> String {
        format!(
            "{}/{} = {:.0} % ({:.0}–{:.0} %)",
            self.flagged,
            self.gates,
            self.rate * 100.0,
            self.low * 100.0,
            self.high * 100.0
        )
    }
}

/// One build's gates, as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `clean` or the fixture, `retain-per-upload=1MiB`.
    pub build: String,
    /// The fixture's name without its size, and the size.
    pub fixture: Option<String>,
    pub size_bytes: Option<u64>,
    pub detection: Rate,
    pub median_delta_peak_anon: Option<f64>,
    pub median_wall_seconds: f64,
    /// How often each budget or metric flagged it.
    pub flagged_by: BTreeMap<String, usize>,
}

/// The smallest tested size flagged in ≥ 90 % of its gates, with every
/// larger size too; and the largest smaller size that was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mde {
    pub fixture: String,
    pub detected_at: Option<u64>,
    pub missed_below: Option<u64>,
}

/// The same gates decided again: first `replicates` runs, this floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuning {
    pub replicates: usize,
    pub floor_mib: f64,
    pub false_alarms: Rate,
    /// Per fixture build, in the rows' order.
    pub detection: Vec<(String, Rate)>,
    pub mde: Vec<Mde>,
    /// Median gate wall time scaled to `replicates` runs.
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Analysis {
    pub false_alarms: Rate,
    pub rows: Vec<Row>,
    pub mde: Vec<Mde>,
    pub tuning: Vec<Tuning>,
}

fn build_name(v: Variant) -> String {
    match v {
        Variant::Clean(_) => "clean".into(),
        Variant::Fixture(f) => f.name(),
    }
}

pub fn analyse(gates: &[PowerGate], budgets: &Budgets, baseline: Option<&Baseline>) -> Analysis {
    let mut builds: Vec<Variant> = Vec::new();
    for g in gates {
        if !builds
            .iter()
            .any(|b| build_name(*b) == build_name(g.variant))
        {
            builds.push(g.variant);
        }
    }
    builds.sort_by_key(|v| (!v.is_clean(), fixture_key(*v)));
    let of = |b: Variant| -> Vec<&PowerGate> {
        gates
            .iter()
            .filter(|g| build_name(g.variant) == build_name(b))
            .collect()
    };
    let rows: Vec<Row> = builds.iter().map(|&b| row(b, &of(b))).collect();
    let clean: Vec<&PowerGate> = gates.iter().filter(|g| g.variant.is_clean()).collect();
    let false_alarms = Rate::of(clean.iter().filter(|g| g.flagged).count(), clean.len());

    // Replicates every gate has: the grid's largest k.
    let most = gates.iter().map(|g| g.replicates.len()).min().unwrap_or(0);
    let fewest = if most >= 3 { 3 } else { most.min(1) };
    let median_wall = median(&gates.iter().map(|g| g.wall_seconds).collect::<Vec<_>>());
    let mut tuning = Vec::new();
    for k in fewest..=most {
        for floor_mib in TUNING_FLOORS_MIB {
            let floor = Floor {
                relative: MIN_RELATIVE_EFFECT,
                absolute_bytes: floor_mib * MIB,
            };
            let flagged = |g: &PowerGate| {
                !decide_with(budgets, baseline, &g.replicates[..k], floor)
                    .failures
                    .is_empty()
            };
            let rate =
                |gs: &[&PowerGate]| Rate::of(gs.iter().filter(|g| flagged(g)).count(), gs.len());
            let detection: Vec<(String, Rate)> = builds
                .iter()
                .filter(|b| !b.is_clean())
                .map(|&b| (build_name(b), rate(&of(b))))
                .collect();
            tuning.push(Tuning {
                replicates: k,
                floor_mib,
                false_alarms: rate(&clean),
                mde: mde(&detection_points(&builds, &detection)),
                detection,
                wall_seconds: median_wall.unwrap_or(0.0) * k as f64 / most as f64,
            });
        }
    }
    let as_run: Vec<(String, Rate)> = rows
        .iter()
        .filter(|r| r.fixture.is_some())
        .map(|r| (r.build.clone(), r.detection))
        .collect();
    Analysis {
        false_alarms,
        mde: mde(&detection_points(&builds, &as_run)),
        rows,
        tuning,
    }
}

/// Sized fixtures sort by name, then size.
fn fixture_key(v: Variant) -> (String, u64) {
    match v {
        Variant::Clean(_) => (String::new(), 0),
        Variant::Fixture(f) => (f.base_name().to_owned(), f.size().map_or(0, |s| s.0)),
    }
}

/// (fixture, size, rate) of each sized build.
fn detection_points(builds: &[Variant], rates: &[(String, Rate)]) -> Vec<(String, u64, f64)> {
    builds
        .iter()
        .filter_map(|&b| match b {
            Variant::Fixture(f) => {
                let size = f.size()?.0;
                let rate = rates.iter().find(|(n, _)| *n == f.name())?.1.rate;
                Some((f.base_name().to_owned(), size, rate))
            }
            Variant::Clean(_) => None,
        })
        .collect()
}

/// Per fixture (points sorted by size): the MDE at [`TARGET_DETECTION`].
pub fn mde(points: &[(String, u64, f64)]) -> Vec<Mde> {
    let mut names: Vec<&String> = points.iter().map(|(n, _, _)| n).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let mut sizes: Vec<(u64, f64)> = points
                .iter()
                .filter(|(n, _, _)| n == name)
                .map(|&(_, s, r)| (s, r))
                .collect();
            sizes.sort_by_key(|&(s, _)| s);
            // The first size from which every larger one reaches the target.
            let from =
                (0..sizes.len()).find(|&i| sizes[i..].iter().all(|&(_, r)| r >= TARGET_DETECTION));
            Mde {
                fixture: name.clone(),
                detected_at: from.map(|i| sizes[i].0),
                missed_below: match from {
                    Some(0) => None,
                    Some(i) => Some(sizes[i - 1].0),
                    None => sizes.last().map(|&(s, _)| s),
                },
            }
        })
        .collect()
}

fn row(build: Variant, gates: &[&PowerGate]) -> Row {
    let mut flagged_by = BTreeMap::new();
    for g in gates {
        for f in &g.failures {
            *flagged_by.entry(f.clone()).or_insert(0) += 1;
        }
    }
    let deltas: Vec<f64> = gates.iter().filter_map(|g| g.delta_peak_anon).collect();
    let walls: Vec<f64> = gates.iter().map(|g| g.wall_seconds).collect();
    let (fixture, size_bytes) = match build {
        Variant::Fixture(f) => (Some(f.base_name().to_owned()), f.size().map(|s| s.0)),
        Variant::Clean(_) => (None, None),
    };
    Row {
        build: build_name(build),
        fixture,
        size_bytes,
        detection: Rate::of(gates.iter().filter(|g| g.flagged).count(), gates.len()),
        median_delta_peak_anon: median(&deltas),
        median_wall_seconds: median(&walls).unwrap_or(0.0),
        flagged_by,
    }
}

fn show_size(bytes: u64) -> String {
    loadgen::ByteSize(bytes).to_string()
}

fn show_mde(m: &Mde) -> String {
    match (m.detected_at, m.missed_below) {
        (Some(at), Some(below)) => format!(
            "{}: between {} (< 90 %) and {}",
            m.fixture,
            show_size(below),
            show_size(at)
        ),
        (Some(at), None) => format!(
            "{}: ≤ {} (the smallest size tried)",
            m.fixture,
            show_size(at)
        ),
        (None, Some(top)) => format!(
            "{}: > {} (no size tried reaches 90 %)",
            m.fixture,
            show_size(top)
        ),
        (None, None) => format!("{}: not measured", m.fixture),
    }
}

/// `power.md`: the table, the MDE, the tuning grid.
pub fn markdown(r: &PowerReport) -> String {
    let a = &r.analysis;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Power of `{}`: {} gates of {} replicates, {} to {} (commit {}), against {}.\n",
        r.scenario.display(),
        r.gates.len(),
        r.replicates,
        r.started_at.format("%Y-%m-%d %H:%M"),
        r.finished_at.format("%H:%M UTC"),
        r.git_revision
            .as_deref()
            .map_or("unknown", |g| &g[..g.len().min(7)]),
        r.baseline
            .as_ref()
            .map_or("no baseline (budgets only)".into(), |b| format!(
                "`{}`",
                b.display()
            ))
    );
    let _ = writeln!(
        md,
        "False alarms: {} clean gates flagged.\n",
        a.false_alarms.show()
    );
    let _ = writeln!(
        md,
        "| build | detection (95 % interval) | median Δ peak anon | median gate wall time | flagged by |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: | --- |");
    for row in &a.rows {
        let by: Vec<String> = row
            .flagged_by
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} s | {} |",
            row.build,
            row.detection.show(),
            row.median_delta_peak_anon
                .map_or("—".into(), |d| format!("{:+.2} MiB", d / MIB)),
            row.median_wall_seconds,
            if by.is_empty() {
                "—".into()
            } else {
                by.join(", ")
            }
        );
    }
    let _ = writeln!(md, "\nMinimum detectable effect at 90 % detection:");
    for m in &a.mde {
        let _ = writeln!(md, "- {}", show_mde(m));
    }
    if let Some(first) = a.tuning.first() {
        let _ = writeln!(
            md,
            "\nThe same gates decided again (first k replicates; effect floor the larger of 5 % and F):\n"
        );
        let sizes: Vec<&str> = first.detection.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(
            md,
            "| k | F | false alarms | {} | MDE | gate wall time |",
            sizes.join(" | ")
        );
        let _ = writeln!(md, "|{}", " --- |".repeat(sizes.len() + 5));
        for t in &a.tuning {
            let rates: Vec<String> = t
                .detection
                .iter()
                .map(|(_, r)| format!("{}/{}", r.flagged, r.gates))
                .collect();
            let mdes: Vec<String> = t.mde.iter().map(show_mde).collect();
            let _ = writeln!(
                md,
                "| {} | {} MiB | {}/{} | {} | {} | {:.0} s |",
                t.replicates,
                t.floor_mib,
                t.false_alarms.flagged,
                t.false_alarms.gates,
                rates.join(" | "),
                mdes.join("; "),
                t.wall_seconds
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_stay_inside_zero_and_one() {
        let all = Rate::of(10, 10);
        assert_eq!(all.rate, 1.0);
        assert!((all.low - 0.722).abs() < 0.001, "{all:?}");
        assert_eq!(all.high, 1.0);
        let none = Rate::of(0, 20);
        assert_eq!(none.low, 0.0);
        assert!((none.high - 0.161).abs() < 0.001, "{none:?}");
        assert_eq!(Rate::of(0, 0), Rate::default());
    }

    fn run(anon_mib: f64) -> crate::gate::metrics::RunMetrics {
        crate::gate::metrics::RunMetrics {
            run_dir: "r".into(),
            passed: true,
            verdict: None,
            oom_kills: 0,
            died: false,
            failed_requests: 0,
            unverified_requests: 0,
            phase_errors: Vec::new(),
            values: [(crate::gate::metrics::Metric::PeakAnon, anon_mib * MIB)].into(),
        }
    }

    fn power_gate(variant: Variant, anon_mib: &[f64], flagged: bool) -> PowerGate {
        PowerGate {
            variant,
            round: 1,
            flagged,
            failures: Vec::new(),
            delta_peak_anon: None,
            wall_seconds: 50.0,
            replicates: anon_mib.iter().map(|&a| run(a)).collect(),
            gate_dir: "g".into(),
        }
    }

    #[test]
    fn the_tuning_grid_decides_the_same_runs_again() {
        let base: Vec<_> = [16.0, 16.1, 16.2, 16.3, 16.4].map(run).into();
        let baseline = Baseline::of("s", None, &base);
        let budgets = Budgets::from_table(&toml::Table::new()).unwrap();
        let one = crate::fixture::Fixture::RetainPerUpload(loadgen::ByteSize(1 << 20));
        // +1.6 to +1.8 MiB over the baseline's median: above a 1 MiB floor
        // only, and every run above every baseline run at k = 3 and 5.
        let gates = [
            power_gate(Variant::Clean(1), &[16.1, 16.2, 16.3, 16.0, 16.4], false),
            power_gate(
                Variant::Fixture(one),
                &[17.8, 17.9, 18.0, 17.7, 17.6],
                false,
            ),
        ];
        let a = analyse(&gates, &budgets, Some(&baseline));
        assert_eq!(a.rows.len(), 2);
        assert_eq!(a.rows[0].build, "clean");
        let at = |k: usize, f: f64| {
            a.tuning
                .iter()
                .find(|t| t.replicates == k && t.floor_mib == f)
                .unwrap()
        };
        assert_eq!(a.tuning.len(), 3 * TUNING_FLOORS_MIB.len(), "k = 3, 4, 5");
        assert_eq!(at(5, 1.0).detection[0].1.flagged, 1);
        assert_eq!(at(3, 1.0).detection[0].1.flagged, 1);
        assert_eq!(at(5, 2.0).detection[0].1.flagged, 0, "below the floor");
        assert_eq!(at(5, 1.0).false_alarms.flagged, 0);
        assert_eq!(at(5, 1.0).mde[0].detected_at, Some(1 << 20));
        assert_eq!(at(3, 1.0).wall_seconds, 30.0, "scaled to 3 of 5 runs");
    }

    #[test]
    fn the_mde_is_the_size_from_which_every_larger_one_is_caught() {
        let p = |s: u64, r: f64| ("retain".to_owned(), s << 20, r);
        let m = mde(&[p(1, 0.3), p(2, 0.9), p(4, 0.8), p(8, 1.0)]);
        assert_eq!(m[0].detected_at, Some(8 << 20), "a dip at 4 MiB counts");
        assert_eq!(m[0].missed_below, Some(4 << 20));
        let m = mde(&[p(2, 0.95), p(1, 1.0)]);
        assert_eq!((m[0].detected_at, m[0].missed_below), (Some(1 << 20), None));
        let m = mde(&[p(1, 0.1), p(2, 0.5)]);
        assert_eq!((m[0].detected_at, m[0].missed_below), (None, Some(2 << 20)));
    }
}
