//! The lines `share-server` prints on stdout once it listens: the one place
//! their wording lives. The server prints them with [`listening`] and
//! [`debug_listening`]; the rig (`profiling`) and the tests (`testkit`) read
//! them back with [`parse_listening`] and [`parse_debug_listening`].

const LISTENING: &str = "share-server listening on ";
const DEBUG_LISTENING: &str = "share-server debug listening on ";

/// The line announcing the main listener at `url` (`http://host:port`).
pub fn listening(url: &str) -> String {
    format!("{LISTENING}{url}")
}

/// The line announcing the debug listener at `url`.
pub fn debug_listening(url: &str) -> String {
    format!("{DEBUG_LISTENING}{url}")
}

/// The main listener's URL from its line, or `None` for any other line.
pub fn parse_listening(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING).map(str::trim)
}

/// The debug listener's URL from its line, or `None` for any other line.
pub fn parse_debug_listening(line: &str) -> Option<&str> {
    line.trim().strip_prefix(DEBUG_LISTENING).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let url = "http://127.0.0.1:4000";
        assert_eq!(parse_listening(&format!("{}\n", listening(url))), Some(url));
        assert_eq!(parse_debug_listening(&debug_listening(url)), Some(url));
        assert_eq!(parse_listening(&debug_listening(url)), None);
        assert_eq!(parse_debug_listening(&listening(url)), None);
    }
}
