//! The web UI in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with fantoccini) against the real
//! server: log in, upload two files through the file input and watch their
//! progress bars reach 100%, download one byte-exact, edit a note, create a
//! guest link and upload through it logged out until its limit refuses, see
//! the download history, change a setting, delete, log out, log out
//! everywhere; every page is
//! checked for unlabelled controls, and at phone width for sideways scrolling.
//!
//! Screenshots of each page go to `target/tmp/screenshots/`, or to
//! `docs/screenshots/` with `SHARERIG_UPDATE_SCREENSHOTS=1` (how the committed
//! ones were made).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{DataDir, SECRET, TestServer, pattern_slice};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the page may take to reach a state before the test fails (a
/// guard against hanging, not a measurement).
const PATIENCE: Duration = Duration::from_secs(60);
const DESKTOP: (u32, u32) = (1200, 900);
const PHONE: (u32, u32) = (390, 844);

struct Browser {
    client: Client,
    /// chromedriver's own endpoint, for its Chromium-only commands.
    driver_url: String,
    /// Killed on drop (`kill_on_drop`); Chromium exits with it.
    _driver: Child,
    base: String,
    shots: PathBuf,
    downloads: PathBuf,
    _profile: tempfile::TempDir,
}

/// Starts chromedriver on a port it picks itself and a headless Chromium session.
async fn browser(base: &str, downloads: &Path) -> Browser {
    let chromium = testkit::tools::CHROMIUM.require().unwrap();
    let chromedriver = testkit::tools::CHROMEDRIVER.require().unwrap();
    let mut driver = Command::new(&chromedriver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chromedriver");
    let stdout = driver.stdout.take().expect("chromedriver stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut port = None;
    while let Some(line) = lines.next_line().await.expect("read chromedriver output") {
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
            break;
        }
    }
    let port = port.expect("chromedriver did not report its port");

    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars",
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                format!("--user-data-dir={}", profile.path().display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("start a Chromium session");
    let shots = if std::env::var_os("SHARERIG_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("screenshots go to {}", shots.display());
    Browser {
        client,
        driver_url: format!("http://127.0.0.1:{port}"),
        _driver: driver,
        base: base.to_owned(),
        shots,
        downloads: downloads.to_owned(),
        _profile: profile,
    }
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Polls a JS expression until it is truthy.
    async fn until(&self, expr: &str, what: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let v = self.js(&format!("return ({expr});")).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(start.elapsed() < PATIENCE, "page never reached: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let el = self.css(selector).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// A screenshot of the whole page (the window grows to the content's height).
    async fn snap(&self, name: &str) {
        let (w, h) = self.client.get_window_size().await.unwrap();
        let content = self
            .js("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap();
        // Chromium's window is ~140 px taller than its viewport.
        let fit = (content + 140).clamp(h, 3000) as u32;
        self.client.set_window_size(w as u32, fit).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        self.client
            .set_window_size(w as u32, h as u32)
            .await
            .unwrap();
    }

    /// Every form control has a label (or an aria-label).
    async fn assert_labelled(&self) {
        let unlabelled = self
            .js(
                "return Array.from(document.querySelectorAll('input, select, textarea'))
                   .filter(e => e.type !== 'hidden' && !e.closest('[hidden]'))
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                   .map(e => e.outerHTML)",
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "controls without a label on {}",
            self.path().await
        );
    }

    /// Nothing scrolls sideways (checked at phone width).
    async fn assert_fits_width(&self) {
        let overflow = self
            .js("return document.documentElement.scrollWidth - window.innerWidth")
            .await
            .as_i64()
            .unwrap();
        assert!(
            overflow <= 0,
            "{} scrolls sideways by {overflow} px",
            self.path().await
        );
    }

    /// Limits Chromium's upload speed (`None`: lifts the limit), so an
    /// upload over loopback takes long enough for its progress to show.
    async fn throttle_uploads(&self, bytes_per_second: Option<u64>) {
        let session = self.client.session_id().await.unwrap().unwrap();
        let url = format!(
            "{}/session/{session}/chromium/network_conditions",
            self.driver_url
        );
        let http = reqwest::Client::new();
        let res = match bytes_per_second {
            Some(rate) => http
                .post(url)
                .json(&json!({ "network_conditions": {
                    "offline": false, "latency": 0,
                    "download_throughput": -1, "upload_throughput": rate,
                }}))
                .send()
                .await
                .unwrap(),
            None => http.delete(url).send().await.unwrap(),
        };
        assert!(
            res.status().is_success(),
            "network conditions: {}",
            res.text().await.unwrap()
        );
    }

    async fn accept_confirm(&self) {
        let start = std::time::Instant::now();
        loop {
            match self.client.accept_alert().await {
                Ok(()) => return,
                Err(_) if start.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("no confirm dialog: {e}"),
            }
        }
    }
}

/// Records every value each progress bar takes (`window.__bars`, one list
/// per bar in order of appearance), seen by the page itself, not by polling.
const WATCH_BARS: &str = "
    if (!window.__bars) {
      window.__bars = [];
      new MutationObserver(records => {
        for (const r of records) {
          const bar = r.target;
          if (bar.tagName !== 'PROGRESS') continue;
          if (bar.__index === undefined) bar.__index = window.__bars.push([]) - 1;
          window.__bars[bar.__index].push(Number(bar.getAttribute('value')));
        }
      }).observe(document.querySelector('#upload-list'),
                 { subtree: true, attributes: true, attributeFilter: ['value'] });
    }";

/// Uploads `files` through the page's file input and waits until each is
/// done or failed; returns the values each new progress bar took and the links.
async fn upload_through_input(b: &Browser, files: &[PathBuf]) -> (Vec<Vec<i64>>, Vec<String>) {
    b.js(WATCH_BARS).await;
    let bars_before = b.js("return window.__bars.length").await.as_u64().unwrap();
    let before = b
        .js("return document.querySelectorAll('.upload-item').length")
        .await
        .as_u64()
        .unwrap();
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    b.css("#file-input")
        .await
        .send_keys(&paths.join("\n"))
        .await
        .unwrap();
    let expected = before + files.len() as u64;
    let start = std::time::Instant::now();
    loop {
        let state = b
            .js(&format!(
                "return Array.from(document.querySelectorAll('.upload-item')).slice({before})
                   .map(li => [li.dataset.state]);"
            ))
            .await;
        let items = state.as_array().unwrap();
        let finished = items
            .iter()
            .filter(|i| i[0] == "done" || i[0] == "failed")
            .count() as u64;
        if items.len() as u64 == expected - before && finished == expected - before {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "uploads never finished: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let links = b
        .js(&format!(
            "return Array.from(document.querySelectorAll('.upload-item')).slice({before})
               .map(li => li.querySelector('input.link') ? li.querySelector('input.link').value : null)"
        ))
        .await;
    let links = links
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    let bars = b
        .js(&format!("return window.__bars.slice({bars_before})"))
        .await;
    let bars = serde_json::from_value(bars).unwrap();
    (bars, links)
}

/// Waits for Chromium to finish writing `name` into the downloads directory.
async fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let partial = dir.join(format!("{name}.crdownload"));
    common::eventually(PATIENCE, "the browser's download", || {
        path.exists() && !partial.exists()
    })
    .await;
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser() {
    let dir = DataDir::new();
    let mut api = TestServer::start(&dir, &[]);
    api.login().await;
    let files = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let b = browser(&api.base, downloads.path()).await;

    // Two files: one big enough for the progress bar to move, one text file.
    let big = files.path().join("holiday-video.bin");
    let big_bytes = pattern_slice(7, 0, 6 << 20);
    std::fs::write(&big, &big_bytes).unwrap();
    let text = files.path().join("notes.txt");
    std::fs::write(&text, "shopping list\n".repeat(4000)).unwrap();

    // --- Log in, with the keyboard (Enter submits); a wrong secret first.
    b.goto("/").await;
    assert_eq!(
        b.path().await,
        "/login",
        "logged out: / sends to the login page"
    );
    b.assert_labelled().await;
    b.css("#secret").await.send_keys("wrong\n").await.unwrap();
    let error = b
        .until(
            "document.querySelector('#login-error').textContent",
            "the login error",
        )
        .await;
    assert!(error.as_str().unwrap().contains("wrong"), "{error}");
    b.snap("01-login").await;
    b.type_into("#secret", &format!("{SECRET}\n")).await;
    b.until("location.pathname === '/'", "the upload page after login")
        .await;

    // --- Upload two files at once through the file input. The note tries
    // markup: it must come back as text.
    b.assert_labelled().await;
    let xss_note = "<img src=x onerror=\"window.__xss=1\"> for Alice";
    b.type_into("#note", xss_note).await;
    b.throttle_uploads(Some(4 << 20)).await;
    let (bars, links) = upload_through_input(&b, &[big.clone(), text.clone()]).await;
    b.throttle_uploads(None).await;
    eprintln!("values the two progress bars took: {bars:?}");
    assert_eq!(bars.len(), 2, "two progress bars moved: {bars:?}");
    assert!(
        bars[0].len() > 1,
        "at a throttled 4 MiB/s the 6 MiB upload shows progress before 100%: {bars:?}"
    );
    for bar in &bars {
        assert!(
            bar.windows(2).all(|w| w[0] <= w[1]),
            "progress never goes back: {bar:?}"
        );
        assert_eq!(
            bar.last(),
            Some(&100),
            "upload progress events reach 100%: {bar:?}"
        );
    }
    let bars = b
        .js("return Array.from(document.querySelectorAll('.upload-item')).map(li =>
               [li.dataset.state, li.querySelector('progress').value, li.querySelector('.pct').textContent])")
        .await;
    assert_eq!(
        bars,
        json!([["done", 100, "100%"], ["done", 100, "100%"]]),
        "both progress bars reach 100%"
    );
    assert_eq!(links.len(), 2);
    for link in &links {
        assert!(
            link.starts_with(&format!("{}/-", api.base)),
            "a link is shown: {link}"
        );
    }
    assert!(
        b.js("return document.querySelectorAll('.upload-item button[data-copy]').length")
            .await
            == json!(2),
        "each link has a copy button"
    );
    b.snap("02-upload").await;
    let ids: Vec<String> = links
        .iter()
        .map(|l| l.rsplit("/-").next().unwrap().to_owned())
        .collect();
    let stored = api.get_json(&format!("/api/entry/{}", ids[0])).await;
    assert_eq!(stored["note"], xss_note, "the note is stored as typed");
    assert_eq!(stored["size"], big_bytes.len() as u64);

    // --- Open the link: the browser downloads the file, byte-exact.
    b.client.goto(&links[0]).await.unwrap();
    let got = downloaded(&b.downloads, "holiday-video.bin").await;
    assert!(
        got == big_bytes,
        "download differs: {} bytes, expected {}",
        got.len(),
        big_bytes.len()
    );

    // --- Files list: sizes, downloads, the note shown as text.
    b.goto("/files").await;
    let rows = b
        .js("return document.querySelectorAll('table.list tbody tr').length")
        .await;
    assert_eq!(rows, json!(2));
    assert_eq!(
        b.js("return window.__xss === undefined").await,
        json!(true),
        "markup in a note never runs"
    );
    let note_text = b
        .js(&format!(
            "return document.querySelector('#entry-{} .note').textContent",
            ids[0]
        ))
        .await;
    assert_eq!(note_text, json!(xss_note));
    b.until(
        &format!(
            "document.querySelector('#entry-{} td[data-label=Downloads] a').textContent.trim() === '1'",
            ids[0]
        ),
        "1 download listed",
    )
    .await;
    b.snap("03-files").await;

    // --- Edit the note on the file page.
    b.goto(&format!("/files/{}", ids[0])).await;
    b.assert_labelled().await;
    b.type_into("#note", "edited: for Alice and Bob").await;
    b.css("#edit-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "document.querySelector('#status').textContent === 'Saved.'",
        "the edit is saved",
    )
    .await;
    let edited = api.get_json(&format!("/api/entry/{}", ids[0])).await;
    assert_eq!(edited["note"], "edited: for Alice and Bob");
    b.until(
        "document.querySelector('#note') && document.querySelector('#note').value === 'edited: for Alice and Bob' && !document.querySelector('#status').textContent",
        "the page reloads with the new note",
    )
    .await;
    b.snap("04-file").await;

    // --- A guest link with one upload of at most 1 MiB.
    b.goto("/guest-links/new").await;
    b.assert_labelled().await;
    b.type_into("#label", "Photos from Bob").await;
    b.type_into("#max-file-mib", "1").await;
    b.type_into("#max-uploads", "1").await;
    b.snap("06-guest-link-new").await;
    b.css("#guest-link-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    b.until("location.pathname === '/guest-links'", "the links list")
        .await;
    let guest_path = b
        .css("a.guest-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    b.snap("07-guest-links").await;

    // --- Log out; then the guest page works without a login.
    b.css("#logout").await.click().await.unwrap();
    b.until(
        "location.pathname === '/login'",
        "the login page after logging out",
    )
    .await;
    b.goto("/files").await;
    assert_eq!(b.path().await, "/login", "logged out for real");
    b.goto(&guest_path).await;
    b.assert_labelled().await;
    let photo = files.path().join("bob-photo.jpg");
    std::fs::write(&photo, pattern_slice(8, 0, 300_000)).unwrap();
    let (_, guest_links) = upload_through_input(&b, std::slice::from_ref(&photo)).await;
    assert!(
        guest_links[0].starts_with(&format!("{}/-", api.base)),
        "the guest sees the link: {guest_links:?}"
    );
    b.snap("08-guest-upload").await;
    // The link's one upload is used: the next one is refused by the server.
    let second = files.path().join("bob-second.jpg");
    std::fs::write(&second, pattern_slice(9, 0, 1000)).unwrap();
    upload_through_input(&b, std::slice::from_ref(&second)).await;
    let refusal = b
        .until(
            "(document.querySelector('.upload-item[data-state=failed] .error') || {}).textContent",
            "the guest limit error",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .contains("reached its limit of 1 upload"),
        "{refusal}"
    );
    b.snap("09-guest-limit").await;
    let guest_id = guest_links[0].rsplit("/-").next().unwrap();
    assert_eq!(
        api.get_json(&format!("/api/entry/{guest_id}")).await["size"],
        300_000
    );

    // --- Log in again: the download is in the history.
    b.goto("/login").await;
    b.type_into("#secret", &format!("{SECRET}\n")).await;
    b.until("location.pathname === '/'", "logged in again")
        .await;
    b.goto(&format!("/files/{}/downloads", ids[0])).await;
    let history = b
        .js(
            "return Array.from(document.querySelectorAll('table.list tbody tr')).map(tr =>
               Array.from(tr.querySelectorAll('td')).map(td => td.textContent.trim()))",
        )
        .await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1, "one download: {history:?}");
    assert_eq!(history[0][1], "127.0.0.1");
    assert!(
        history[0][2].as_str().unwrap().contains("Chrome"),
        "the browser's user agent: {history:?}"
    );
    b.snap("05-downloads").await;

    // --- Settings and system information.
    b.goto("/settings").await;
    b.assert_labelled().await;
    b.type_into("#default-days", "7").await;
    b.css("#settings-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "document.querySelector('#status').textContent === 'Saved.'",
        "settings saved",
    )
    .await;
    assert_eq!(
        api.get_json("/api/settings").await,
        json!({"defaultExpirationDays": 7, "defaultNeverExpire": false})
    );
    b.snap("10-settings").await;
    b.goto("/").await;
    assert_eq!(
        b.js("return document.querySelector('#expiration').value")
            .await,
        json!("7"),
        "the upload page offers the new default"
    );
    b.goto("/system").await;
    let figures = b
        .js("return document.querySelector('dl.info').textContent")
        .await;
    for label in [
        "Version",
        "Allocator",
        "Disk used",
        "Stored files, total",
        "Database file",
        "WAL file",
    ] {
        assert!(
            figures.as_str().unwrap().contains(label),
            "{label} on the system page"
        );
    }
    b.snap("11-system").await;

    // --- Phone width: nothing scrolls sideways.
    b.client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    for (path, shot) in [
        ("/", "12-phone-upload"),
        ("/files", "13-phone-files"),
        ("/guest-links", "14-phone-guest-links"),
    ] {
        b.goto(path).await;
        b.assert_fits_width().await;
        b.snap(shot).await;
    }
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();

    // --- Delete the text file from the list.
    b.goto("/files").await;
    b.css(&format!("button[data-delete-entry='{}']", ids[1]))
        .await
        .click()
        .await
        .unwrap();
    b.accept_confirm().await;
    b.until(
        &format!("!document.querySelector('#entry-{}')", ids[1]),
        "the row disappears",
    )
    .await;
    let res = api
        .req(reqwest::Method::GET, &format!("/api/entry/{}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "deleted on the server");

    // --- Log out.
    b.css("#logout").await.click().await.unwrap();
    b.until("location.pathname === '/login'", "logged out")
        .await;

    // --- Log in again, then log out everywhere: the API client's session ends too.
    b.type_into("#secret", &format!("{SECRET}\n")).await;
    b.until("location.pathname === '/'", "logged in again")
        .await;
    b.goto("/settings").await;
    b.css("#logout-everywhere").await.click().await.unwrap();
    b.accept_confirm().await;
    b.until("location.pathname === '/login'", "logged out everywhere")
        .await;
    let res = api
        .req(reqwest::Method::GET, "/api/entries")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "every session ended");
    b.goto("/files").await;
    assert_eq!(b.path().await, "/login", "the browser's too");
    b.client.close().await.unwrap();
}
