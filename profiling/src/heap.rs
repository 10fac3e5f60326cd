//! Heap profiles during a run (`[server] heap_profiles`): the server is built
//! with `jemalloc-prof`, and this task fetches `/debug/pprof/heap` right after
//! each new peak of the allocator's resident bytes (seen in the sampler's
//! samples) and, if set, every interval; at most one profile per [`MIN_GAP`],
//! unless the heap jumped by [`JUMP`] since the last one: a spike shorter than
//! the gap would be gone when it ends.
//! Profiles go to `heap/<t_ms>.pb.gz` in the run directory, listed in
//! `meta.json` ([`run_format::HeapProfiles`]).
//!
//! Cost: each dump stops the server's allocating threads for the time
//! jemalloc takes to walk its samples and the server to symbolize them
//! (`fetch_ms` of each profile in `meta.json`); the `jemalloc-prof` build
//! itself samples one allocation per 512 KiB (`lg_prof_sample:19`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use run_format::Sample;
use run_format::heap::{self, HeapProfile, HeapProfiles, Trigger};

/// The least time between two profiles: a rising heap makes a new peak at
/// almost every sample.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// A new peak this far (or a quarter) above the last profile's is taken at
/// once; so at most one such profile per 16 MiB of growth.
pub const JUMP: u64 = 16 << 20;
/// A dump of a big heap with symbols can take seconds.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure reasons kept in `meta.json`.
const FAILURE_EXAMPLES: usize = 3;

/// When to take heap profiles: `off`, `peak` (after each new peak), or an
/// interval such as `5s` (every interval, and after each new peak).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HeapProfiling {
    #[default]
    Off,
    Peak,
    Every(Duration),
}

impl HeapProfiling {
    pub fn is_on(self) -> bool {
        self != HeapProfiling::Off
    }

    fn interval(self) -> Option<Duration> {
        match self {
            HeapProfiling::Every(d) => Some(d),
            _ => None,
        }
    }
}

impl FromStr for HeapProfiling {
    type Err = String;

    fn from_str(s: &str) -> Result<HeapProfiling, String> {
        match s.trim() {
            "off" => Ok(HeapProfiling::Off),
            "peak" => Ok(HeapProfiling::Peak),
            other => {
                let every = humantime::parse_duration(other).map_err(|_| {
                    format!(
                        "heap_profiles {s:?}: expected \"off\", \"peak\" or an interval (\"5s\")"
                    )
                })?;
                if every < MIN_GAP {
                    return Err(format!(
                        "heap_profiles {s:?}: the interval must be at least {MIN_GAP:?}"
                    ));
                }
                Ok(HeapProfiling::Every(every))
            }
        }
    }
}

impl fmt::Display for HeapProfiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapProfiling::Off => f.write_str("off"),
            HeapProfiling::Peak => f.write_str("peak"),
            HeapProfiling::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl TryFrom<String> for HeapProfiling {
    type Error = String;

    fn try_from(s: String) -> Result<HeapProfiling, String> {
        s.parse()
    }
}

impl From<HeapProfiling> for String {
    fn from(h: HeapProfiling) -> String {
        h.to_string()
    }
}

/// The scenario text with `[server] heap_profiles` set (`rig run --heap-profiles`).
pub fn with_heap_profiles(text: &str, setting: HeapProfiling) -> Result<String, String> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let server = doc
        .entry("server")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .ok_or("[server] is not a table")?;
    server.insert("heap_profiles".into(), setting.to_string().into());
    toml::to_string(&doc).map_err(|e| e.to_string())
}

/// Takes the profiles of one run.
pub struct HeapProfiler {
    pub setting: HeapProfiling,
    pub debug_url: String,
    /// The run directory.
    pub dir: PathBuf,
    /// The samples' clock.
    pub started: Instant,
}

impl HeapProfiler {
    /// Watches the sampler's samples until `stop` fires or the sampler ends;
    /// returns what was taken (failures included: a profile is never worth
    /// failing a run).
    pub async fn run(
        self,
        mut samples: watch::Receiver<Option<Sample>>,
        stop: CancellationToken,
    ) -> HeapProfiles {
        let mut taken = HeapProfiles {
            setting: self.setting.to_string(),
            min_gap_ms: MIN_GAP.as_millis() as u64,
            ..HeapProfiles::default()
        };
        let http = match loadgen::client_builder(&self.debug_url)
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                self.failed(&mut taken, format!("building an HTTP client: {e}"));
                return taken;
            }
        };
        if let Err(e) = std::fs::create_dir_all(self.dir.join(heap::HEAP_DIR)) {
            self.failed(&mut taken, format!("creating heap/: {e}"));
            return taken;
        }
        let mut ticker = self.setting.interval().map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            t
        });
        let (mut peak, mut resident) = (0u64, None);
        let mut due: Option<Trigger> = None;
        let mut last: Option<(Instant, Option<u64>)> = None;
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                changed = samples.changed() => {
                    if changed.is_err() {
                        break; // the sampler ended
                    }
                    resident = samples.borrow_and_update().as_ref()
                        .and_then(|s| s.server.as_ref()?.allocator.resident_bytes);
                    if let Some(r) = resident.filter(|r| *r > peak) {
                        peak = r;
                        due = Some(Trigger::Peak);
                    }
                }
                _ = tick => { due.get_or_insert(Trigger::Interval); }
            }
            // A peak inside the gap is taken when the gap ends, not dropped.
            if let Some(trigger) = due
                && take_now(last, resident)
            {
                last = Some((Instant::now(), resident));
                due = None;
                match self.take(&http, trigger, resident).await {
                    Ok(profile) => taken.profiles.push(profile),
                    Err(e) => self.failed(&mut taken, e),
                }
            }
        }
        taken
    }

    async fn take(
        &self,
        http: &reqwest::Client,
        trigger: Trigger,
        resident: Option<u64>,
    ) -> Result<HeapProfile, String> {
        let t_ms = self.started.elapsed().as_millis() as u64;
        let began = Instant::now();
        let url = format!("{}/debug/pprof/heap", self.debug_url);
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("{url}: {status}: {text}"));
        }
        let fetch_ms = began.elapsed().as_millis() as u64;
        let file = heap::file_name(t_ms);
        let path = self.dir.join(&file);
        std::fs::write(&path, &body).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(HeapProfile {
            t_ms,
            file,
            trigger,
            allocator_resident_bytes: resident,
            bytes: body.len() as u64,
            fetch_ms,
        })
    }

    fn failed(&self, taken: &mut HeapProfiles, reason: String) {
        tracing::warn!(%reason, "heap profile");
        taken.failures += 1;
        if taken.failure_examples.len() < FAILURE_EXAMPLES {
            taken.failure_examples.push(reason);
        }
    }
}

/// Whether a due profile is taken now: the gap since the `last` one (its
/// time and resident bytes) has passed, or the heap jumped since it.
fn take_now(last: Option<(Instant, Option<u64>)>, resident: Option<u64>) -> bool {
    let Some((at, last_resident)) = last else {
        return true;
    };
    let jumped = match (last_resident, resident) {
        (Some(before), Some(now)) => now >= before + JUMP.max(before / 4),
        _ => false,
    };
    jumped || at.elapsed() >= MIN_GAP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_print_back() {
        for (text, setting) in [
            ("off", HeapProfiling::Off),
            ("peak", HeapProfiling::Peak),
            ("5s", HeapProfiling::Every(Duration::from_secs(5))),
            ("1m", HeapProfiling::Every(Duration::from_secs(60))),
        ] {
            assert_eq!(text.parse::<HeapProfiling>(), Ok(setting));
            assert_eq!(setting.to_string(), text);
        }
        assert!("1s".parse::<HeapProfiling>().is_err(), "below the gap");
        assert!("often".parse::<HeapProfiling>().is_err());
        assert!(!HeapProfiling::default().is_on());
    }

    #[test]
    fn a_jump_skips_the_gap() {
        let just_now = Some((Instant::now(), Some(40 << 20)));
        assert!(take_now(None, Some(1)));
        assert!(
            !take_now(just_now, Some(50 << 20)),
            "within the gap, +10 MiB"
        );
        assert!(take_now(just_now, Some(56 << 20)), "+16 MiB");
        let big = Some((Instant::now(), Some(200 << 20)));
        assert!(!take_now(big, Some(240 << 20)), "+20 % of 200 MiB");
        assert!(take_now(big, Some(250 << 20)), "+25 %");
        assert!(!take_now(Some((Instant::now(), None)), Some(1 << 30)));
    }

    #[test]
    fn the_override_sets_the_servers_key() {
        let out = with_heap_profiles("name = \"x\"\n", HeapProfiling::Peak).unwrap_or_default();
        assert!(
            out.contains("[server]") && out.contains("heap_profiles = \"peak\""),
            "{out}"
        );
        let out = with_heap_profiles(
            "name = \"x\"\n[server]\nheap_profiles = \"off\"\n",
            HeapProfiling::Every(Duration::from_secs(5)),
        )
        .unwrap_or_default();
        assert!(out.contains("heap_profiles = \"5s\""), "{out}");
    }
}
