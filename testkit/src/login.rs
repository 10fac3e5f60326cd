use crate::Error;

/// The session cookie `POST /api/auth` sets over plain HTTP.
pub const SESSION_COOKIE: &str = "sharerig_session";
/// Its name over HTTPS (a `Secure` cookie).
pub const SECURE_SESSION_COOKIE: &str = "__Host-sharerig_session";

/// Logs in to the server at `base` and returns the session cookie's
/// `name=value`, ready for a `Cookie` header.
pub async fn login(http: &reqwest::Client, base: &str, secret: &str) -> Result<String, Error> {
    let response = http
        .post(format!("{base}/api/auth"))
        .json(&serde_json::json!({ "sharedSecret": secret }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Login(format!("HTTP {status}")));
    }
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| {
            [SESSION_COOKIE, SECURE_SESSION_COOKIE]
                .iter()
                .any(|name| pair.starts_with(&format!("{name}=")))
        })
        .map(str::to_owned)
        .ok_or_else(|| Error::Login("no session cookie set".into()))
}
