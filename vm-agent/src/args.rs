//! The command line, set by the guest's `/init`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "usage: sharerig-agent --port DEV --log DEV --interval-ms N --data DIR \
                         --debug-port PORT -- SERVER [ARGS...]";

#[derive(Debug)]
pub struct Args {
    /// The virtio-serial port to the rig (samples out, commands in).
    pub port: PathBuf,
    /// The virtio-serial port for the server's stdout and stderr.
    pub log: PathBuf,
    pub interval: Duration,
    /// The server's data directory (the database files' sizes).
    pub data: PathBuf,
    /// The server's debug listener on 127.0.0.1 (`/debug/stats`).
    pub debug_port: u16,
    /// The server's command line.
    pub server: Vec<OsString>,
}

impl Args {
    pub fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
        let (mut port, mut log, mut interval, mut data, mut debug_port) =
            (None, None, None, None, None);
        while let Some(flag) = args.next() {
            if flag == "--" {
                break;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
            let number = |what: &str| {
                value
                    .to_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("{what} must be a number, not {value:?}"))
            };
            match flag.to_str() {
                Some("--port") => port = Some(PathBuf::from(&value)),
                Some("--log") => log = Some(PathBuf::from(&value)),
                Some("--data") => data = Some(PathBuf::from(&value)),
                Some("--interval-ms") => {
                    interval = Some(Duration::from_millis(number("--interval-ms")?.max(10)))
                }
                Some("--debug-port") => {
                    debug_port = Some(
                        u16::try_from(number("--debug-port")?)
                            .map_err(|_| "--debug-port is not a port".to_owned())?,
                    )
                }
                _ => return Err(format!("unknown flag {flag:?}")),
            }
        }
        let server: Vec<OsString> = args.collect();
        if server.is_empty() {
            return Err("no server command after --".into());
        }
        let missing = |name: &str| format!("{name} is required");
        Ok(Args {
            port: port.ok_or_else(|| missing("--port"))?,
            log: log.ok_or_else(|| missing("--log"))?,
            interval: interval.ok_or_else(|| missing("--interval-ms"))?,
            data: data.ok_or_else(|| missing("--data"))?,
            debug_port: debug_port.ok_or_else(|| missing("--debug-port"))?,
            server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        Args::parse(line.split(' ').map(OsString::from))
    }

    #[test]
    fn flags_then_the_server_command() {
        let a = parse(
            "--port /dev/vport1p1 --log /dev/vport1p2 --interval-ms 250 --data /mnt/data \
             --debug-port 6060 -- /bin/share-server --regression buffered-multipart",
        )
        .unwrap();
        assert_eq!(a.port, PathBuf::from("/dev/vport1p1"));
        assert_eq!(a.interval, Duration::from_millis(250));
        assert_eq!(a.debug_port, 6060);
        assert_eq!(a.server.len(), 3);
        assert_eq!(a.server[2], "buffered-multipart");
    }

    #[test]
    fn missing_or_bad_values_are_named() {
        assert!(parse("--port p -- s").unwrap_err().contains("--log"));
        assert!(
            parse("--port p --log l --interval-ms x --data d --debug-port 1 -- s")
                .unwrap_err()
                .contains("--interval-ms")
        );
        assert!(
            parse("--port p --log l --interval-ms 1 --data d --debug-port 1")
                .unwrap_err()
                .contains("no server")
        );
    }
}
