//! How the server ended: `server_exit` of `outcome.json`, and the words the
//! rig's events and the reports use for it ([`Exit::describe`]).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Stopped by the rig (SIGTERM at the end), as opposed to dying on its own.
    /// Missing in a file: assumed, so a death is never made up.
    #[serde(default = "assumed_stopped")]
    pub stopped_by_rig: bool,
}

fn assumed_stopped() -> bool {
    true
}

impl Exit {
    /// How a process ended, from its wait status.
    pub fn observe(status: ExitStatus, stopped_by_rig: bool) -> Self {
        Exit {
            code: status.code(),
            signal: status.signal(),
            stopped_by_rig,
        }
    }

    /// `killed by SIGKILL`, `killed by signal 6`, `exited with status 1`, `ended`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(9)) => "killed by SIGKILL".into(),
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), None) => format!("exited with status {c}"),
            (None, None) => "ended".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_signals_before_codes() {
        let exit = |code, signal| Exit {
            code,
            signal,
            stopped_by_rig: false,
        };
        assert_eq!(exit(None, Some(9)).describe(), "killed by SIGKILL");
        assert_eq!(exit(None, Some(6)).describe(), "killed by signal 6");
        assert_eq!(exit(Some(1), None).describe(), "exited with status 1");
        assert_eq!(exit(None, None).describe(), "ended");
    }

    #[test]
    fn an_old_exit_without_stopped_by_rig_counts_as_stopped() {
        let e: Exit = serde_json::from_str(r#"{"code": 0, "signal": null}"#).unwrap();
        assert!(e.stopped_by_rig);
        let e: Exit = serde_json::from_str(r#"{"signal": 9, "stopped_by_rig": false}"#).unwrap();
        assert_eq!((e.code, e.signal, e.stopped_by_rig), (None, Some(9), false));
    }
}
