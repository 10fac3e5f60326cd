//! The server's `/debug/stats` over loopback: HTTP/1.0 on a plain socket
//! (std only), bounded in time by half the sampling interval and in size.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The stats JSON is a few KiB; a larger answer is dropped.
const MAX_RESPONSE: u64 = 1 << 20;

pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
}

impl Client {
    pub fn new(port: u16, interval: Duration) -> Client {
        Client {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            timeout: (interval / 2).max(Duration::from_millis(5)),
        }
    }

    /// The JSON body on one line, or `None` when the server did not answer
    /// 200 within the timeout (busy, starting, gone).
    pub fn fetch(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout).ok()?;
        stream.set_read_timeout(Some(self.timeout)).ok()?;
        stream.set_write_timeout(Some(self.timeout)).ok()?;
        stream
            .write_all(b"GET /debug/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut response = Vec::new();
        stream
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut response)
            .ok()?;
        if response.len() as u64 > MAX_RESPONSE {
            return None;
        }
        body(&response)
    }
}

/// The body of a 200 response, newlines turned to spaces (JSON allows
/// whitespace there; inside strings they are escaped).
fn body(response: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    if status.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    Some(body.trim().replace(['\r', '\n'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_body_counts() {
        let ok = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\":\n1}\n";
        assert_eq!(body(ok).as_deref(), Some("{\"a\": 1}"));
        assert_eq!(body(b"HTTP/1.0 503 Busy\r\n\r\n{}"), None);
        assert_eq!(body(b"HTTP/1.0 200 OK\r\n"), None);
    }

    #[test]
    fn a_real_loopback_server_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = s.read(&mut request).unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n{\"allocator\":{}}")
                .unwrap();
        });
        let client = Client::new(port, Duration::from_secs(4));
        assert_eq!(client.fetch().as_deref(), Some("{\"allocator\":{}}"));
        server.join().unwrap();
    }
}
