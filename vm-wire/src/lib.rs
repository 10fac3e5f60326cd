//! The stream between the guest agent (`vm-agent`, inside a `vm` guest) and
//! the rig (`profiling/src/machine/vm/agent.rs`, on the host), defined once
//! for both ends. std only: the agent is a small binary in the guest's
//! initramfs.
//!
//! Text lines on a virtio-serial port. A line starting with `@` is a [`Tag`]
//! and its words; other lines are the text of the section the last tag opened.
//!
//! ```text
//! @hello KERNEL         first: the guest's kernel release
//! @started PID          the server runs
//! @failed REASON        the agent could not start it
//! @sample UPTIME_S PID  a sample begins
//! @meminfo              then /proc/meminfo
//! @status               then /proc/PID/status (absent once the server is gone)
//! @pss KB               Pss from /proc/PID/smaps_rollup
//! @fds N                open file descriptors of the server
//! @vmstat OOM_KILLS     oom_kill from /proc/vmstat
//! @psi                  then /proc/pressure/memory
//! @files DB WAL SHM     the database files' sizes, bytes (0: absent)
//! @stats JSON           the server's /debug/stats on one line (absent if it did not answer)
//! @end                  the sample is complete
//! @exit CODE SIGNAL     last: how the server ended ([`NONE`] for neither)
//! ```
//!
//! The rig sends commands the other way, one a line: [`STOP`].

use std::fmt;

/// Command: send the server SIGTERM.
pub const STOP: &str = "stop";

/// An absent exit code or signal in `@exit`.
pub const NONE: &str = "-";

/// What a line starting with `@` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Hello,
    Started,
    Failed,
    Sample,
    Meminfo,
    Status,
    Pss,
    Fds,
    Vmstat,
    Psi,
    Files,
    Stats,
    End,
    Exit,
}

impl Tag {
    pub const ALL: [Tag; 14] = [
        Tag::Hello,
        Tag::Started,
        Tag::Failed,
        Tag::Sample,
        Tag::Meminfo,
        Tag::Status,
        Tag::Pss,
        Tag::Fds,
        Tag::Vmstat,
        Tag::Psi,
        Tag::Files,
        Tag::Stats,
        Tag::End,
        Tag::Exit,
    ];

    /// The word after `@`.
    pub fn word(self) -> &'static str {
        match self {
            Tag::Hello => "hello",
            Tag::Started => "started",
            Tag::Failed => "failed",
            Tag::Sample => "sample",
            Tag::Meminfo => "meminfo",
            Tag::Status => "status",
            Tag::Pss => "pss",
            Tag::Fds => "fds",
            Tag::Vmstat => "vmstat",
            Tag::Psi => "psi",
            Tag::Files => "files",
            Tag::Stats => "stats",
            Tag::End => "end",
            Tag::Exit => "exit",
        }
    }

    pub fn from_word(word: &str) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| t.word() == word)
    }

    /// Followed by lines of a /proc file, up to the next tag.
    pub fn opens_section(self) -> bool {
        matches!(self, Tag::Meminfo | Tag::Status | Tag::Psi)
    }
}

/// `@word`: write a line as `writeln!(out, "{} {pid}", Tag::Started)`.
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.word())
    }
}

/// One line of the stream, without its newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A tag and the rest of its line.
    Tag(Tag, &'a str),
    /// `@` and a word this version does not know (a newer agent): skipped.
    Unknown(&'a str),
    /// Text of the open section.
    Text(&'a str),
}

pub fn parse(line: &str) -> Line<'_> {
    let Some(tagged) = line.strip_prefix('@') else {
        return Line::Text(line);
    };
    let (word, rest) = tagged.split_once(' ').unwrap_or((tagged, ""));
    match Tag::from_word(word) {
        Some(tag) => Line::Tag(tag, rest),
        None => Line::Unknown(word),
    }
}

/// The words of `@exit`.
pub fn exit_words(code: Option<i32>, signal: Option<i32>) -> String {
    let word = |n: Option<i32>| n.map_or(NONE.to_owned(), |n| n.to_string());
    format!("{} {}", word(code), word(signal))
}

/// The exit code and signal of `@exit`'s words.
pub fn parse_exit(rest: &str) -> (Option<i32>, Option<i32>) {
    let mut words = rest.split_whitespace().map(|w| w.parse::<i32>().ok());
    (words.next().flatten(), words.next().flatten())
}

/// The words of `@files`.
pub fn files_words(db: u64, wal: u64, shm: u64) -> String {
    format!("{db} {wal} {shm}")
}

/// The database, WAL and shm sizes of `@files`' words; `None` unless all three are numbers.
pub fn parse_files(rest: &str) -> Option<(u64, u64, u64)> {
    let sizes: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    match sizes[..] {
        [db, wal, shm] => Some((db, wal, shm)),
        _ => None,
    }
}

/// A number word (`@started`, `@pss`, `@fds`, `@vmstat`).
pub fn parse_number(rest: &str) -> Option<u64> {
    rest.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_round_trips() {
        for tag in Tag::ALL {
            assert_eq!(parse(&format!("{tag} 1 2")), Line::Tag(tag, "1 2"));
            assert_eq!(parse(&tag.to_string()), Line::Tag(tag, ""));
        }
        assert_eq!(parse("@later 3"), Line::Unknown("later"));
        assert_eq!(parse("MemTotal: 1 kB"), Line::Text("MemTotal: 1 kB"));
    }

    #[test]
    fn words_round_trip() {
        for (code, signal) in [(Some(0), None), (None, Some(9)), (None, None)] {
            assert_eq!(parse_exit(&exit_words(code, signal)), (code, signal));
        }
        assert_eq!(exit_words(None, Some(9)), "- 9");
        assert_eq!(
            parse_files(&files_words(4096, 0, 32768)),
            Some((4096, 0, 32768))
        );
        assert_eq!(parse_files("1 2"), None);
        assert_eq!(parse_files("1 x 3"), None);
        assert_eq!(parse_number(" 7 "), Some(7));
    }
}
