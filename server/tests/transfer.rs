//! Uploads and downloads over real HTTP: a 200 MB streamed round trip,
//! ranges in every form, HEAD, conditional requests and download records.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{CHUNK, DataDir, TestServer, pattern_sha256, pattern_slice};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_downloads_byte_exact() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let size = 200_000_000;
    let id = server.upload_ok(1, size, "big.bin").await;

    let (len, hash) = server.download_hash(&id).await;
    assert_eq!(len, size);
    assert_eq!(
        hash,
        pattern_sha256(1, size),
        "download differs from upload"
    );

    let meta: serde_json::Value = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(meta["size"], size);
    assert_eq!(meta["filename"], "big.bin");
    assert_eq!(meta["note"], "from the tests");
    let chunks = dir.count(&format!(
        "SELECT COUNT(*) FROM entries_data WHERE id = '{id}'"
    ));
    assert_eq!(
        chunks as u64,
        size.div_ceil(CHUNK),
        "stored as fixed-size chunks"
    );

    // The named URL serves the same bytes.
    let res = server
        .http
        .get(server.url(&format!("/-{id}/big.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(size));
}

/// 3.66 chunks: ranges can start, end and cross chunk boundaries.
const SIZE: u64 = 1_200_000;

async fn range(server: &TestServer, id: &str, range: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("range", range)
        .send()
        .await
        .unwrap()
}

async fn assert_range(server: &TestServer, id: &str, header: &str, start: u64, end_incl: u64) {
    let res = range(server, id, header).await;
    assert_eq!(res.status(), 206, "{header}");
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes {start}-{end_incl}/{SIZE}").as_str(),
        "{header}"
    );
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, end_incl + 1 - start, "{header}");
    assert!(
        body[..] == pattern_slice(7, start, end_incl + 1)[..],
        "{header}: wrong bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_in_every_form() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let id = server.upload_ok(7, SIZE, "clip.bin").await;

    assert_range(&server, &id, "bytes=0-0", 0, 0).await; // first byte
    assert_range(&server, &id, "bytes=1199999-", SIZE - 1, SIZE - 1).await; // last byte
    assert_range(&server, &id, "bytes=327670-327699", 327_670, 327_699).await; // across a chunk boundary
    assert_range(&server, &id, "bytes=300000-700000", 300_000, 700_000).await; // across two boundaries
    assert_range(&server, &id, "bytes=-1000", SIZE - 1000, SIZE - 1).await; // suffix
    assert_range(&server, &id, "bytes=1000000-9999999", 1_000_000, SIZE - 1).await; // clipped end

    // Unsatisfiable.
    let res = range(&server, &id, "bytes=1200000-1200010").await;
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */1200000");

    // Several ranges: multipart/byteranges with the right bytes in each part.
    let res = range(&server, &id, "bytes=0-9,327675-327690,-5").await;
    assert_eq!(res.status(), 206);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(&ct)
        .to_owned();
    let declared = res.content_length().unwrap();
    let body = res.bytes().await.unwrap();
    assert_eq!(
        body.len() as u64,
        declared,
        "Content-Length matches the multipart body"
    );
    let parts = split_byteranges(&body, &boundary);
    let expected = [(0u64, 9u64), (327_675, 327_690), (SIZE - 5, SIZE - 1)];
    assert_eq!(parts.len(), expected.len());
    for ((headers, data), (s, e)) in parts.iter().zip(expected) {
        assert!(
            headers.contains(&format!("Content-Range: bytes {s}-{e}/{SIZE}")),
            "{headers}"
        );
        assert!(data[..] == pattern_slice(7, s, e + 1)[..], "part {s}-{e}");
    }

    // Overlapping or too many ranges: the whole file, once.
    let res = range(&server, &id, "bytes=0-100,50-150,60-170").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(SIZE));

    // If-Range: the range only if the validator still matches.
    let etag = server
        .http
        .head(server.url(&format!("/-{id}")))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let res = server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    let res = server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(SIZE));
    let res = server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

/// Splits a multipart/byteranges body into (part headers, part bytes).
fn split_byteranges(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let at = find(rest, delim.as_bytes()).expect("boundary");
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            return parts;
        }
        let head_end = find(rest, b"\r\n\r\n").expect("part headers");
        let headers = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let next = find(rest, format!("\r\n{delim}").as_bytes()).expect("next boundary");
        parts.push((headers, rest[..next].to_vec()));
        rest = &rest[next + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_headers() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let id = server.upload_ok(3, 1000, "movie.mp4").await;

    let res = server
        .http
        .head(server.url(&format!("/-{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-length"], "1000");
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["content-security-policy"], "sandbox");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename=\"movie.mp4\"")
    );
    assert!(h.contains_key("etag") && h.contains_key("last-modified"));
    assert!(res.bytes().await.unwrap().is_empty(), "HEAD has no body");

    // A name that says nothing: the type is sniffed from the content.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png).file_name("picture"),
    );
    let v: serde_json::Value = server
        .req(Method::POST, "/api/entry")
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = server
        .http
        .head(server.url(&format!("/-{}", v["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "image/png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_recorded_with_ip_and_agent() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &["--behind-proxy"]);
    server.login().await;
    let id = server.upload_ok(4, 5000, "doc.txt").await;

    server
        .http
        .head(server.url(&format!("/-{id}")))
        .send()
        .await
        .unwrap();
    let res = server
        .http
        .get(server.url(&format!("/-{id}")))
        .header("user-agent", "recorder-test/1.0")
        .header("x-forwarded-for", "198.51.100.9, 203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().len(), 5000);

    common::eventually(
        std::time::Duration::from_secs(5),
        "download recorded",
        || dir.count("SELECT COUNT(*) FROM downloads") == 1,
    )
    .await;
    let page: serde_json::Value = server.get_json(&format!("/api/entry/{id}/downloads")).await;
    assert_eq!(page["nextBefore"], serde_json::Value::Null, "one page");
    let history = &page["downloads"];
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "HEAD is not a download"
    );
    assert_eq!(history[0]["userAgent"], "recorder-test/1.0");
    assert_eq!(
        history[0]["clientIp"], "203.0.113.5",
        "the proxy's hop, not the forgeable first"
    );
    let meta: serde_json::Value = server.get_json(&format!("/api/entry/{id}")).await;
    assert_eq!(meta["downloads"], 1);
}
