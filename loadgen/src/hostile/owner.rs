//! What the owner does around an attack (from 127.0.0.1, a polite client): log in, create an
//! unlimited guest link, upload a small file, open its download history.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

use super::tally::HistoryCheck;
use crate::http::describe;
use crate::preflight::Fatal;

/// Each owner request must finish within this (the history fetch: `Config::timeout`).
const OWNER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the file `history-flood` downloads.
const SMALL_FILE: usize = 1024;

/// A logged-in owner: the session cookie, sent by hand (no cookie store needed for one).
pub(crate) struct Owner {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

impl Owner {
    /// Logs in; a refused secret is `Fatal::WrongSecret`, anything else a setup error.
    pub(crate) async fn login(base: &str, secret: &str) -> Result<Owner, Setup> {
        let client = crate::http::client_builder(base)
            .timeout(OWNER_TIMEOUT)
            .build()
            .map_err(|e| Setup::Failed(format!("cannot build an HTTP client: {e}")))?;
        let base = base.trim_end_matches('/').to_owned();
        let response = client
            .post(format!("{base}/api/auth"))
            .json(&serde_json::json!({ "sharedSecret": secret }))
            .send()
            .await
            .map_err(|e| Setup::Failed(format!("POST /api/auth: {}", describe(&e))))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(Setup::Fatal(Fatal::WrongSecret)),
            status => return Err(Setup::Failed(format!("POST /api/auth answered {status}"))),
        }
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Owner {
            client,
            base,
            cookie,
        })
    }

    /// A guest link without limits; its id.
    pub(crate) async fn unlimited_guest_link(&self, label: &str) -> Result<String, Setup> {
        let request = self
            .client
            .post(format!("{}/api/guest-links", self.base))
            .json(&serde_json::json!({ "label": label }));
        self.id_of(request, "POST /api/guest-links").await
    }

    /// Uploads a small file (never expiring before the run ends); its id.
    pub(crate) async fn small_upload(&self, filename: &str) -> Result<String, Setup> {
        let part =
            reqwest::multipart::Part::bytes(vec![b'h'; SMALL_FILE]).file_name(filename.to_owned());
        let request = self
            .client
            .post(format!("{}/api/entry", self.base))
            .multipart(reqwest::multipart::Form::new().part("file", part));
        self.id_of(request, "POST /api/entry").await
    }

    async fn id_of(&self, request: reqwest::RequestBuilder, what: &str) -> Result<String, Setup> {
        let failed = |detail: String| Setup::Failed(format!("{what}: {detail}"));
        let response = request
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| failed(describe(&e)))?;
        body.get("id")
            .and_then(|id| id.as_str())
            .map(str::to_owned)
            .ok_or_else(|| failed("no id in the answer".into()))
    }

    /// `GET /api/entry/{id}/downloads` (its first page), timed, its rows counted.
    pub(crate) async fn history(&self, id: &str, timeout: Duration) -> HistoryCheck {
        let started = Instant::now();
        let mut check = HistoryCheck {
            entry_id: id.to_owned(),
            ..HistoryCheck::default()
        };
        let fetch = async {
            let response = self
                .client
                .get(format!("{}/api/entry/{id}/downloads", self.base))
                .header(COOKIE, &self.cookie)
                .timeout(timeout)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match fetch.await {
            Ok((status, body)) => {
                check.status = Some(status);
                check.bytes = body.len() as u64;
                check.rows = serde_json::from_slice::<HistoryPage>(&body)
                    .ok()
                    .map(|page| page.downloads.len() as u64);
            }
            Err(e) => check.error = Some(describe(&e)),
        }
        check.seconds = started.elapsed().as_secs_f64();
        check
    }
}

/// One page of the history API: `{"downloads": [...], "nextBefore": ...}`.
#[derive(serde::Deserialize)]
struct HistoryPage {
    downloads: Vec<serde::de::IgnoredAny>,
}

/// Why an attack could not be set up.
#[derive(Debug)]
pub(crate) enum Setup {
    Fatal(Fatal),
    Failed(String),
}
