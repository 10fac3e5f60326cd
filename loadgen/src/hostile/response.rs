//! Just enough of an HTTP/1.1 response reader for attackers: the status line, the body's
//! framing, and skipping the body. Lines and heads are bounded, so a server (or a bug) cannot
//! make an attacker buffer without end.

use std::io::{Error, ErrorKind};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest line of a response head.
const MAX_LINE: usize = 8 * 1024;
/// Most header lines in one head.
const MAX_HEADERS: usize = 100;

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    /// Neither: the body runs to the connection's end (not reusable).
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Bytes of the head itself.
    pub bytes: usize,
}

/// The status code of a status line (`HTTP/1.1 413 Payload Too Large`).
pub(crate) fn status_of(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line.get(..line.len().min(64))?).ok()?;
    let mut words = text.split_ascii_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.get(..3)?.parse().ok()
}

/// Reads one response head; `Ok(None)` when the connection ended before any byte of it.
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Head>> {
    let mut line = Vec::new();
    let mut bytes = read_line(r, &mut line).await?;
    if bytes == 0 {
        return Ok(None);
    }
    let status = status_of(&line).ok_or_else(|| invalid("not an HTTP/1.x status line"))?;
    let mut framing = Framing::UntilClose;
    for _ in 0..MAX_HEADERS {
        line.clear();
        let n = read_line(r, &mut line).await?;
        if n == 0 {
            return Err(Error::from(ErrorKind::UnexpectedEof));
        }
        bytes += n;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            // 1xx, 204 and 304 have no body whatever the headers say.
            if status < 200 || status == 204 || status == 304 {
                framing = Framing::Length(0);
            }
            return Ok(Some(Head {
                status,
                framing,
                bytes,
            }));
        }
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| invalid("bad Content-Length"))?;
            framing = Framing::Length(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        }
    }
    Err(invalid("more than 100 header lines"))
}

/// Reads and drops the body after `head`; returns its bytes on the wire.
pub(crate) async fn skip_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    framing: Framing,
) -> std::io::Result<u64> {
    match framing {
        Framing::Length(n) => skip(r, n).await,
        Framing::UntilClose => tokio::io::copy(r, &mut tokio::io::sink()).await,
        Framing::Chunked => {
            let mut total = 0;
            let mut line = Vec::new();
            loop {
                line.clear();
                total += read_line(r, &mut line).await? as u64;
                let text = String::from_utf8_lossy(&line);
                let size = text.trim().split(';').next().unwrap_or_default();
                let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                // The chunk and its CRLF; the last chunk's CRLF ends the body (no trailers).
                total += skip(r, size + 2).await?;
                if size == 0 {
                    return Ok(total);
                }
            }
        }
    }
}

async fn skip<R: AsyncBufRead + Unpin>(r: &mut R, n: u64) -> std::io::Result<u64> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(Error::from(ErrorKind::UnexpectedEof));
    }
    Ok(copied)
}

/// One line, CRLF included, at most `MAX_LINE` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = r.take(MAX_LINE as u64).read_until(b'\n', line).await?;
    if n == MAX_LINE && line.last() != Some(&b'\n') {
        return Err(invalid("a response line over 8 KiB"));
    }
    Ok(n)
}

fn invalid(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_pipelined_responses() {
        let wire = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1\r\n\r\nx\
HTTP/1.1 429 Too Many Requests\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        let mut r = tokio::io::BufReader::new(&wire[..]);
        let head = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!((head.status, head.framing), (206, Framing::Length(1)));
        assert_eq!(skip_body(&mut r, head.framing).await.unwrap(), 1);
        let head = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!((head.status, head.framing), (429, Framing::Chunked));
        skip_body(&mut r, head.framing).await.unwrap();
        let head = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!((head.status, head.framing), (204, Framing::Length(0)));
        assert_eq!(read_head(&mut r).await.unwrap(), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 413 Payload Too Large\r\n"), Some(413));
        assert_eq!(status_of(b"SSH-2.0"), None);
        assert_eq!(status_of(b""), None);
    }
}
