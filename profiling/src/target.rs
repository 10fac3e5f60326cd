//! The server under test: build or locate the binary, and tell when it
//! answers `/healthz`. Machines start it (`machine::Machine::start_server`).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::scenario::ServerSpec;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("building share-server failed ({status}): see the cargo output above")]
    Build { status: ExitStatus },
    #[error("running cargo: {0}")]
    Cargo(std::io::Error),
}

/// Builds share-server in release mode with the scenario's features and
/// returns the binary, or returns the scenario's own binary.
pub fn build(spec: &ServerSpec, workspace: &Path) -> Result<PathBuf, TargetError> {
    if let Some(binary) = &spec.binary {
        return Ok(binary.clone());
    }
    cargo_build(spec, workspace, true)
}

/// Builds the debug share-server with its default features: what the
/// end-to-end tests run (a test cannot name another package's binary).
pub fn build_debug(workspace: &Path) -> Result<PathBuf, TargetError> {
    build_debug_with(&ServerSpec::default(), workspace)
}

/// Builds the debug share-server with `spec`'s features (`regressions` for
/// the test of `rig prove`'s fixtures).
pub fn build_debug_with(spec: &ServerSpec, workspace: &Path) -> Result<PathBuf, TargetError> {
    cargo_build(spec, workspace, false)
}

fn cargo_build(spec: &ServerSpec, workspace: &Path, release: bool) -> Result<PathBuf, TargetError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace).arg("build");
    // Heap profiles need function names with their module paths (`share_server::…`),
    // which the release profile's line tables lack: `[profile.profiling]`.
    let profile = match (release, spec.heap_profiles.is_on()) {
        (false, _) => "debug",
        (true, false) => "release",
        (true, true) => "profiling",
    };
    if release {
        cmd.args(["--profile", profile]);
    }
    let features = spec.build_features();
    if spec.no_default_features {
        // Another allocator: a build of its own anyway.
        cmd.args(["-p", "share-server", "--no-default-features"]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
    } else {
        // `--bin` without `-p` resolves features over the whole workspace, as
        // `cargo run --bin rig` does: the dependencies the rig and the server
        // share are built once, not once per feature set.
        cmd.args(["--bin", "share-server"]);
        for feature in &features {
            cmd.args(["--features", &format!("share-server/{feature}")]);
        }
    }
    let status = cmd.status().map_err(TargetError::Cargo)?;
    if !status.success() {
        return Err(TargetError::Build { status });
    }
    Ok(target_dir(workspace).join(profile).join("share-server"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    }
}

/// How the server ended; `outcome.json` holds it, so it lives in run-format.
pub use run_format::Exit;

/// Polls `/healthz` until it answers 200 or `deadline` passes.
pub(crate) async fn wait_healthy_until(base_url: &str, deadline: Instant) -> Result<(), String> {
    // Plain HTTP: no CA store needed (a minimal guest has none; see loadgen::client_builder).
    let http = loadgen::client_builder(base_url)
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
            format!("building an HTTP client: {e}{}", cause.unwrap_or_default())
        })?;
    let started = Instant::now();
    loop {
        match http.get(format!("{base_url}/healthz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "/healthz did not answer 200 within {:?}",
                    started.elapsed()
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
