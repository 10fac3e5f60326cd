//! The fixtures `rig prove` knows are the server's: the names
//! `share-server --help` lists for `--regression` in a build with the
//! `regressions` feature.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::workspace;
use profiling::gate::prove::Fixture;
use profiling::scenario::ServerSpec;

#[test]
fn the_rigs_fixtures_are_the_servers_regressions() {
    let spec = ServerSpec {
        features: vec!["regressions".into()],
        ..ServerSpec::default()
    };
    let binary = profiling::target::build_debug_with(&spec, &workspace()).unwrap();
    let help = std::process::Command::new(&binary)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "{help:?}");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut server = regression_values(&help);
    let sized = Fixture::SIZED.iter().map(|n| format!("{n}=SIZE"));
    let mut rig: Vec<String> = Fixture::ALL.iter().map(|f| f.name()).chain(sized).collect();
    server.sort_unstable();
    rig.sort_unstable();
    assert_eq!(
        rig, server,
        "the rig's fixtures (gate/prove.rs) differ from the server's --regression values \
         (server/src/regressions.rs)\n{help}"
    );
}

/// The values listed under `--regression` in clap's long help: lines
/// `- name: what it does` up to the next option.
fn regression_values(help: &str) -> Vec<&str> {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--regression"));
    assert!(lines.next().is_some(), "no --regression in:\n{help}");
    lines
        .map(str::trim_start)
        // The next option (`-h, --help`) ends the list.
        .take_while(|l| !l.starts_with('-') || l.starts_with("- "))
        .filter_map(|l| l.strip_prefix("- ")?.split_once(':'))
        .map(|(name, _)| name.trim())
        .collect()
}
