//! What the templates print: sizes, times and rows, formatted in Rust so the
//! templates stay plain.

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::entry::Entry;
use crate::guest_links::{FileLifetime, GuestLink};

/// What must be escaped in one path segment (RFC 3986 `pchar`'s complement,
/// roughly): readable names stay readable.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
use crate::storage::downloads::Download;

/// `1.5 MiB`: binary units, one decimal from KiB up.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2026-11-28 14:03 UTC`
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// RFC 3339, for `<time datetime>` and scripts.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `/-{id}/{filename}`: the filename is cosmetic, but people see it.
pub fn download_path(id: &str, filename: &str) -> String {
    format!("/-{id}/{}", utf8_percent_encode(filename, SEGMENT))
}

/// `30 days`, `1 day`, `36h`; `never`.
pub fn lifetime(l: FileLifetime) -> String {
    const DAY: u64 = 24 * 3600;
    match l {
        FileLifetime::Never => "never".into(),
        FileLifetime::For(d) if d.as_secs() == DAY => "1 day".into(),
        FileLifetime::For(d) if d.as_secs() % DAY == 0 => format!("{} days", d.as_secs() / DAY),
        FileLifetime::For(d) => humantime::format_duration(d).to_string(),
    }
}

pub struct EntryRow {
    pub id: String,
    pub filename: String,
    pub note: String,
    pub href: String,
    pub size: String,
    pub uploaded: String,
    pub uploaded_iso: String,
    pub expires: String,
    /// RFC 3339, empty for never.
    pub expires_iso: String,
    /// `3`, or `3 / 5` with a limit.
    pub downloads: String,
    pub max_downloads: String,
    pub limit_reached: bool,
    pub from_guest: bool,
}

impl EntryRow {
    pub fn of(e: &Entry) -> Self {
        EntryRow {
            id: e.id.clone(),
            filename: e.filename.clone(),
            note: e.note.clone().unwrap_or_default(),
            href: download_path(&e.id, &e.filename),
            size: bytes(e.size),
            uploaded: time(e.uploaded),
            uploaded_iso: iso(e.uploaded),
            expires: e.expires.map_or_else(|| "never".to_owned(), time),
            expires_iso: e.expires.map(iso).unwrap_or_default(),
            downloads: match e.max_downloads {
                Some(max) => format!("{} / {max}", e.downloads),
                None => e.downloads.to_string(),
            },
            max_downloads: e.max_downloads.map(|n| n.to_string()).unwrap_or_default(),
            limit_reached: e.max_downloads.is_some_and(|max| e.downloads >= max),
            from_guest: e.guest_link_id.is_some(),
        }
    }
}

pub struct DownloadRow {
    pub time: String,
    pub time_iso: String,
    pub client_ip: String,
    pub user_agent: String,
}

impl DownloadRow {
    pub fn of(d: &Download) -> Self {
        DownloadRow {
            time: time(d.time),
            time_iso: iso(d.time),
            client_ip: d.client_ip.clone(),
            user_agent: d.user_agent.clone(),
        }
    }
}

pub struct GuestLinkRow {
    pub id: String,
    pub label: String,
    pub path: String,
    pub created: String,
    pub expires: String,
    pub max_file_size: String,
    pub uploads: String,
    pub file_lifetime: String,
    /// `active`, `disabled`, `expired` or `full`.
    pub status: &'static str,
    pub disabled: bool,
}

impl GuestLinkRow {
    pub fn of(g: &GuestLink, now: DateTime<Utc>) -> Self {
        use crate::guest_links::Refusal;
        GuestLinkRow {
            id: g.id.clone(),
            label: g.label.clone(),
            path: format!("/g/{}", g.id),
            created: time(g.created),
            expires: g.url_expires.map_or_else(|| "never".to_owned(), time),
            max_file_size: g
                .max_file_bytes
                .map_or_else(|| "no limit".to_owned(), bytes),
            uploads: match g.max_file_uploads {
                Some(max) => format!("{} / {max}", g.uploads_used),
                None => g.uploads_used.to_string(),
            },
            file_lifetime: lifetime(g.file_lifetime),
            status: match g.refusal(now) {
                None => "active",
                Some(Refusal::Disabled) => "disabled",
                Some(Refusal::Expired(_)) => "expired",
                Some(Refusal::UploadLimit(_)) => "full",
            },
            disabled: g.disabled,
        }
    }
}

/// A choice in an expiration `<select>`: days, or `never`.
pub struct ExpiryOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The usual choices, with `default_days` (the setting) added if missing and selected.
pub fn expiry_options(default_days: Option<u32>) -> Vec<ExpiryOption> {
    let mut days: Vec<u32> = vec![1, 7, 30, 90, 365];
    if let Some(d) = default_days
        && !days.contains(&d)
    {
        days.push(d);
        days.sort_unstable();
    }
    let mut options: Vec<ExpiryOption> = days
        .into_iter()
        .map(|d| ExpiryOption {
            value: d.to_string(),
            label: match d {
                1 => "1 day".to_owned(),
                365 => "1 year".to_owned(),
                d => format!("{d} days"),
            },
            selected: default_days == Some(d),
        })
        .collect();
    options.push(ExpiryOption {
        value: "never".into(),
        label: "Never".into(),
        selected: default_days.is_none(),
    });
    for o in &mut options {
        if o.selected {
            o.label.push_str(" (default)");
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
    }

    #[test]
    fn the_default_expiry_is_offered_and_selected() {
        let o = expiry_options(Some(14));
        let selected: Vec<_> = o.iter().filter(|o| o.selected).collect();
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].value, "14");
        assert_eq!(selected[0].label, "14 days (default)");
        let never = expiry_options(None);
        assert!(never.iter().any(|o| o.value == "never" && o.selected));
    }

    #[test]
    fn download_paths_encode_the_name() {
        assert_eq!(download_path("abc", "a b?.txt"), "/-abc/a%20b%3F.txt");
        assert_eq!(
            download_path("abc", "été-1.bin"),
            "/-abc/%C3%A9t%C3%A9-1.bin"
        );
    }

    #[test]
    fn lifetimes_in_days() {
        use std::time::Duration;
        assert_eq!(
            lifetime(FileLifetime::For(Duration::from_secs(86400))),
            "1 day"
        );
        assert_eq!(
            lifetime(FileLifetime::For(Duration::from_secs(30 * 86400))),
            "30 days"
        );
        assert_eq!(lifetime(FileLifetime::For(Duration::from_secs(7200))), "2h");
        assert_eq!(lifetime(FileLifetime::Never), "never");
    }
}
