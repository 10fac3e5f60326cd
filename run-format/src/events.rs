//! `events.jsonl`: what happened when, one JSON object per line. Each event's
//! `detail` has one shape per name: the types in [`detail`], which the rig
//! writes with [`Event::of`] and the reports read with [`Event::detail`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The event names, written by the rig and read by the reports.
pub mod name {
    /// [`super::detail::ServerStarted`]
    pub const SERVER_STARTED: &str = "server-started";
    /// [`super::detail::PhaseStart`]
    pub const PHASE_START: &str = "phase-start";
    /// [`super::detail::PhaseEnd`]
    pub const PHASE_END: &str = "phase-end";
    /// [`super::detail::ServerDied`]: the server ended during the run.
    pub const SERVER_DIED: &str = "server-died";
    /// [`super::detail::Interrupted`]: the run was stopped by Ctrl-C.
    pub const INTERRUPTED: &str = "interrupted";
    /// [`super::detail::ServerStopped`]: the rig stopped the server at the end.
    pub const SERVER_STOPPED: &str = "server-stopped";
    /// [`super::detail::OomKill`]: the kernel OOM-killed a process of the run
    /// (cgroup count or guest console).
    pub const OOM_KILL: &str = "oom-kill";
}

/// The `detail` of an event, named by [`Detail::NAME`].
pub trait Detail: Serialize + DeserializeOwned {
    /// One of [`name`].
    const NAME: &'static str;
}

/// The details, one type per event name; fields missing in a file default.
pub mod detail {
    use serde::{Deserialize, Serialize};

    use super::{Detail, name};

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ServerStarted {
        /// Inside the guest in `vm` mode.
        pub pid: u32,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct PhaseStart {
        pub phase: String,
        /// Runs beside the phases after it.
        pub background: bool,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct PhaseEnd {
        pub phase: String,
        pub ok: bool,
        /// loadgen's error, or why there is no result.
        pub error: Option<String>,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ServerDied {
        /// When the rig saw it die, ms since the run started (else the event's time).
        pub at_ms: Option<u64>,
        /// [`crate::Exit::describe`].
        pub exit: String,
    }

    /// `null`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Interrupted;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ServerStopped {
        /// [`crate::Exit::describe`].
        pub exit: String,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct OomKill {
        pub pid: u32,
        pub process: String,
        /// The kernel's line, as printed.
        pub line: String,
    }

    impl Detail for ServerStarted {
        const NAME: &'static str = name::SERVER_STARTED;
    }
    impl Detail for PhaseStart {
        const NAME: &'static str = name::PHASE_START;
    }
    impl Detail for PhaseEnd {
        const NAME: &'static str = name::PHASE_END;
    }
    impl Detail for ServerDied {
        const NAME: &'static str = name::SERVER_DIED;
    }
    impl Detail for Interrupted {
        const NAME: &'static str = name::INTERRUPTED;
    }
    impl Detail for ServerStopped {
        const NAME: &'static str = name::SERVER_STOPPED;
    }
    impl Detail for OomKill {
        const NAME: &'static str = name::OOM_KILL;
    }
}

/// One event; `event` is one of the names in [`name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started (the samples' clock).
    pub t_ms: u64,
    pub event: String,
    /// Event-specific: the [`detail`] type of its name.
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl Event {
    /// The event `D` names, at `t_ms`.
    pub fn of<D: Detail>(t_ms: u64, detail: &D) -> Event {
        Event {
            t_ms,
            event: D::NAME.to_owned(),
            // These types always encode; a failure would leave the detail empty.
            detail: serde_json::to_value(detail).unwrap_or_default(),
        }
    }

    /// The detail, when this event is the one `D` names and its detail reads as `D`.
    pub fn detail<D: Detail>(&self) -> Option<D> {
        if self.event != D::NAME {
            return None;
        }
        serde_json::from_value(self.detail.clone()).ok()
    }
}

/// Reads `events.jsonl` text; lines that do not parse (a cut last line) are skipped.
pub fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::detail::*;
    use super::*;

    #[test]
    fn details_round_trip_under_their_names() {
        let end = PhaseEnd {
            phase: "upload".into(),
            ok: false,
            error: Some("the server died".into()),
        };
        let line = serde_json::to_string(&Event::of(20050, &end)).unwrap();
        assert_eq!(
            line,
            r#"{"t_ms":20050,"event":"phase-end","detail":{"error":"the server died","ok":false,"phase":"upload"}}"#
        );
        let events = parse(&format!(
            "{line}\n{}\n",
            r#"{"t_ms": 1, "event": "interrupted"}"#
        ));
        assert_eq!(events[0].detail::<PhaseEnd>(), Some(end));
        assert_eq!(events[0].detail::<PhaseStart>(), None, "another name");
        assert_eq!(events[1].detail::<Interrupted>(), Some(Interrupted));
        let stopped = serde_json::to_string(&Event::of(5, &Interrupted)).unwrap();
        assert_eq!(stopped, r#"{"t_ms":5,"event":"interrupted","detail":null}"#);
    }

    #[test]
    fn old_details_with_fields_missing_read() {
        let old = r#"{"t_ms": 20050, "event": "server-died", "detail": {"exit": "killed by SIGKILL"}}
{"t_ms": 10, "event": "phase-start", "detail": {"phase": "upload"}}"#;
        let events = parse(old);
        let died: ServerDied = events[0].detail().unwrap();
        assert_eq!(
            (died.at_ms, died.exit.as_str()),
            (None, "killed by SIGKILL")
        );
        let start: PhaseStart = events[1].detail().unwrap();
        assert!(!start.background);
    }
}
