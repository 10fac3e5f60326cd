//! The dev VM's files (docs/dev-vm.md): fly.dev.toml asks for the story's
//! machine and wires the health check and metrics to the server's real
//! routes, Dockerfile.dev has the targets fly.dev.toml and the docs name, and
//! the VM scenario runs in machine mode. What the images run is checked by
//! scripts/prod-stage-check.sh and scripts/dev-entrypoint-check.sh. fly.prod.toml
//! builds the prod image, on a volume, with its secrets named and not set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use profiling::scenario::{Mode, Scenario};
use toml::{Table, Value};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("profiling/ has a parent")
        .to_owned()
}

fn fly_toml() -> Table {
    let path = workspace().join("fly.dev.toml");
    let text = std::fs::read_to_string(&path).expect("reading fly.dev.toml");
    toml::from_str(&text).expect("fly.dev.toml is valid TOML")
}

/// fly.toml allows `[x]` or `[[x]]` for these sections; this test needs exactly one.
fn single<'a>(t: &'a Table, key: &str) -> &'a Table {
    match &t[key] {
        Value::Table(table) => table,
        Value::Array(items) => {
            assert_eq!(items.len(), 1, "fly.dev.toml: one [[{key}]] expected");
            items[0].as_table().expect("a table")
        }
        other => panic!("fly.dev.toml: [{key}] is {other:?}"),
    }
}

fn str_of<'a>(t: &'a Table, key: &str) -> &'a str {
    t.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("fly.dev.toml: no string {key:?} in {t:?}"))
}

fn int_of(t: &Table, key: &str) -> i64 {
    t.get(key)
        .and_then(Value::as_integer)
        .unwrap_or_else(|| panic!("fly.dev.toml: no integer {key:?} in {t:?}"))
}

/// flyctl's memory sizes: a number of MB, or with a unit (`256mb`, `1gb`).
fn megabytes(size: &str) -> u64 {
    let s = size.trim().to_ascii_lowercase();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().expect("a number of megabytes");
    match &s[digits.len()..] {
        "" | "m" | "mb" | "mib" => n,
        "g" | "gb" | "gib" => n * 1024,
        unit => panic!("unknown memory unit {unit:?}"),
    }
}

#[test]
fn the_vm_is_the_storys_256_mb_shared_cpu_machine() {
    let t = fly_toml();
    let vm = single(&t, "vm");
    assert_eq!(str_of(vm, "size"), "shared-cpu-1x");
    let mb = match vm.get("memory_mb") {
        Some(v) => u64::try_from(v.as_integer().expect("memory_mb is a number"))
            .expect("memory_mb is positive"),
        None => megabytes(str_of(vm, "memory")),
    };
    assert_eq!(mb, 256);
}

#[test]
fn the_database_lives_on_the_volume_at_data() {
    let t = fly_toml();
    let mount = single(&t, "mounts");
    assert_eq!(str_of(mount, "destination"), "/data");
    assert!(!str_of(mount, "source").is_empty());
    let env = t["env"].as_table().expect("[env]");
    assert!(
        str_of(env, "PS_DB").starts_with("/data/"),
        "PS_DB must be on the volume"
    );
}

#[test]
fn the_server_is_served_on_4001_behind_the_proxy_with_a_health_check() {
    let t = fly_toml();
    let env = t["env"].as_table().expect("[env]");
    let service = t["http_service"].as_table().expect("[http_service]");
    assert_eq!(int_of(service, "internal_port"), 4001);
    assert_eq!(
        str_of(env, "PORT"),
        "4001",
        "the server's port is the proxied one"
    );
    assert_eq!(str_of(env, "PS_BEHIND_PROXY"), "true");
    let checks = service["checks"]
        .as_array()
        .expect("[[http_service.checks]]");
    assert!(
        checks.iter().any(|c| {
            let c = c.as_table().expect("a check");
            c.get("path").and_then(Value::as_str) == Some("/healthz")
                && c.get("method").and_then(Value::as_str).unwrap_or("GET") == "GET"
        }),
        "no GET /healthz check in {checks:?}"
    );
}

#[test]
fn metrics_are_scraped_from_the_debug_listener_which_is_never_published() {
    let t = fly_toml();
    let metrics = single(&t, "metrics");
    assert_eq!(str_of(metrics, "path"), "/metrics");
    let port = int_of(metrics, "port");

    let env = t["env"].as_table().expect("[env]");
    let debug: SocketAddr = str_of(env, "PS_DEBUG_LISTEN")
        .parse()
        .expect("PS_DEBUG_LISTEN is an address, as --debug-listen takes it");
    assert_eq!(
        i64::from(debug.port()),
        port,
        "[metrics] scrapes another port"
    );
    // Fly's scraper and `fly proxy` come over the private network, not loopback.
    assert!(
        !debug.ip().is_loopback(),
        "the debug listener on loopback is unreachable for Fly's scraper"
    );

    let mut published = vec![int_of(
        t["http_service"].as_table().expect("[http_service]"),
        "internal_port",
    )];
    if let Some(services) = t.get("services").and_then(Value::as_array) {
        published.extend(
            services
                .iter()
                .map(|s| int_of(s.as_table().expect("a service"), "internal_port")),
        );
    }
    assert!(
        !published.contains(&port),
        "the debug port {port} is published through Fly's proxy: {published:?}"
    );
}

#[test]
fn no_secret_in_the_file() {
    let t = fly_toml();
    let env = t["env"].as_table().expect("[env]");
    for key in env.keys() {
        assert!(
            !key.to_ascii_uppercase().contains("SECRET"),
            "{key} belongs in `fly secrets`, not in fly.dev.toml"
        );
    }
}

#[test]
fn fly_builds_the_dev_target_of_dockerfile_dev() {
    let t = fly_toml();
    let build = t["build"].as_table().expect("[build]");
    assert_eq!(str_of(build, "dockerfile"), "Dockerfile.dev");
    assert_eq!(str_of(build, "build-target"), "dev");

    let dockerfile = std::fs::read_to_string(workspace().join("Dockerfile.dev"))
        .expect("reading Dockerfile.dev");
    let stages: Vec<String> = dockerfile
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            }
        })
        .collect();
    assert!(stages.iter().any(|s| s == "dev"), "stages: {stages:?}");
    assert!(stages.iter().any(|s| s == "prod"), "stages: {stages:?}");
    // The dev image's CMD is the entrypoint script it copies from scripts/.
    assert!(dockerfile.contains("COPY scripts/sharerig-dev.sh /usr/local/bin/sharerig-dev"));
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/sharerig-dev", "serve"]"#));
    assert!(workspace().join("scripts/sharerig-dev.sh").is_file());
}

#[test]
fn the_vm_scenario_runs_in_machine_mode() {
    let s = Scenario::load(&workspace().join("scenarios/parallel-uploads-vm.toml"))
        .expect("the VM scenario loads");
    assert_eq!(s.machine.mode, Mode::Machine);
    assert!(!s.phases.is_empty());
}

/// fly.prod.toml (docs/server.md, "Operating it"): the `prod` image on the
/// story's machine, the database on a /data volume, no secret in the file
/// and the secrets the entrypoint reads named in its comments.
#[test]
fn fly_prod_builds_the_prod_target_with_a_volume_and_names_its_secrets() {
    let path = workspace().join("fly.prod.toml");
    let text = std::fs::read_to_string(&path).expect("reading fly.prod.toml");
    let t: Table = toml::from_str(&text).expect("fly.prod.toml is valid TOML");
    let build = t["build"].as_table().expect("[build]");
    assert_eq!(str_of(build, "dockerfile"), "Dockerfile.dev");
    assert_eq!(str_of(build, "build-target"), "prod");
    let env = t["env"].as_table().expect("[env]");
    assert_eq!(str_of(env, "PS_DB"), "/data/store.db");
    for key in env.keys() {
        let k = key.to_ascii_uppercase();
        assert!(
            !k.contains("SECRET") && !k.contains("KEY") && !k.contains("BUCKET"),
            "{key} belongs in `fly secrets`, not in fly.prod.toml"
        );
    }
    assert_eq!(str_of(single(&t, "mounts"), "destination"), "/data");
    assert_eq!(megabytes(str_of(single(&t, "vm"), "memory")), 256);
    let service = single(&t, "http_service");
    assert_eq!(int_of(service, "internal_port"), 4001);
    for secret in [
        "PS_SHARED_SECRET",
        "LITESTREAM_BUCKET",
        "LITESTREAM_ACCESS_KEY_ID",
        "LITESTREAM_SECRET_ACCESS_KEY",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with('#') && l.contains(&format!("{secret}="))),
            "fly.prod.toml's comments do not name `fly secrets set {secret}=...`"
        );
    }
    // The entrypoint reads what the comments name.
    let entrypoint = std::fs::read_to_string(workspace().join("scripts/prod-entrypoint.sh"))
        .expect("reading scripts/prod-entrypoint.sh");
    assert!(entrypoint.contains("LITESTREAM_BUCKET") && entrypoint.contains("PS_DB"));
}
