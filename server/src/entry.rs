//! What an entry is and the rules its fields follow (ids, filenames, notes,
//! expirations), independent of HTTP and SQL so they can be tested alone.

use std::fmt;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::Rng;
use serde::Serialize;

/// Entry ids avoid look-alike characters (no `l`, `1`, `I`, `O`, `0`).
pub const ID_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of an entry id: 57^10 ≈ 3.6e17 ids, unguessable enough for share links.
pub const ENTRY_ID_LEN: usize = 10;
/// Filenames are stored and sent back in headers: 255 bytes is what filesystems allow.
pub const MAX_FILENAME_BYTES: usize = 255;
/// Notes are short annotations shown in the files list.
pub const MAX_NOTE_CHARS: usize = 500;
/// An expiration closer than this is almost certainly a mistake (the file would vanish at once).
pub const MIN_EXPIRATION_AHEAD: Duration = Duration::hours(1);

/// A rule broken by user input; the message names the problem and goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn invalid(msg: impl Into<String>) -> ValidationError {
    ValidationError(msg.into())
}

/// A validated entry id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(String);

impl EntryId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let id = (0..ENTRY_ID_LEN)
            .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
            .collect();
        EntryId(id)
    }

    /// Parses an id from a URL; anything that cannot be an id is `None` (the caller answers 404).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ENTRY_ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .then(|| EntryId(s.to_owned()))
    }

    /// Wraps an id read back from our own database.
    pub(crate) fn from_db(s: String) -> Self {
        EntryId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that make a filename show as something it is not: bidi
/// controls reorder what follows (`gpj\u{202E}exe.txt` shows as
/// `gpjtxt.exe`), zero-width ones hide inside a look-alike name.
fn invisible(c: char) -> Option<&'static str> {
    match c {
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("bidirectional control character"),
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => Some("zero-width character"),
        _ => None,
    }
}

/// Checks a filename against the published rules.
pub fn validate_filename(name: &str) -> Result<String, ValidationError> {
    if name.is_empty() {
        return Err(invalid("filename is empty"));
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(invalid(format!(
            "filename is {} bytes long; the limit is {MAX_FILENAME_BYTES}",
            name.len()
        )));
    }
    if name.contains(['/', '\\']) {
        return Err(invalid("filename must not contain '/' or '\\'"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("filename must not contain control characters"));
    }
    if let Some((c, kind)) = name.chars().find_map(|c| invisible(c).map(|k| (c, k))) {
        return Err(invalid(format!(
            "filename contains a {kind} U+{:04X}; remove it and upload again",
            u32::from(c)
        )));
    }
    if name == "." || name.starts_with("..") {
        return Err(invalid("filename must not be '.' or start with '..'"));
    }
    Ok(name.to_owned())
}

/// Checks a note; an empty note is stored as none.
pub fn validate_note(note: &str) -> Result<Option<String>, ValidationError> {
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(invalid(format!(
            "note is {chars} characters long; the limit is {MAX_NOTE_CHARS}"
        )));
    }
    Ok((!note.is_empty()).then(|| note.to_owned()))
}

/// Parses a download limit: empty means none, else a whole number of at least 1.
pub fn parse_max_downloads(s: &str) -> Result<Option<u64>, ValidationError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) => validate_max_downloads(n).map(Some),
        Err(_) => Err(invalid(format!(
            "maxDownloads {s:?} is not a whole number of at least 1"
        ))),
    }
}

/// A download limit must allow at least one download, and fit SQLite's integers.
pub fn validate_max_downloads(n: u64) -> Result<u64, ValidationError> {
    if n == 0 || n > i64::MAX as u64 {
        return Err(invalid(format!(
            "maxDownloads must be at least 1 (got {n}); leave it out for no limit"
        )));
    }
    Ok(n)
}

/// When an entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    Never,
    At(DateTime<Utc>),
}

/// "Never" is stored as this instant, as the reference server does.
pub fn never_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Expiration {
    /// Parses `never` or an RFC 3339 time at least [`MIN_EXPIRATION_AHEAD`] after `now`.
    pub fn parse(s: &str, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        Self::parse_ahead(s, now, MIN_EXPIRATION_AHEAD)
    }

    /// As [`Expiration::parse`] with another minimum (`--min-expiration`:
    /// the soak compresses a day into minutes).
    pub fn parse_ahead(
        s: &str,
        now: DateTime<Utc>,
        min_ahead: Duration,
    ) -> Result<Self, ValidationError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("never") {
            return Ok(Expiration::Never);
        }
        let at = DateTime::parse_from_rfc3339(s)
            .map_err(|_| {
                invalid(format!(
                    "expiration {s:?} is not an RFC 3339 time such as 2030-01-02T15:04:05Z, nor \"never\""
                ))
            })?
            .with_timezone(&Utc);
        if at >= never_instant() {
            return Ok(Expiration::Never);
        }
        if at < now + min_ahead {
            let min = match min_ahead.num_seconds() {
                3600 => "1 hour".to_owned(),
                secs => {
                    humantime::format_duration(std::time::Duration::from_secs(secs.max(0) as u64))
                        .to_string()
                }
            };
            return Err(invalid(format!(
                "expiration {s} is less than {min} in the future"
            )));
        }
        Ok(Expiration::At(at))
    }

    /// The expiration `days` after `now`, or never.
    pub fn days_after(days: Option<u32>, now: DateTime<Utc>) -> Self {
        match days {
            None => Expiration::Never,
            Some(d) => Expiration::At(now + Duration::days(i64::from(d))),
        }
    }

    pub fn to_millis(self) -> i64 {
        match self {
            Expiration::Never => never_instant().timestamp_millis(),
            Expiration::At(t) => t.timestamp_millis(),
        }
    }

    pub fn from_millis(ms: i64) -> Self {
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) if t < never_instant() => Expiration::At(t),
            _ => Expiration::Never,
        }
    }
}

/// Metadata of a stored file, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    pub note: Option<String>,
    pub uploaded: DateTime<Utc>,
    /// `null` when the entry never expires.
    pub expires: Option<DateTime<Utc>>,
    pub downloads: u64,
    /// The entry stops serving after this many downloads (`null`: no limit).
    pub max_downloads: Option<u64>,
    /// The guest link it was uploaded through (`null`: uploaded by the owner).
    pub guest_link_id: Option<String>,
    /// Bytes per stored chunk; fixed per entry so `--chunk-size` may change between runs.
    #[serde(skip)]
    pub chunk_size: u64,
}

/// Content type for a stored file: guessed from the name, else sniffed from its first bytes.
pub fn content_type_for(filename: &str, first_bytes: &[u8], declared: Option<&str>) -> String {
    if let Some(mime) = mime_guess::from_path(filename).first() {
        return mime.essence_str().to_owned();
    }
    if let Some(kind) = infer::get(first_bytes) {
        return kind.mime_type().to_owned();
    }
    if !first_bytes.is_empty() && looks_like_text(first_bytes) {
        return "text/plain; charset=utf-8".to_owned();
    }
    match declared {
        Some(d) if d != "application/octet-stream" && is_plain_mime(d) => d.to_owned(),
        _ => "application/octet-stream".to_owned(),
    }
}

/// A declared content type is only trusted if it is a plain `type/subtype` (no parameters,
/// nothing that could smuggle header syntax).
fn is_plain_mime(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(s.split_once('/'), Some((ty, sub)) if token(ty) && token(sub))
}

/// UTF-8 (allowing a character cut at the end of the sample) without NUL or other binary controls.
fn looks_like_text(sample: &[u8]) -> bool {
    let valid = match std::str::from_utf8(sample) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            match std::str::from_utf8(&sample[..e.valid_up_to()]) {
                Ok(s) => s,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends as a filename, an accepted one cannot
        /// name another directory, break a header line or exceed the limit;
        /// and it is stored exactly as sent.
        #[test]
        fn accepted_filenames_are_safe(name in prop_oneof![
            any::<String>(),
            "[./\\\\a-z\"\r\n ]{0,12}",
            "[a-z.\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2060}\u{FEFF}]{0,12}",
            ".{250,260}",
        ]) {
            match validate_filename(&name) {
                Ok(stored) => {
                    prop_assert_eq!(&stored, &name);
                    prop_assert!(!name.is_empty() && name.len() <= MAX_FILENAME_BYTES);
                    prop_assert!(!name.contains(['/', '\\']));
                    prop_assert!(!name.chars().any(char::is_control), "{:?}", name);
                    prop_assert!(!name.chars().any(|c| invisible(c).is_some()), "{:?}", name);
                    prop_assert!(name != "." && !name.starts_with(".."));
                }
                Err(e) => prop_assert!(e.0.contains("filename"), "{}", e.0),
            }
        }

        /// Expiration parsing never panics on any input, and an accepted
        /// time is at least the minimum ahead (or never).
        #[test]
        fn expirations_are_never_too_soon(
            text in prop_oneof![
                any::<String>(),
                (0i64..4_000_000_000_000).prop_map(|ms| {
                    Utc.timestamp_millis_opt(ms).single().unwrap().to_rfc3339()
                }),
                Just("never".to_owned()),
                Just(" NEVER ".to_owned()),
            ],
            min_secs in 0i64..100_000,
        ) {
            let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let min = Duration::seconds(min_secs);
            match Expiration::parse_ahead(&text, now, min) {
                Ok(Expiration::At(t)) => prop_assert!(t >= now + min && t < never_instant()),
                Ok(Expiration::Never) => {}
                Err(e) => prop_assert!(e.0.contains("expiration"), "{}", e.0),
            }
        }
    }

    #[test]
    fn ids_use_the_alphabet_and_parse_back() {
        for _ in 0..100 {
            let id = EntryId::generate();
            assert_eq!(id.as_str().len(), ENTRY_ID_LEN);
            assert_eq!(EntryId::parse(id.as_str()), Some(id));
        }
        assert_eq!(EntryId::parse("short"), None);
        assert_eq!(
            EntryId::parse("abcdefghi0"),
            None,
            "0 is not in the alphabet"
        );
    }

    #[test]
    fn filenames_follow_the_rules() {
        assert!(validate_filename("video.mp4").is_ok());
        assert!(validate_filename("..hidden").is_err());
        assert!(validate_filename("../x").is_err());
        assert!(validate_filename(".").is_err());
        assert!(validate_filename("a/b").is_err());
        assert!(validate_filename("a\\b").is_err());
        assert!(validate_filename("a\nb").is_err());
        assert!(validate_filename("").is_err());
        assert!(validate_filename(&"x".repeat(255)).is_ok());
        assert!(validate_filename(&"x".repeat(256)).is_err());
        assert!(validate_filename("été.txt").is_ok());
        let e = validate_filename("gpj\u{202E}exe.txt").unwrap_err();
        assert_eq!(
            e.0,
            "filename contains a bidirectional control character U+202E; remove it and upload again"
        );
        for c in [
            '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert!(validate_filename(&format!("a{c}b")).is_err(), "{c:?}");
        }
        let e = validate_filename("pay\u{200B}pal.pdf").unwrap_err();
        assert!(e.0.contains("zero-width character U+200B"), "{}", e.0);
        for c in ['\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'] {
            assert!(validate_filename(&format!("a{c}b")).is_err(), "{c:?}");
        }
        assert!(
            validate_filename("עברית.txt").is_ok(),
            "right-to-left text itself is fine"
        );
    }

    #[test]
    fn notes_are_limited_in_characters_not_bytes() {
        assert_eq!(validate_note("").unwrap(), None);
        assert!(validate_note(&"é".repeat(500)).is_ok());
        assert!(validate_note(&"a".repeat(501)).is_err());
    }

    #[test]
    fn download_limits() {
        assert_eq!(parse_max_downloads("").unwrap(), None);
        assert_eq!(parse_max_downloads(" 3 ").unwrap(), Some(3));
        assert!(parse_max_downloads("0").is_err());
        assert!(parse_max_downloads("-1").is_err());
        assert!(parse_max_downloads("two").is_err());
        assert!(validate_max_downloads(u64::MAX).is_err());
    }

    #[test]
    fn expiration_rules() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(Expiration::parse("never", now).unwrap(), Expiration::Never);
        assert_eq!(
            Expiration::parse("2999-12-31T00:00:00Z", now).unwrap(),
            Expiration::Never
        );
        assert!(Expiration::parse("2026-01-01T00:30:00Z", now).is_err());
        assert!(Expiration::parse("tomorrow", now).is_err());
        let at = Expiration::parse("2026-01-02T00:00:00+02:00", now).unwrap();
        assert_eq!(
            at,
            Expiration::At(Utc.with_ymd_and_hms(2026, 1, 1, 22, 0, 0).unwrap())
        );
        assert_eq!(Expiration::from_millis(at.to_millis()), at);
        assert_eq!(
            Expiration::from_millis(Expiration::Never.to_millis()),
            Expiration::Never
        );
    }

    #[test]
    fn content_type_from_name_then_sniffed() {
        assert_eq!(content_type_for("a.mp4", b"", None), "video/mp4");
        assert_eq!(
            content_type_for("noext", b"\x89PNG\r\n\x1a\n0000", None),
            "image/png"
        );
        assert_eq!(
            content_type_for("noext", b"hello\nworld", None),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type_for("noext", &[0, 1, 2, 3], Some("x-weird/kind")),
            "x-weird/kind"
        );
        assert_eq!(
            content_type_for("noext", &[0, 1, 2, 3], Some("bad type\r\n")),
            "application/octet-stream"
        );
    }
}
