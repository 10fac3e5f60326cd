//! Quick checks with short timeouts, outside goose: before the run (is the server there, is the
//! secret right?) and after a failed request (is the server still there?). They turn "every
//! request fails for minutes" into one clear error.

use std::time::Duration;

use reqwest::StatusCode;

use crate::http::describe;

/// Connecting must succeed within this; a live server on the same network accepts at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole check (`/healthz` runs one SQLite query) must finish within this.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fatal {
    Unreachable(String),
    WrongSecret,
    ServerGone(String),
    /// goose's killswitch was pulled by someone else than loadgen (its ctrl-c handler), or the
    /// `run` future was dropped.
    Interrupted,
}

impl Fatal {
    pub(crate) fn describe(&self, host: &str) -> String {
        match self {
            Fatal::Unreachable(detail) => format!("cannot reach share-server at {host}: {detail}"),
            Fatal::WrongSecret => {
                format!(
                    "share-server at {host} refused the shared secret (401 from POST /api/auth)"
                )
            }
            Fatal::ServerGone(detail) => {
                format!("share-server at {host} stopped answering during the run: {detail}")
            }
            Fatal::Interrupted => {
                "interrupted (ctrl-c, or the caller stopped waiting): in-flight requests were stopped"
                    .into()
            }
        }
    }
}

/// The client for checks: its own short timeouts, no cookies, no pooling (a check after a
/// failure must open a fresh connection to learn anything).
pub(crate) fn client(host: &str) -> reqwest::Result<reqwest::Client> {
    crate::http::client_builder(host)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CHECK_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
}

/// `GET /healthz` answers 200.
pub(crate) async fn healthy(client: &reqwest::Client, host: &str) -> Result<(), String> {
    let url = join(host, "/healthz");
    match client.get(&url).send().await {
        Ok(response) if response.status() == StatusCode::OK => Ok(()),
        Ok(response) => Err(format!("GET /healthz answered {}", response.status())),
        Err(e) => Err(format!("GET /healthz: {}", describe(&e))),
    }
}

/// The server answers `/healthz` and accepts the secret.
pub(crate) async fn check(client: &reqwest::Client, host: &str, secret: &str) -> Result<(), Fatal> {
    healthy(client, host).await.map_err(Fatal::Unreachable)?;
    let response = client
        .post(join(host, "/api/auth"))
        .json(&serde_json::json!({ "sharedSecret": secret }))
        .send()
        .await
        .map_err(|e| Fatal::Unreachable(format!("POST /api/auth: {}", describe(&e))))?;
    match response.status() {
        StatusCode::OK => Ok(()),
        StatusCode::UNAUTHORIZED => Err(Fatal::WrongSecret),
        status => Err(Fatal::Unreachable(format!(
            "POST /api/auth answered {status}"
        ))),
    }
}

fn join(host: &str, path: &str) -> String {
    format!("{}{path}", host.trim_end_matches('/'))
}
