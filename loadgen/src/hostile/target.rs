//! The server under attack: its address, which must be on this machine (loopback), and the
//! one check that tells "refusing the attacker" from "gone".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// A fresh connect that neither succeeds nor is refused within this counts as "alive but busy".
const GONE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The loopback address and `Host` header of `host`, or why an attack may not go there.
pub(crate) fn resolve(host: &str) -> Result<(SocketAddr, String), String> {
    let url = reqwest::Url::parse(host).map_err(|e| format!("host {host:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "host {host:?}: attacks speak plain http:// (raw sockets, no TLS)"
        ));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("host {host:?} has no port"))?;
    let name = url.host_str().unwrap_or_default();
    let ip = match name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => ip,
        Err(_) if name == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Err(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    if !ip.is_loopback() {
        return Err(format!(
            "host {host:?} is not a loopback address: attack scenarios only run against this \
             machine (127.0.0.0/8, ::1 or localhost)"
        ));
    }
    let authority = match url.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    };
    Ok((SocketAddr::new(ip, port), authority))
}

/// The server is gone: a fresh connection from the default address (127.0.0.1) is refused.
/// A full backlog (a timeout) is a busy server, not a gone one.
pub(crate) async fn gone(target: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(GONE_CHECK_TIMEOUT, TcpStream::connect(target)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        let (addr, host) = resolve("http://127.0.0.1:4001").unwrap();
        assert_eq!(addr, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(host, "127.0.0.1:4001");
        assert_eq!(resolve("http://localhost:80/").unwrap().1, "localhost");
        assert!(resolve("http://[::1]:9").is_ok());
        for bad in [
            "http://10.1.2.3:4001",
            "http://example.com",
            "https://127.0.0.1:1",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
        assert!(
            resolve("http://192.168.1.1:1")
                .unwrap_err()
                .contains("loopback")
        );
    }
}
