//! `/debug/pprof/heap` of a `jemalloc-prof` build: a gzipped pprof protobuf
//! of the live heap whose stacks are symbolized (jemalloc_pprof's `symbolize`
//! feature), so `pprof` shows the server's own functions.
//!
//! Only compiled in that build:
//! `cargo test -p share-server --features jemalloc-prof --test pprof`
//! (the harness then starts a server binary built with the same features).
#![cfg(feature = "jemalloc-prof")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{DataDir, TestServer, pattern_part};
use reqwest::Method;

async fn debug_json(server: &TestServer, path: &str) -> serde_json::Value {
    let res = server
        .http
        .get(format!("{}{path}", server.debug_base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_profile_is_gzipped_pprof_with_server_functions() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let stats = debug_json(&server, "/debug/stats").await;
    // The stats name the allocator family; `profiling` tells this build apart.
    assert_eq!(stats["allocator"]["name"], "jemalloc");
    assert_eq!(stats["allocator"]["profiling"], true);
    assert!(
        stats["version"]
            .as_str()
            .unwrap()
            .contains("allocator: jemalloc-prof")
    );
    server.upload_ok(1, 32 << 20, "first.bin").await;

    // Profile while a second upload is in flight, so its chunk buffers are
    // part of the live heap (each 320 KiB buffer is sampled with probability
    // 1 − e^(−320/512) ≈ 46% at lg_prof_sample:19).
    let size = 400_000_000;
    let upload = tokio::spawn(
        server
            .req(Method::POST, "/api/entry")
            .multipart(
                reqwest::multipart::Form::new()
                    .part("file", pattern_part(2, size, "second.bin", None)),
            )
            .send(),
    );
    common::eventually(Duration::from_secs(20), "the upload is in flight", || {
        let (_, body) = get_blocking(&server.debug_base, "/debug/stats");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["app"]["bytes_received_total"].as_u64().unwrap() > (32 << 20) + (8 << 20)
    })
    .await;

    let res = server
        .http
        .get(format!("{}/debug/pprof/heap", server.debug_base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.contains("heap.pb.gz"), "{disposition}");
    let gz = res.bytes().await.unwrap();
    let in_flight = debug_json(&server, "/debug/stats").await["app"]["uploads_in_flight"].clone();
    let res = upload.await.unwrap().unwrap();
    assert_eq!(res.status(), 200, "upload: {}", res.text().await.unwrap());

    assert!(
        gz.starts_with(&[0x1f, 0x8b]),
        "gzip magic, got {:02x?}",
        &gz[..gz.len().min(4)]
    );
    // run-format's decoder, the one the reports use.
    let profile = run_format::pprof::decode_raw(&gz).unwrap();
    let s = |i: i64| profile.string_table[usize::try_from(i).unwrap()].as_str();
    assert_eq!(s(0), "", "string_table[0] is the empty string");

    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, [("inuse_space", "bytes")]);
    assert!(!profile.sample.is_empty(), "samples in the heap profile");
    let sampled: i64 = profile.sample.iter().map(|x| x.value[0]).sum();
    assert!(sampled > 0);
    for sample in &profile.sample {
        assert!(!sample.location_id.is_empty(), "every sample has a stack");
        for id in &sample.location_id {
            assert!(
                profile.location.iter().any(|l| l.id == *id),
                "location {id} is defined"
            );
        }
    }

    let names: Vec<&str> = profile.function.iter().map(|f| s(f.name)).collect();
    let ours: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.contains("share_server"))
        .collect();
    eprintln!(
        "heap profile: {} bytes gzipped, {} samples ({:.1} MiB estimated live), {} locations, \
         {} functions, {} of them share_server's; uploads in flight when taken: {in_flight}",
        gz.len(),
        profile.sample.len(),
        sampled as f64 / f64::from(1 << 20),
        profile.location.len(),
        names.len(),
        ours.len()
    );
    // Each sample's innermost server function, the allocation's owner.
    let function = |id: u64| profile.function.iter().find(|f| f.id == id).unwrap();
    let location = |id: u64| profile.location.iter().find(|l| l.id == id).unwrap();
    for sample in &profile.sample {
        let owner = sample
            .location_id
            .iter()
            .flat_map(|id| &location(*id).line)
            .map(|line| s(function(line.function_id).name))
            .find(|name| name.contains("share_server"));
        eprintln!(
            "  {:>8.2} MiB  {}",
            sample.value[0] as f64 / f64::from(1 << 20),
            owner.unwrap_or("(no server frame)")
        );
    }
    assert!(
        !ours.is_empty(),
        "no function name contains share_server: symbolization failed? {} functions, e.g. {:?}",
        names.len(),
        &names[..names.len().min(20)]
    );
}

/// `GET path` over a plain blocking socket (for `eventually`'s synchronous check).
fn get_blocking(base: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
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
