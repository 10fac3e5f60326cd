//! Guest links: upload-only links for people without the shared secret. A
//! link may limit the size of each file, the number of uploads and its own
//! lifetime, and gives the files uploaded through it a lifetime of their own.
//! The rules live here, apart from HTTP and SQL, so they can be tested alone;
//! `storage::guest_links` applies them atomically when an upload starts.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::entry::{Expiration, ID_ALPHABET, ValidationError};

/// 57^16 ≈ 1.2e28 ids: a guest link lets strangers write to the server, so
/// it is longer than an entry id (as in the reference).
pub const GUEST_LINK_ID_LEN: usize = 16;
/// Labels are short names shown in the links list.
pub const MAX_LABEL_CHARS: usize = 200;
/// A per-file limit below 1 MiB is almost certainly a units mistake.
pub const MIN_MAX_FILE_BYTES: u64 = 1 << 20;
/// Files uploaded through a link live at least this long...
pub const MIN_FILE_LIFETIME: Duration = Duration::from_secs(3600);
/// ...and at most ten years, unless they never expire.
pub const MAX_FILE_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A validated guest link id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestLinkId(String);

impl GuestLinkId {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        GuestLinkId(
            (0..GUEST_LINK_ID_LEN)
                .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
                .collect(),
        )
    }

    /// `None` for anything that cannot be a guest link id (the caller answers 404).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == GUEST_LINK_ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .then(|| GuestLinkId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuestLinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long files uploaded through a link are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLifetime {
    Never,
    For(Duration),
}

impl FileLifetime {
    /// `never` or a duration such as `30days`, `720h`, `1h 30m` (Go's
    /// `720h0m0s`, the reference's format, parses too).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("never") {
            return Ok(FileLifetime::Never);
        }
        let d = humantime::parse_duration(s).map_err(|_| {
            ValidationError(format!(
                "fileLifetime {s:?} is not a duration such as \"30days\" or \"720h\", nor \"never\""
            ))
        })?;
        Self::from_duration(d)
    }

    pub fn from_duration(d: Duration) -> Result<Self, ValidationError> {
        if d < MIN_FILE_LIFETIME {
            return Err(ValidationError(
                "fileLifetime must be at least 1 hour".into(),
            ));
        }
        if d > MAX_FILE_LIFETIME {
            return Err(ValidationError(
                "fileLifetime must be at most 3650 days, or \"never\"".into(),
            ));
        }
        Ok(FileLifetime::For(d))
    }

    /// A lifetime of `days` days, or never (`None`), as the settings store it.
    pub fn from_days(days: Option<u32>) -> Self {
        match days {
            None => FileLifetime::Never,
            Some(d) => FileLifetime::For(Duration::from_secs(u64::from(d) * 24 * 3600)),
        }
    }

    /// When a file uploaded at `now` expires.
    pub fn expiration_from(self, now: DateTime<Utc>) -> Expiration {
        match self {
            FileLifetime::Never => Expiration::Never,
            FileLifetime::For(d) => match chrono::Duration::from_std(d) {
                Ok(d) => Expiration::At(now + d),
                Err(_) => Expiration::Never,
            },
        }
    }

    pub fn to_secs(self) -> Option<i64> {
        match self {
            FileLifetime::Never => None,
            FileLifetime::For(d) => Some(d.as_secs() as i64),
        }
    }

    pub fn from_secs(secs: Option<i64>) -> Self {
        match secs {
            Some(s) if s > 0 => FileLifetime::For(Duration::from_secs(s as u64)),
            _ => FileLifetime::Never,
        }
    }
}

impl fmt::Display for FileLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileLifetime::Never => f.write_str("never"),
            FileLifetime::For(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// `POST /api/guest-links`, in the reference's JSON shape. Numbers are read
/// signed so that a negative one gets our message, not serde's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestLinkRequest {
    #[serde(default)]
    pub label: String,
    /// RFC 3339 or `never`; absent or empty: never.
    pub url_expiration_time: Option<String>,
    /// A duration or `never`; absent or empty: the default expiration setting.
    pub file_lifetime: Option<String>,
    /// `null`: no limit.
    pub max_file_bytes: Option<i64>,
    /// `null`: no limit.
    pub max_file_uploads: Option<i64>,
}

/// A guest link about to be created, every field validated.
#[derive(Debug, Clone)]
pub struct NewGuestLink {
    pub label: String,
    pub max_file_bytes: Option<u64>,
    pub max_file_uploads: Option<u64>,
    pub url_expiration: Expiration,
    pub file_lifetime: FileLifetime,
}

impl NewGuestLink {
    /// Checks a request against the rules; `default_lifetime` applies when it names none.
    pub fn from_request(
        req: &GuestLinkRequest,
        now: DateTime<Utc>,
        default_lifetime: FileLifetime,
    ) -> Result<Self, ValidationError> {
        let label = validate_label(&req.label)?;
        let max_file_bytes = match req.max_file_bytes {
            None => None,
            Some(n) if n >= MIN_MAX_FILE_BYTES as i64 => Some(n as u64),
            Some(n) => {
                return Err(ValidationError(format!(
                    "maxFileBytes must be at least {MIN_MAX_FILE_BYTES} (1 MiB), or null for no limit; got {n}"
                )));
            }
        };
        let max_file_uploads = match req.max_file_uploads {
            None => None,
            Some(n) if n >= 1 => Some(n as u64),
            Some(n) => {
                return Err(ValidationError(format!(
                    "maxFileUploads must be at least 1, or null for no limit; got {n}"
                )));
            }
        };
        let url_expiration = match req.url_expiration_time.as_deref().map(str::trim) {
            None | Some("") => Expiration::Never,
            Some(s) => Expiration::parse(s, now)
                .map_err(|e| ValidationError(format!("urlExpirationTime: {e}")))?,
        };
        let file_lifetime = match req.file_lifetime.as_deref().map(str::trim) {
            None | Some("") => default_lifetime,
            Some(s) => FileLifetime::parse(s)?,
        };
        Ok(NewGuestLink {
            label,
            max_file_bytes,
            max_file_uploads,
            url_expiration,
            file_lifetime,
        })
    }
}

/// Labels: at most [`MAX_LABEL_CHARS`] characters, no control characters.
pub fn validate_label(label: &str) -> Result<String, ValidationError> {
    let chars = label.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(ValidationError(format!(
            "label is {chars} characters long; the limit is {MAX_LABEL_CHARS}"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(ValidationError(
            "label must not contain control characters".into(),
        ));
    }
    Ok(label.to_owned())
}

/// Why a guest link takes no upload now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this guest link is disabled")]
    Disabled,
    #[error("this guest link expired at {}", .0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    Expired(DateTime<Utc>),
    #[error("this guest link has reached its limit of {0} upload(s)")]
    UploadLimit(u64),
}

/// A stored guest link, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestLink {
    pub id: String,
    pub label: String,
    pub created: DateTime<Utc>,
    /// `null`: the link never expires.
    pub url_expires: Option<DateTime<Utc>>,
    /// A duration such as `30days`, or `never`.
    #[serde(serialize_with = "serialize_display")]
    pub file_lifetime: FileLifetime,
    pub max_file_bytes: Option<u64>,
    pub max_file_uploads: Option<u64>,
    /// Files uploaded through the link that still exist, in-progress ones included.
    pub uploads_used: u64,
    pub disabled: bool,
}

fn serialize_display<S: serde::Serializer>(v: &FileLifetime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl GuestLink {
    /// Why the link would refuse an upload at `now`, if it would.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<Refusal> {
        if self.disabled {
            return Some(Refusal::Disabled);
        }
        if let Some(at) = self.url_expires
            && at <= now
        {
            return Some(Refusal::Expired(at));
        }
        match self.max_file_uploads {
            Some(max) if self.uploads_used >= max => Some(Refusal::UploadLimit(max)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn request() -> GuestLinkRequest {
        GuestLinkRequest::default()
    }

    #[test]
    fn ids_are_16_characters_of_the_alphabet() {
        let id = GuestLinkId::generate();
        assert_eq!(id.as_str().len(), GUEST_LINK_ID_LEN);
        assert_eq!(GuestLinkId::parse(id.as_str()), Some(id));
        assert_eq!(GuestLinkId::parse("abcdefghijk"), None);
        assert_eq!(GuestLinkId::parse("abcdefghijkmnop0"), None);
    }

    #[test]
    fn lifetimes_parse_in_several_spellings() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            FileLifetime::parse("30days").unwrap(),
            FileLifetime::For(30 * day)
        );
        assert_eq!(
            FileLifetime::parse("720h0m0s").unwrap(),
            FileLifetime::For(30 * day)
        );
        assert_eq!(FileLifetime::parse("Never").unwrap(), FileLifetime::Never);
        assert!(FileLifetime::parse("59m").is_err());
        assert!(FileLifetime::parse("3651days").is_err());
        assert!(FileLifetime::parse("soon").is_err());
        let lt = FileLifetime::For(30 * day);
        assert_eq!(lt.to_string(), "30days");
        assert_eq!(FileLifetime::parse(&lt.to_string()).unwrap(), lt);
        assert_eq!(FileLifetime::from_secs(lt.to_secs()), lt);
        assert_eq!(
            lt.expiration_from(now()),
            Expiration::At(Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn requests_are_validated() {
        let default = FileLifetime::Never;
        let ok = NewGuestLink::from_request(&request(), now(), default).unwrap();
        assert_eq!(ok.url_expiration, Expiration::Never);
        assert_eq!(ok.file_lifetime, default);
        assert_eq!((ok.max_file_bytes, ok.max_file_uploads), (None, None));

        let err = |req: GuestLinkRequest| {
            NewGuestLink::from_request(&req, now(), default)
                .unwrap_err()
                .0
        };
        assert!(
            err(GuestLinkRequest {
                label: "x".repeat(201),
                ..request()
            })
            .contains("limit is 200")
        );
        assert!(
            err(GuestLinkRequest {
                max_file_bytes: Some(1_048_575),
                ..request()
            })
            .contains("at least 1048576")
        );
        assert!(
            err(GuestLinkRequest {
                max_file_uploads: Some(0),
                ..request()
            })
            .contains("at least 1")
        );
        assert!(
            err(GuestLinkRequest {
                url_expiration_time: Some("2026-01-01T00:10:00Z".into()),
                ..request()
            })
            .contains("urlExpirationTime")
        );
        assert!(
            err(GuestLinkRequest {
                file_lifetime: Some("1s".into()),
                ..request()
            })
            .contains("at least 1 hour")
        );
    }

    #[test]
    fn refusals_in_order() {
        let mut link = GuestLink {
            id: "x".into(),
            label: String::new(),
            created: now(),
            url_expires: Some(now() + chrono::Duration::days(1)),
            file_lifetime: FileLifetime::Never,
            max_file_bytes: None,
            max_file_uploads: Some(2),
            uploads_used: 1,
            disabled: false,
        };
        assert_eq!(link.refusal(now()), None);
        link.uploads_used = 2;
        assert_eq!(link.refusal(now()), Some(Refusal::UploadLimit(2)));
        let later = now() + chrono::Duration::days(2);
        assert!(matches!(link.refusal(later), Some(Refusal::Expired(_))));
        link.disabled = true;
        assert_eq!(link.refusal(later), Some(Refusal::Disabled));
    }
}
