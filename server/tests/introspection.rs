//! The debug listener from outside, in the default (jemalloc) build:
//! `/debug/stats` (its schema, and what its figures do during an upload),
//! `/metrics` (valid Prometheus text 0.0.4, checked by testkit's strict parser
//! and by `promtool` when installed), the allocator purge, the pprof answer of
//! a build without profiling, and that none of it is served on the main port.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{CHUNK, DataDir, TestServer, pattern_part};
use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);

async fn debug_get(server: &TestServer, path: &str) -> reqwest::Response {
    server
        .http
        .get(format!("{}{path}", server.debug_base))
        .send()
        .await
        .unwrap()
}

async fn stats(server: &TestServer) -> Value {
    let res = debug_get(server, "/debug/stats").await;
    assert_eq!(res.status(), 200, "/debug/stats");
    res.json().await.unwrap()
}

/// `GET path` over a plain blocking socket (for `eventually`'s synchronous
/// check); returns the status line and the body.
fn get_blocking(base: &str, path: &str) -> (String, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn stats_blocking(server: &TestServer) -> Value {
    let (status, body) = get_blocking(&server.debug_base, "/debug/stats");
    assert_eq!(status, "HTTP/1.1 200 OK");
    serde_json::from_str(&body).unwrap()
}

/// The value at a dotted path (`"allocator.allocated_bytes"`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| &v[key])
}

/// An unsigned integer at a dotted path.
fn num(v: &Value, path: &str) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not an unsigned integer: {}", at(v, path)))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    U64,
    /// An unsigned integer or `null`.
    OptU64,
    F64,
    Str,
    OptStr,
    Bool,
    Object,
    OptObject,
}

/// The field reference every field of `/debug/stats` must appear in.
const STATS_DOC: &str = include_str!("../../docs/stats.md");

/// `v` is an object with at least these fields, each of its kind, and every
/// field it has is documented in docs/stats.md (as `` `name` ``).
fn check_section(section: &str, v: &Value, fields: &[(&str, Kind)]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{section} is not an object: {v}"));
    for (name, _) in fields {
        assert!(obj.contains_key(*name), "{section}.{name} is missing: {v}");
    }
    for key in obj.keys() {
        assert!(
            STATS_DOC.contains(&format!("`{key}`")),
            "{section}.{key} is sent but not documented in docs/stats.md"
        );
    }
    for (name, kind) in fields {
        let f = &obj[*name];
        let ok = match kind {
            Kind::U64 => f.is_u64(),
            Kind::OptU64 => f.is_u64() || f.is_null(),
            Kind::F64 => f.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0),
            Kind::Str => f.is_string(),
            Kind::OptStr => f.is_string() || f.is_null(),
            Kind::Bool => f.is_boolean(),
            Kind::Object => f.is_object(),
            Kind::OptObject => f.is_object() || f.is_null(),
        };
        assert!(ok, "{section}.{name} should be {kind:?}, got {f}");
    }
}

/// A section that may be missing: exactly one of `section` and
/// `section_error` is set, the error is a non-empty message.
fn reading_or_error<'a>(s: &'a Value, section: &str) -> Option<&'a Value> {
    let (value, error) = (&s[section], &s[format!("{section}_error").as_str()]);
    match (value.is_null(), error.as_str()) {
        (false, None) => Some(value),
        (true, Some(e)) => {
            assert!(!e.trim().is_empty(), "{section}_error is empty");
            None
        }
        _ => panic!("exactly one of {section} and {section}_error must be set: {value} / {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_have_every_documented_field_and_sane_values() {
    use Kind::*;
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let s = stats(&server).await;

    check_section(
        "(top level)",
        &s,
        &[
            ("timestamp", Str),
            ("version", Str),
            ("allocator", Object),
            ("sqlite", Object),
            ("process", OptObject),
            ("process_error", OptStr),
            ("cgroup", OptObject),
            ("cgroup_error", OptStr),
            ("system", OptObject),
            ("system_error", OptStr),
            ("app", Object),
            ("collect_seconds", F64),
        ],
    );
    let timestamp = chrono::DateTime::parse_from_rfc3339(s["timestamp"].as_str().unwrap())
        .expect("timestamp is RFC 3339");
    let age = chrono::Utc::now().signed_duration_since(timestamp);
    assert!(
        age.num_seconds().abs() < 60,
        "timestamp is now: {timestamp}"
    );
    let version = s["version"].as_str().unwrap();
    assert!(
        version.contains("allocator: jemalloc"),
        "version {version:?}"
    );
    assert!(
        version.starts_with(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    let collect = s["collect_seconds"].as_f64().unwrap();
    assert!(collect > 0.0 && collect < 5.0, "collect_seconds {collect}");

    check_section(
        "allocator",
        &s["allocator"],
        &[
            ("name", Str),
            ("allocated_bytes", U64),
            ("active_bytes", U64),
            ("resident_bytes", U64),
            ("mapped_bytes", U64),
            ("retained_bytes", U64),
            ("metadata_bytes", U64),
            ("profiling", Bool),
        ],
    );
    assert_eq!(s["allocator"]["name"], "jemalloc");
    assert_eq!(s["allocator"]["profiling"], false);
    let allocated = num(&s, "allocator.allocated_bytes");
    let active = num(&s, "allocator.active_bytes");
    assert!(allocated > 0 && allocated <= active, "allocated ≤ active");
    assert!(
        active <= num(&s, "allocator.resident_bytes"),
        "active ≤ resident"
    );
    assert!(
        active <= num(&s, "allocator.mapped_bytes"),
        "active ≤ mapped"
    );

    check_section(
        "sqlite",
        &s["sqlite"],
        &[
            ("memory_used_bytes", U64),
            ("memory_used_highwater_bytes", U64),
            ("malloc_size_highwater_bytes", U64),
            ("pagecache_used", U64),
            ("pagecache_overflow_bytes", U64),
            ("pagecache_overflow_highwater_bytes", U64),
            ("cache_used_bytes", U64),
            ("connections_sampled", U64),
            ("readers_open", U64),
        ],
    );
    let sqlite_used = num(&s, "sqlite.memory_used_bytes");
    assert!(
        sqlite_used > 0,
        "SQLite holds memory once a database is open"
    );
    assert!(num(&s, "sqlite.memory_used_highwater_bytes") >= sqlite_used);
    assert!(
        sqlite_used <= allocated,
        "SQLite's malloc goes through jemalloc, so its memory is part of allocated"
    );
    assert!(
        num(&s, "sqlite.connections_sampled") <= 5,
        "1 writer + 4 readers"
    );

    let process = reading_or_error(&s, "process").expect("/proc/self is readable");
    check_section(
        "process",
        process,
        &[
            ("vm_rss_bytes", U64),
            ("rss_anon_bytes", U64),
            ("rss_file_bytes", U64),
            ("rss_shmem_bytes", U64),
            ("vm_hwm_bytes", U64),
            ("threads", U64),
            ("open_fds", OptU64),
        ],
    );
    let rss = num(process, "vm_rss_bytes");
    assert!(rss > 0);
    assert!(num(process, "vm_hwm_bytes") >= rss, "peak ≥ current");
    assert_eq!(
        rss,
        num(process, "rss_anon_bytes")
            + num(process, "rss_file_bytes")
            + num(process, "rss_shmem_bytes"),
        "VmRSS is RssAnon + RssFile + RssShmem"
    );
    assert!(num(process, "threads") >= 1);
    assert!(num(process, "open_fds") >= 3);

    match reading_or_error(&s, "cgroup") {
        Some(cgroup) => {
            check_section(
                "cgroup",
                cgroup,
                &[
                    ("version", Str),
                    ("path", Str),
                    ("usage_bytes", U64),
                    ("limit_bytes", OptU64),
                    ("peak_bytes", OptU64),
                    ("anon_bytes", U64),
                    ("file_bytes", U64),
                    ("mapped_file_bytes", U64),
                    ("dirty_bytes", U64),
                    ("writeback_bytes", U64),
                    ("inactive_file_bytes", U64),
                    ("working_set_bytes", U64),
                    ("oom_kills", OptU64),
                    ("limit_hits", OptU64),
                ],
            );
            let version = cgroup["version"].as_str().unwrap();
            assert!(
                version == "v1" || version == "v2",
                "cgroup.version {version}"
            );
            let usage = num(cgroup, "usage_bytes");
            assert!(
                usage > 0,
                "the server's own memory is charged to its cgroup"
            );
            assert_eq!(
                num(cgroup, "working_set_bytes"),
                usage.saturating_sub(num(cgroup, "inactive_file_bytes")),
                "working set = usage − inactive file"
            );
            eprintln!("cgroup {version} at {}", cgroup["path"]);
        }
        None => eprintln!("no cgroup: {}", s["cgroup_error"]),
    }

    let system = reading_or_error(&s, "system").expect("/proc/meminfo is readable");
    check_section(
        "system",
        system,
        &[
            ("mem_total_bytes", U64),
            ("mem_available_bytes", U64),
            ("cached_bytes", U64),
            ("dirty_bytes", U64),
            ("writeback_bytes", U64),
            ("mem_free_bytes", U64),
            ("anon_bytes", U64),
            ("buffers_bytes", U64),
            ("inactive_file_bytes", U64),
            ("mapped_bytes", U64),
        ],
    );
    let total = num(system, "mem_total_bytes");
    assert!(total > 0);
    assert!(num(system, "mem_available_bytes") <= total);
    assert!(rss < total);

    check_section(
        "app",
        &s["app"],
        &[
            ("uploads_in_flight", U64),
            ("bytes_received_total", U64),
            ("bytes_sent_total", U64),
            ("chunks_written_total", U64),
            ("uploads_completed_total", U64),
            ("uploads_failed_total", U64),
            ("downloads_started_total", U64),
            ("downloads_in_flight", U64),
            ("download_records_written_total", U64),
            ("download_records_dropped_total", U64),
            ("gc_runs_total", U64),
            ("last_gc_duration_seconds", F64),
            ("db_bytes", U64),
            ("wal_bytes", U64),
            ("shm_bytes", U64),
        ],
    );
    assert_eq!(num(&s, "app.uploads_in_flight"), 0);
    assert_eq!(num(&s, "app.bytes_received_total"), 0, "a fresh server");
    assert!(num(&s, "app.db_bytes") > 0, "the database file exists");
    common::eventually(WAIT, "the start-up GC is counted", || {
        num(&stats_blocking(&server), "app.gc_runs_total") >= 1
    })
    .await;
}

/// jemalloc's `allocated` of an idle server: the smallest of a few readings.
async fn idle_allocated(server: &TestServer) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..5 {
        let s = stats(server).await;
        assert_eq!(num(&s, "app.uploads_in_flight"), 0, "idle");
        least = least.min(num(&s, "allocator.allocated_bytes"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    least
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocated_rises_during_a_large_upload_and_falls_after() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    // A first upload fills what stays allocated afterwards on purpose
    // (SQLite's page caches, hyper's and tokio's pools): the baseline is
    // the idle server after it.
    let warm_up = 16 * MIB;
    server.upload_ok(1, warm_up, "warm-up.bin").await;
    let baseline = idle_allocated(&server).await;

    // 300 MB generated on the fly and sent as fast as the server takes it:
    // the server is the bottleneck, so its queue of chunks stays full.
    let size = 300_000_000;
    let part = pattern_part(2, size, "large.bin", None);
    let upload = tokio::spawn(
        server
            .req(Method::POST, "/api/entry")
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send(),
    );

    // Poll while it runs (~100 Hz; a collection takes well under 1 ms).
    let mut during = Vec::new();
    let mut in_flight_seen = BTreeSet::new();
    while !upload.is_finished() {
        let s = stats(&server).await;
        let in_flight = num(&s, "app.uploads_in_flight");
        in_flight_seen.insert(in_flight);
        if in_flight == 1 {
            during.push(num(&s, "allocator.allocated_bytes"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let res = upload.await.unwrap().unwrap();
    assert_eq!(res.status(), 200, "upload: {}", res.text().await.unwrap());

    assert!(
        in_flight_seen.iter().all(|&n| n <= 1),
        "one upload at a time: {in_flight_seen:?}"
    );
    assert!(
        during.len() >= 5,
        "uploads_in_flight was 1 in only {} readings",
        during.len()
    );
    let peak = *during.iter().max().unwrap();
    eprintln!(
        "allocated: idle baseline {:.2} MiB, during the upload {:.2}..{:.2} MiB ({} readings)",
        baseline as f64 / MIB as f64,
        *during.iter().min().unwrap() as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        during.len()
    );
    // One chunk buffer filling, up to 2 queued and 2 in the writer's
    // transaction (320 KiB each), SQLite's copy of the chunk being inserted
    // and hyper's read buffer: well over 1 MiB most of the time.
    assert!(
        peak >= baseline + MIB,
        "allocated during the upload ({peak}) should exceed the idle baseline ({baseline}) by ≥ 1 MiB"
    );

    // Once the upload is stored, its buffers are freed: back to the baseline.
    let margin = 512 * 1024;
    let mut last = 0;
    common::eventually(WAIT, "allocated falls back to the idle baseline", || {
        let s = stats_blocking(&server);
        last = num(&s, "allocator.allocated_bytes");
        num(&s, "app.uploads_in_flight") == 0 && last <= baseline + margin
    })
    .await;
    eprintln!(
        "allocated after the upload: {:.2} MiB",
        last as f64 / MIB as f64
    );

    let s = stats(&server).await;
    assert_eq!(num(&s, "app.uploads_in_flight"), 0);
    assert_eq!(num(&s, "app.uploads_completed_total"), 2);
    assert_eq!(num(&s, "app.uploads_failed_total"), 0);
    assert!(num(&s, "app.bytes_received_total") >= warm_up + size);
    let chunks = warm_up.div_ceil(CHUNK) + size.div_ceil(CHUNK);
    assert!(num(&s, "app.chunks_written_total") >= chunks);
}

/// Listening TCP sockets held by process `pid` (its fds matched against
/// `/proc/<pid>/net/tcp{,6}` rows in state LISTEN).
fn listening_sockets(pid: u32) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|cols| cols.len() > 9 && cols[3] == "0A" && inodes.contains(&cols[9]))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes_are_not_on_the_main_port() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    for path in ["/debug/stats", "/metrics", "/debug/pprof/heap"] {
        let res = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "GET {path} on the main port");
        let res = debug_get(&server, path).await;
        assert_ne!(res.status(), 404, "GET {path} on the debug listener");
    }
    let res = server
        .http
        .post(server.url("/debug/allocator/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "POST /debug/allocator/purge on the main port"
    );
    // And the debug listener serves nothing of the main API.
    let res = debug_get(&server, "/healthz").await;
    assert_eq!(res.status(), 404, "/healthz on the debug listener");
    assert_eq!(
        listening_sockets(server.pid()),
        2,
        "main port and debug listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_listen_off_starts_without_the_listener() {
    let dir = DataDir::new();
    let mut server = testkit::Spawn::new(common::binary())
        .db(dir.db())
        .debug_listener(false)
        .null_stderr()
        .start()
        .unwrap();
    let base = server.base.clone();

    let http = reqwest::Client::new();
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the main port serves");
    let res = http
        .get(format!("{base}/debug/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        listening_sockets(server.pid()),
        1,
        "only the main port listens"
    );

    let status = server
        .stop_with(Signal::SIGTERM, Duration::from_secs(60))
        .unwrap();
    assert!(status.success(), "clean exit");
    let rest = server.rest_of_stdout();
    assert!(
        !rest.iter().any(|l| l.contains("debug listening")),
        "no debug listener announced: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_reports_resident_before_and_after() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    server.upload_ok(3, 32 * MIB, "purge.bin").await;
    let res = server
        .http
        .post(format!("{}/debug/allocator/purge", server.debug_base))
        .header("x-sharerig-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["allocator"], "jemalloc", "{v}");
    let before = num(&v, "resident_before_bytes");
    let after = num(&v, "resident_after_bytes");
    assert!(before > 0 && after > 0, "{v}");
    eprintln!(
        "purge: jemalloc resident {:.2} MiB before, {:.2} MiB after",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    // A purge is a POST: GET is not routed to it.
    let res = debug_get(&server, "/debug/allocator/purge").await;
    assert_eq!(res.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pprof_needs_the_jemalloc_prof_build() {
    let dir = DataDir::new();
    let server = TestServer::start(&dir, &[]);
    let res = debug_get(&server, "/debug/pprof/heap").await;
    assert_eq!(res.status(), 501);
    let v: Value = res.json().await.unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("jemalloc-prof"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let size = 3 * MIB;
    let id = server.upload_ok(4, size, "m.bin").await;
    assert_eq!(server.download_hash(&id).await.0, size);

    let res = debug_get(&server, "/metrics").await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    let text = res.text().await.unwrap();

    let families = testkit::prometheus::parse_exposition(&text)
        .unwrap_or_else(|e| panic!("{e}\n--- /metrics:\n{text}"));
    let value = |name: &str| -> f64 {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"));
        assert_eq!(family.samples.len(), 1, "{name}: one series");
        family.samples[0].value
    };
    for gauge in [
        "sharerig_allocator_allocated_bytes",
        "sharerig_process_resident_bytes",
        "sharerig_sqlite_memory_used_bytes",
        "sharerig_build_info",
    ] {
        assert_eq!(families[gauge].kind, "gauge", "{gauge}");
        assert!(value(gauge) > 0.0, "{gauge}");
    }
    assert_eq!(families["sharerig_received_bytes_total"].kind, "counter");
    assert!(value("sharerig_received_bytes_total") >= size as f64);
    assert!(value("sharerig_sent_bytes_total") >= size as f64);
    let build = &families["sharerig_build_info"].samples[0];
    assert_eq!(
        build.labels,
        vec![
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("allocator".to_owned(), "jemalloc".to_owned())
        ]
    );
    // The same snapshot code feeds both views: a constant agrees.
    let s = stats(&server).await;
    assert_eq!(
        value("sharerig_system_memory_total_bytes"),
        num(&s, "system.mem_total_bytes") as f64
    );
    eprintln!(
        "built-in parser: {} families, {} samples: valid",
        families.len(),
        families.values().map(|f| f.samples.len()).sum::<usize>()
    );

    promtool_check(&text);
}

/// `promtool check metrics` on `text` (Debian's `prometheus` package has it;
/// installed first when missing and root, see testkit::tools).
fn promtool_check(text: &str) {
    let promtool = testkit::tools::PROMTOOL.require().unwrap();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {}\n{report}\n--- /metrics:\n{text}",
        out.status
    );
    eprintln!("promtool check metrics: valid, no lint findings");
}
