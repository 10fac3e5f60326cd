//! Scenario files (TOML): the machine, the server, the load phases, the
//! sampling rate and (for `rig gate`) budgets. Documented in `docs/scenarios.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::heap::HeapProfiling;
use loadgen::ByteSize as Size;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the run directory (`runs/<name>-<UTC time>/`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub machine: MachineSpec,
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub sampling: SamplingSpec,
    /// Load phases, run in order (a `background` one beside the phases after it).
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// The rig's `/healthz` prober, and the latency that fails a run.
    #[serde(default)]
    pub health: HealthSpec,
    /// Limits checked by `rig gate`; kept as written.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub budgets: toml::Table,
}

/// Where the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fresh memory cgroup with `memory` as its limit (swap off).
    #[default]
    Cgroup,
    /// This whole machine (a real small VM): no child cgroup; the limit is MemTotal.
    Machine,
    /// No limit: for profiling only.
    None,
    /// A qemu guest with `memory` of RAM, `cpus` and a `disk`: the kernel,
    /// page cache and server share the RAM as on a real small VM.
    Vm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    #[serde(default)]
    pub mode: Mode,
    /// The memory limit in `cgroup` mode; the guest's RAM in `vm` mode.
    #[serde(default = "default_memory")]
    pub memory: Size,
    /// `vm` mode: the guest's CPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// `vm` mode: the size of the guest's data disk (sparse on the host).
    #[serde(default = "default_disk")]
    pub disk: Size,
    /// A tmpfs of this size as the server's TMPDIR, charged to its cgroup (a
    /// small VM's /tmp lives in RAM). Root only.
    #[serde(default)]
    pub tmpfs: Option<Size>,
    /// Drop clean page cache before the run (root only; skipped with a note otherwise).
    #[serde(default)]
    pub drop_caches: bool,
}

fn default_memory() -> Size {
    Size(256 << 20)
}

fn default_cpus() -> u32 {
    1
}

fn default_disk() -> Size {
    Size(4 << 30)
}

/// Below this a Debian kernel with the server does not boot usefully.
const VM_MIN_MEMORY: u64 = 96 << 20;
/// The data disk holds the database and its reserve file.
const VM_MIN_DISK: u64 = 64 << 20;

impl MachineSpec {
    /// The limits make sense for a `vm` guest.
    pub fn check_vm(&self) -> Result<(), String> {
        if self.memory.0 < VM_MIN_MEMORY {
            return Err(format!(
                "machine.memory {} is below {} MiB, too small to boot the guest",
                self.memory,
                VM_MIN_MEMORY >> 20
            ));
        }
        if !(1..=64).contains(&self.cpus) {
            return Err(format!("machine.cpus {} must be 1 to 64", self.cpus));
        }
        if self.disk.0 < VM_MIN_DISK {
            return Err(format!(
                "machine.disk {} is below {} MiB",
                self.disk,
                VM_MIN_DISK >> 20
            ));
        }
        if self.tmpfs.is_some() {
            return Err("machine.tmpfs does not apply to vm mode: the guest's /tmp is already a tmpfs in its RAM".into());
        }
        Ok(())
    }
}

impl Default for MachineSpec {
    fn default() -> Self {
        MachineSpec {
            mode: Mode::Cgroup,
            memory: default_memory(),
            cpus: default_cpus(),
            disk: default_disk(),
            tmpfs: None,
            drop_caches: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Cargo features of share-server; empty: its defaults (jemalloc).
    #[serde(default)]
    pub features: Vec<String>,
    /// Build without default features (e.g. `features = ["system"]`).
    #[serde(default)]
    pub no_default_features: bool,
    /// Extra flags (the rig sets --db, --port, --listen and --debug-listen).
    #[serde(default)]
    pub args: Vec<String>,
    /// Use this binary instead of building one.
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// Heap profiles during the run: `off`, `peak` or an interval (`5s`);
    /// builds with `jemalloc-prof` (see `heap.rs`).
    #[serde(default)]
    pub heap_profiles: HeapProfiling,
    /// Run the server under this command, inside the machine (local modes):
    /// `{server}` stands for the server's command line as one shell-quoted
    /// string (`litestream replicate -exec`), else it is appended as
    /// arguments; `{litestream_config}` for a Litestream config the rig
    /// writes (see `wrapper.rs`). Empty: the server runs alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrapper: Vec<String>,
}

/// The allocator feature heap profiles need.
pub const PROFILING_FEATURE: &str = "jemalloc-prof";

impl ServerSpec {
    /// The features to build with: the scenario's, plus `jemalloc-prof` when
    /// heap profiles are on.
    pub fn build_features(&self) -> Vec<String> {
        let mut features = self.features.clone();
        if self.heap_profiles.is_on() && !features.iter().any(|f| f == PROFILING_FEATURE) {
            features.push(PROFILING_FEATURE.into());
        }
        features
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSpec {
    /// Time between samples (10 Hz by default).
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_millis(100)
}

impl Default for SamplingSpec {
    fn default() -> Self {
        SamplingSpec {
            interval: default_interval(),
        }
    }
}

/// One load phase: a loadgen configuration (host, secret and report
/// directory are filled in by the rig), then an optional pause.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// loadgen's configuration, as in `loadgen::Config` (kebab-case keys).
    #[serde(default)]
    pub loadgen: toml::Table,
    /// Idle time after the phase (lets memory settle; shows in the plots).
    #[serde(with = "humantime_serde", default)]
    pub pause_after: Duration,
    /// Start the phase and go on to the next one at once: it runs beside the phases after it
    /// (an attack while the polite load runs). The run waits for it at the end.
    #[serde(default)]
    pub background: bool,
}

/// `[health]`: a fresh connection to `/healthz` every `interval`, each with `timeout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    #[serde(with = "humantime_serde", default = "default_probe_interval")]
    pub interval: Duration,
    #[serde(with = "humantime_serde", default = "default_probe_timeout")]
    pub timeout: Duration,
    /// A probe that fails or takes longer fails the run. Unset: probes are only reported.
    #[serde(with = "humantime_serde", default)]
    pub max_latency: Option<Duration>,
}

fn default_probe_interval() -> Duration {
    Duration::from_millis(500)
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            max_latency: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("scenario {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |problem: String| ScenarioError::Invalid {
            path: path.to_owned(),
            problem,
        };
        if scenario.name.is_empty()
            || !scenario
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "name {:?} must be letters, digits, '-' or '_'",
                scenario.name
            )));
        }
        if scenario.machine.mode == Mode::Cgroup && scenario.machine.memory.0 < (8 << 20) {
            return Err(invalid(format!(
                "machine.memory {} is below 8 MiB",
                scenario.machine.memory
            )));
        }
        if scenario.machine.mode == Mode::Vm {
            scenario.machine.check_vm().map_err(invalid)?;
        }
        if scenario.sampling.interval < Duration::from_millis(10) {
            return Err(invalid("sampling.interval must be at least 10ms".into()));
        }
        if let Some(p) = scenario
            .phases
            .iter()
            .find(|p| p.background && !p.pause_after.is_zero())
        {
            return Err(invalid(format!(
                "phase {}: a background phase has no pause_after (the next phase starts at once)",
                p.name
            )));
        }
        let server = &scenario.server;
        if !server.wrapper.is_empty() && scenario.machine.mode == Mode::Vm {
            return Err(invalid(
                "server.wrapper runs on this host: it does not apply to vm mode".into(),
            ));
        }
        if server.heap_profiles.is_on()
            && server.no_default_features
            && !server.features.iter().any(|f| f.starts_with("jemalloc"))
        {
            return Err(invalid(
                "server.heap_profiles needs the jemalloc allocator (no_default_features without a jemalloc feature)".into(),
            ));
        }
        let health = &scenario.health;
        if health.interval < Duration::from_millis(50) || health.timeout.is_zero() {
            return Err(invalid(
                "health.interval must be at least 50ms and health.timeout above 0".into(),
            ));
        }
        if health.max_latency.is_some_and(|m| m >= health.timeout) {
            return Err(invalid(
                "health.max_latency must be below health.timeout".into(),
            ));
        }
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_scenario() {
        let text = r#"
            name = "parallel-uploads"
            [machine]
            mode = "cgroup"
            memory = "256MiB"
            tmpfs = "32MiB"
            [server]
            features = ["jemalloc"]
            args = ["--gc-interval", "1h"]
            [sampling]
            interval = "50ms"
            [[phases]]
            name = "upload"
            pause_after = "2s"
            [phases.loadgen]
            scenario = "upload"
            users = 3
            [[phases]]
            name = "attack"
            background = true
            [phases.loadgen]
            scenario = "idle-flood"
            [health]
            max_latency = "1s"
            [budgets]
            peak-working-set = "200MiB"
        "#;
        let s = Scenario::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(s.machine.memory, Size(256 << 20));
        assert_eq!(s.machine.tmpfs, Some(Size(32 << 20)));
        assert_eq!(s.sampling.interval, Duration::from_millis(50));
        assert_eq!(s.phases[0].pause_after, Duration::from_secs(2));
        assert_eq!(s.phases[0].loadgen["users"].as_integer(), Some(3));
        assert!(s.budgets.contains_key("peak-working-set"));
        assert!(!s.phases[0].background && s.phases[1].background);
        assert_eq!(s.health.max_latency, Some(Duration::from_secs(1)));
        assert_eq!(s.health.interval, Duration::from_millis(500));
        let paused = text.replace(
            "background = true",
            "background = true\npause_after = \"1s\"",
        );
        assert!(Scenario::parse(&paused, Path::new("x.toml")).is_err());
    }

    #[test]
    fn defaults_and_errors() {
        let s = Scenario::parse("name = \"x\"", Path::new("x.toml")).unwrap();
        assert_eq!(s.machine.mode, Mode::Cgroup);
        assert_eq!(s.machine.memory, Size(256 << 20));
        assert_eq!(s.sampling.interval, Duration::from_millis(100));
        assert!(Scenario::parse("name = \"x\"\nmystery = 1", Path::new("x.toml")).is_err());
        assert!(Scenario::parse("name = \"a/b\"", Path::new("x.toml")).is_err());
        assert!(
            Scenario::parse(
                "name = \"x\"\n[machine]\nmemory = \"1MiB\"",
                Path::new("x.toml")
            )
            .is_err()
        );
    }

    #[test]
    fn vm_limits() {
        let vm = |extra: &str| {
            Scenario::parse(
                &format!("name = \"x\"\n[machine]\nmode = \"vm\"\n{extra}"),
                Path::new("x.toml"),
            )
        };
        assert!(vm("").is_ok());
        assert!(vm("memory = \"64MiB\"").is_err());
        assert!(vm("cpus = 0").is_err());
        assert!(vm("disk = \"32MiB\"").is_err());
        assert!(vm("tmpfs = \"8MiB\"").is_err());
        assert!(vm("[server]\nwrapper = [\"litestream\"]").is_err());
    }

    #[test]
    fn heap_profiles_add_the_profiling_feature() {
        let parse = |server: &str| {
            Scenario::parse(
                &format!("name = \"x\"\n[server]\n{server}"),
                Path::new("x.toml"),
            )
        };
        let s = parse("heap_profiles = \"peak\"").unwrap();
        assert_eq!(s.server.build_features(), [PROFILING_FEATURE]);
        let s = parse("features = [\"jemalloc-prof\"]\nheap_profiles = \"5s\"").unwrap();
        assert_eq!(s.server.build_features(), [PROFILING_FEATURE]);
        assert!(parse("").unwrap().server.build_features().is_empty());
        assert!(parse("heap_profiles = \"sometimes\"").is_err());
        assert!(
            parse("no_default_features = true\nfeatures = [\"system\"]\nheap_profiles = \"peak\"")
                .is_err()
        );
    }
}
