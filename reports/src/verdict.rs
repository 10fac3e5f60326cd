//! The verdict: did the server crash, is a crash near (pressure), is memory
//! merely full of reclaimable page cache (bloat, the story's false alarm),
//! or is all well. Each verdict comes with its reasons in words and figures,
//! because a bare word sent the story's investigation the wrong way for weeks.

use serde::{Deserialize, Serialize};

use crate::load::Ending;
use crate::stats;
use crate::timeline::{Layer, Timeline};

const MIB: f64 = 1024.0 * 1024.0;

/// "Near the limit": within this share of it (10 %: 25.6 MiB of 256 MiB,
/// about one upload's worth of buffers in the story's server).
pub const NEAR_LIMIT: f64 = 0.10;
/// Anonymous memory "far below the limit": under this share of it.
pub const ANON_FAR_BELOW: f64 = 0.5;
/// PSI `some avg10` at or above this (%) is pressure: tasks stalled on
/// memory a tenth of the time.
pub const PSI_SOME_AVG10: f64 = 10.0;
/// How far back from a crash to look for the layer that grew.
pub const BEFORE_CRASH_S: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The server was killed (OOM kill or a signal) or died on its own.
    Crash,
    /// The working set came near the limit, or the kernel stalled on memory: a crash is near.
    Pressure,
    /// Usage near the limit, but mostly reclaimable page cache: not a problem.
    Bloat,
    Healthy,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Crash => "crash",
            Verdict::Pressure => "pressure",
            Verdict::Bloat => "bloat",
            Verdict::Healthy => "healthy",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub verdict: Verdict,
    /// One sentence with the main figure (without the verdict word).
    pub headline: String,
    /// Each reason in words and figures.
    pub reasons: Vec<String>,
}

/// What the verdict is decided on: plain series and the ending, so the
/// rules can be tested on synthetic runs.
pub struct Facts<'a> {
    pub t_s: &'a [f64],
    /// `None`: no limit (mode `none`): only a crash can be judged.
    pub limit_bytes: Option<f64>,
    pub usage: &'a [Option<f64>],
    pub working_set: &'a [Option<f64>],
    pub anon: &'a [Option<f64>],
    pub page_cache: &'a [Option<f64>],
    pub dirty: &'a [Option<f64>],
    pub limit_hits: &'a [Option<f64>],
    pub pressure_some: &'a [Option<f64>],
    pub oom_kills: &'a [Option<f64>],
    pub ending: &'a Ending,
    /// Layers to search for "which one grew before the crash".
    pub layers: Vec<(&'static str, &'a [Option<f64>])>,
}

impl<'a> Facts<'a> {
    pub fn of(t: &'a Timeline, limit_bytes: Option<u64>, ending: &'a Ending) -> Facts<'a> {
        Facts {
            t_s: &t.t_s,
            limit_bytes: limit_bytes.map(|l| l as f64),
            usage: t.col(Layer::MachineUsage),
            working_set: t.col(Layer::MachineWorkingSet),
            anon: t.col(Layer::MachineAnon),
            page_cache: t.col(Layer::PageCache),
            dirty: t.col(Layer::DirtyWriteback),
            limit_hits: t.col(Layer::LimitHits),
            pressure_some: t.col(Layer::PressureSome),
            oom_kills: t.col(Layer::OomKills),
            ending,
            layers: [
                Layer::MachineAnon,
                Layer::PageCacheClean,
                Layer::DirtyWriteback,
                Layer::ProcessAnon,
                Layer::AllocatorAllocated,
                Layer::AllocatorFragmentation,
                Layer::SqliteMemory,
                Layer::ProcessShmem,
            ]
            .into_iter()
            .filter(|l| t.has(*l))
            .map(|l| (l.label(), t.col(l)))
            .collect(),
        }
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

fn pct(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// The rise of a counter over the run (failcnt, OOM kills).
fn rise(xs: &[Option<f64>]) -> f64 {
    let first = xs.iter().find_map(|v| *v);
    let max = stats::peak(xs).map(|(_, v)| v);
    first.zip(max).map_or(0.0, |(f, m)| m - f)
}

pub fn diagnose(f: &Facts) -> Diagnosis {
    if let Some(d) = crash(f) {
        return d;
    }
    let Some(limit) = f.limit_bytes.filter(|l| *l > 0.0) else {
        let mut reasons = vec![
            "no memory limit (machine mode none): pressure and bloat cannot be judged; \
             healthy means only that the server did not die"
                .to_owned(),
        ];
        reasons.extend(peak_facts(f, None));
        return Diagnosis {
            verdict: Verdict::Healthy,
            headline: "the server lived through the run (no limit applied)".into(),
            reasons,
        };
    };
    let ws_peak = stats::peak(f.working_set).map_or(0.0, |(_, v)| v);
    let usage_peak = stats::peak(f.usage);
    let anon_peak = stats::peak(f.anon).map_or(0.0, |(_, v)| v);
    let hits = rise(f.limit_hits);
    let psi = stats::peak(f.pressure_some).map_or(0.0, |(_, v)| v);
    let near = limit * (1.0 - NEAR_LIMIT);

    let mut pressure = Vec::new();
    if ws_peak >= near {
        pressure.push(format!(
            "the working set (usage − inactive file cache, what cannot simply be dropped) peaked at \
             {} of the {} limit ({}), within {} of it: the next allocation burst can be an OOM kill",
            mib(ws_peak),
            mib(limit),
            pct(ws_peak / limit),
            mib(limit - ws_peak)
        ));
    }
    if psi >= PSI_SOME_AVG10 {
        pressure.push(format!(
            "memory pressure (PSI some avg10) reached {psi:.1} %: tasks stalled waiting for memory"
        ));
    }
    if hits > 0.0 && ws_peak >= limit * ANON_FAR_BELOW {
        pressure.push(format!(
            "the limit was hit {hits:.0} times while the working set reached {} ({})",
            mib(ws_peak),
            pct(ws_peak / limit)
        ));
    }
    if !pressure.is_empty() {
        pressure.extend(peak_facts(f, Some(limit)));
        return Diagnosis {
            verdict: Verdict::Pressure,
            headline: format!(
                "working set peaked at {} of {}: a crash is near",
                mib(ws_peak),
                mib(limit)
            ),
            reasons: pressure,
        };
    }

    let usage_near = usage_peak.is_some_and(|(_, u)| u >= near) || hits > 0.0;
    if usage_near && anon_peak < limit * ANON_FAR_BELOW {
        let (i, u) = usage_peak.unwrap_or((0, 0.0));
        let cache = stats::last_at_or_before(f.page_cache, i).unwrap_or(0.0);
        let dirty = stats::last_at_or_before(f.dirty, i).unwrap_or(0.0);
        let mut reasons = vec![
            format!(
                "usage reached {} of the {} limit ({}) at {:.1} s: a VM dashboard would show memory full",
                mib(u),
                mib(limit),
                pct(u / limit),
                f.t_s.get(i).copied().unwrap_or(0.0)
            ),
            format!(
                "at that moment {} of it was page cache ({} of the usage; {} dirty or under writeback): \
                 the kernel reclaims it under pressure",
                mib(cache),
                pct(if u > 0.0 { cache / u } else { 0.0 }),
                mib(dirty)
            ),
            format!(
                "anonymous memory peaked at {} ({} of the limit): far below it; the working set, \
                 which still counts the active part of the page cache, peaked at {} ({})",
                mib(anon_peak),
                pct(anon_peak / limit),
                mib(ws_peak),
                pct(ws_peak / limit)
            ),
        ];
        if hits > 0.0 {
            reasons.push(format!(
                "the limit was hit {hits:.0} times: each time the kernel reclaimed page cache, not the server's memory"
            ));
        }
        reasons.push(
            "this is the story's false alarm: \"RAM maxed out\" while the program is small; it is not a coming crash"
                .into(),
        );
        return Diagnosis {
            verdict: Verdict::Bloat,
            headline: format!(
                "usage reached {} of {}, but it is reclaimable page cache; anon peaked at {}",
                mib(u),
                mib(limit),
                mib(anon_peak)
            ),
            reasons,
        };
    }

    Diagnosis {
        verdict: Verdict::Healthy,
        headline: format!(
            "working set peaked at {} of {} ({})",
            mib(ws_peak),
            mib(limit),
            pct(ws_peak / limit)
        ),
        reasons: peak_facts(f, Some(limit)),
    }
}

/// Usage, working set and anon peaks in words.
fn peak_facts(f: &Facts, limit: Option<f64>) -> Vec<String> {
    let of_limit = |v: f64| {
        limit
            .map(|l| format!(" ({} of the limit)", pct(v / l)))
            .unwrap_or_default()
    };
    [
        ("usage", f.usage),
        ("working set", f.working_set),
        ("anonymous memory", f.anon),
    ]
    .into_iter()
    .filter_map(|(name, col)| {
        let (i, v) = stats::peak(col)?;
        Some(format!(
            "{name} peaked at {}{} at {:.1} s",
            mib(v),
            of_limit(v),
            f.t_s.get(i).copied().unwrap_or(0.0)
        ))
    })
    .collect()
}

/// The crash verdict: when, how, and which layer grew in the seconds before.
fn crash(f: &Facts) -> Option<Diagnosis> {
    let oom = (f.ending.oom_kills as f64).max(rise(f.oom_kills));
    // When: the death, else the first sample whose OOM kill count rose.
    let first_oom_at = {
        let base = f.oom_kills.iter().find_map(|v| *v);
        f.oom_kills
            .iter()
            .zip(f.t_s)
            .find(|(v, _)| v.zip(base).is_some_and(|(v, b)| v > b))
            .map(|(_, t)| *t)
    };
    let at = f.ending.died_at_s.or(first_oom_at);
    if oom == 0.0 && f.ending.died_at_s.is_none() {
        return None;
    }
    let how = f.ending.how.clone().unwrap_or_else(|| "killed".into());
    // "was killed by SIGKILL", "exited with status 1".
    let how = if how.starts_with("killed") {
        format!("was {how}")
    } else {
        how
    };
    let at_text = at.map_or_else(String::new, |t| format!(" at {t:.1} s"));
    let mut reasons = vec![format!(
        "the server {how}{at_text}; OOM kills: {oom:.0}{}",
        if oom > 0.0 {
            " (the kernel's OOM killer chose it: the memory limit was exhausted)"
        } else {
            " (not the OOM killer: a crash of its own or another signal)"
        }
    )];
    let end = at
        .map(|at| f.t_s.iter().rposition(|t| *t <= at).unwrap_or(0))
        .unwrap_or(f.t_s.len().saturating_sub(1));
    if let Some(limit) = f.limit_bytes
        && let Some(u) = stats::last_at_or_before(f.usage, end)
    {
        let ws = stats::last_at_or_before(f.working_set, end).unwrap_or(0.0);
        reasons.push(format!(
            "just before: usage {} and working set {} of the {} limit ({})",
            mib(u),
            mib(ws),
            mib(limit),
            pct(ws / limit)
        ));
    }
    let grew = grew_before(f, end);
    if let Some((name, by)) = grew.first() {
        let others: Vec<String> = grew[1..]
            .iter()
            .take(2)
            .map(|(n, b)| format!("{n} +{}", mib(*b)))
            .collect();
        reasons.push(format!(
            "in the {BEFORE_CRASH_S:.0} s before, {name} grew the most: +{}{}",
            mib(*by),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (then {})", others.join(", "))
            }
        ));
    }
    Some(Diagnosis {
        verdict: Verdict::Crash,
        headline: format!(
            "the server {how}{at_text}{}",
            grew.first()
                .map(|(n, b)| format!(" after {n} grew by {}", mib(*b)))
                .unwrap_or_default()
        ),
        reasons,
    })
}

/// Layers that rose in the window before sample `end`, largest rise first:
/// the last figure minus the lowest one in the window.
fn grew_before(f: &Facts, end: usize) -> Vec<(&'static str, f64)> {
    let Some(t_end) = f.t_s.get(end) else {
        return Vec::new();
    };
    let start = f
        .t_s
        .iter()
        .position(|t| *t >= t_end - BEFORE_CRASH_S)
        .unwrap_or(0);
    let mut grew: Vec<(&'static str, f64)> = f
        .layers
        .iter()
        .filter_map(|(name, col)| {
            let window = col.get(start..=end)?;
            let last = window.iter().rev().find_map(|v| *v)?;
            let low = window
                .iter()
                .filter_map(|v| *v)
                .fold(f64::INFINITY, f64::min);
            let by = last - low;
            (by > 0.0).then_some((*name, by))
        })
        .collect();
    grew.sort_by(|a, b| b.1.total_cmp(&a.1));
    grew
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic run: 20 samples a second apart, figures in MiB.
    struct Run {
        t: Vec<f64>,
        usage: Vec<Option<f64>>,
        ws: Vec<Option<f64>>,
        anon: Vec<Option<f64>>,
        cache: Vec<Option<f64>>,
        hits: Vec<Option<f64>>,
        psi: Vec<Option<f64>>,
        oom: Vec<Option<f64>>,
        ending: Ending,
    }

    fn mibs(v: impl Fn(usize) -> f64) -> Vec<Option<f64>> {
        (0..20).map(|i| Some(v(i) * MIB)).collect()
    }

    /// anon rises to `anon_top`, page cache to `cache_top`, all inactive
    /// except `active` MiB of it (so working set = anon + active).
    fn run(anon_top: f64, cache_top: f64, active: f64) -> Run {
        let ramp = |top: f64| move |i: usize| top * (i as f64 / 19.0);
        let usage = mibs(|i| ramp(anon_top)(i) + ramp(cache_top)(i));
        Run {
            t: (0..20).map(|i| i as f64).collect(),
            ws: mibs(|i| ramp(anon_top)(i) + ramp(active)(i)),
            anon: mibs(ramp(anon_top)),
            cache: mibs(ramp(cache_top)),
            usage,
            hits: vec![Some(0.0); 20],
            psi: vec![Some(0.0); 20],
            oom: vec![Some(0.0); 20],
            ending: Ending::default(),
        }
    }

    fn diagnose_run(r: &Run, limit_mib: Option<f64>) -> Diagnosis {
        diagnose(&Facts {
            t_s: &r.t,
            limit_bytes: limit_mib.map(|l| l * MIB),
            usage: &r.usage,
            working_set: &r.ws,
            anon: &r.anon,
            page_cache: &r.cache,
            dirty: &[],
            limit_hits: &r.hits,
            pressure_some: &r.psi,
            oom_kills: &r.oom,
            ending: &r.ending,
            layers: vec![("anon", &r.anon), ("page cache", &r.cache)],
        })
    }

    #[test]
    fn small_usage_is_healthy() {
        let d = diagnose_run(&run(40.0, 60.0, 10.0), Some(256.0));
        assert_eq!(d.verdict, Verdict::Healthy, "{d:#?}");
        // working set 50 MiB of 256 = 19.5 % → "20 %".
        assert_eq!(
            d.headline,
            "working set peaked at 50.0 MiB of 256.0 MiB (20 %)"
        );
    }

    /// Usage 40 + 210 = 250 MiB of 256 (98 %), working set 40 + 20 = 60 MiB:
    /// the story's false alarm.
    #[test]
    fn usage_full_of_page_cache_is_bloat() {
        let d = diagnose_run(&run(40.0, 210.0, 20.0), Some(256.0));
        assert_eq!(d.verdict, Verdict::Bloat, "{d:#?}");
        assert!(
            d.reasons[0].contains("250.0 MiB of the 256.0 MiB limit (98 %)"),
            "{d:#?}"
        );
        assert!(
            d.reasons[1].contains("210.0 MiB of it was page cache (84 %"),
            "{d:#?}"
        );
        assert!(d.reasons.iter().any(|r| r.contains("false alarm")));
    }

    /// Limit hits while the working set stays low are the kernel reclaiming cache: still bloat.
    #[test]
    fn limit_hits_on_cache_alone_are_bloat() {
        let mut r = run(30.0, 150.0, 10.0);
        r.hits = (0..20).map(|i| Some(i as f64 * 3.0)).collect();
        let d = diagnose_run(&r, Some(256.0));
        assert_eq!(d.verdict, Verdict::Bloat, "{d:#?}");
        assert!(
            d.reasons.iter().any(|x| x.contains("hit 57 times")),
            "{d:#?}"
        );
    }

    /// Working set 200 + 35 = 235 MiB of 256 (92 %): within 10 % of the limit.
    #[test]
    fn working_set_near_the_limit_is_pressure() {
        let d = diagnose_run(&run(200.0, 50.0, 35.0), Some(256.0));
        assert_eq!(d.verdict, Verdict::Pressure, "{d:#?}");
        assert!(
            d.reasons[0].contains("235.0 MiB of the 256.0 MiB limit (92 %), within 21.0 MiB"),
            "{d:#?}"
        );
    }

    #[test]
    fn psi_stalls_are_pressure_even_with_room() {
        let mut r = run(60.0, 40.0, 10.0);
        r.psi[12] = Some(23.5);
        let d = diagnose_run(&r, Some(256.0));
        assert_eq!(d.verdict, Verdict::Pressure);
        assert!(d.reasons[0].contains("23.5 %"), "{d:#?}");
    }

    /// Killed at 15.5 s: the last sample before is t = 15 s; anon rose from
    /// 200·5/19 to 200·15/19 MiB in the 10 s before (+105.3 MiB), cache
    /// from 10·5/19 to 10·15/19 (+5.3 MiB).
    #[test]
    fn a_kill_is_a_crash_with_the_layer_that_grew() {
        let mut r = run(200.0, 10.0, 5.0);
        r.oom = (0..20)
            .map(|i| Some(if i >= 16 { 1.0 } else { 0.0 }))
            .collect();
        r.ending = Ending {
            died_at_s: Some(15.5),
            how: Some("killed by SIGKILL".into()),
            signal: Some(9),
            oom_kills: 1,
            interrupted: false,
        };
        let d = diagnose_run(&r, Some(256.0));
        assert_eq!(d.verdict, Verdict::Crash, "{d:#?}");
        assert_eq!(
            d.headline,
            "the server was killed by SIGKILL at 15.5 s after anon grew by 105.3 MiB"
        );
        assert!(d.reasons[0].contains("OOM kills: 1"), "{d:#?}");
        assert!(
            d.reasons[2].contains("(then page cache +5.3 MiB)"),
            "{d:#?}"
        );
    }

    /// An OOM kill counted in the samples is a crash even if the outcome missed it.
    #[test]
    fn a_sampled_oom_kill_alone_is_a_crash() {
        let mut r = run(40.0, 40.0, 10.0);
        r.oom[7] = Some(1.0);
        let d = diagnose_run(&r, Some(256.0));
        assert_eq!(d.verdict, Verdict::Crash);
        assert!(d.headline.contains("at 7.0 s"), "{d:#?}");
    }

    #[test]
    fn without_a_limit_only_a_crash_can_be_judged() {
        let d = diagnose_run(&run(200.0, 5000.0, 100.0), None);
        assert_eq!(d.verdict, Verdict::Healthy);
        assert!(d.reasons[0].contains("no memory limit"));
    }
}
