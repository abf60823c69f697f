//! A minimal HTTP/1.1 keep-alive client over one `tokio` TCP stream, for
//! the benchmark's load: one request in flight, requests prebuilt as bytes,
//! one reusable read buffer, no allocation per request.
//!
//! Not a general client: it speaks to beaver only, whose answers always
//! carry `Content-Length` (axum sets it for every body beaver sends).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head or body read; beaver's answers to the
/// benchmark's requests are far smaller.
const RESPONSE_BYTES_MAX: usize = 64 << 20;

/// Builds a request's bytes once, to be sent many times.
pub fn request(method: &str, path: &str, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    match body {
        Some((content_type, b)) => {
            out.extend_from_slice(
                format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Bytes of `buf` holding data.
    filled: usize,
}

/// The status and body of one response (the body borrows the connection's
/// buffer until the next call).
pub struct Answer<'a> {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: &'a [u8],
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

impl Conn {
    /// A connection to `addr`, opened at the first call.
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: vec![0; 16 << 10],
            filled: 0,
        }
    }

    /// Opens the connection now (so connecting is not timed with the first
    /// request).
    pub async fn open(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.filled = 0;
        }
        Ok(())
    }

    /// Sends `req` and reads its response. On an error the connection is
    /// dropped (the next call opens a new one).
    pub async fn call(&mut self, req: &[u8]) -> io::Result<Answer<'_>> {
        match self.exchange(req).await {
            Ok((status, start, end, close)) => {
                if close {
                    self.stream = None;
                }
                Ok(Answer {
                    status,
                    body: self.buf.get(start..end).unwrap_or(&[]),
                })
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// (status, body start, body end, the server closes the connection).
    async fn exchange(&mut self, req: &[u8]) -> io::Result<(u16, usize, usize, bool)> {
        self.open().await?;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        // One request in flight: nothing of an earlier response is left.
        self.filled = 0;
        stream.write_all(req).await?;
        let mut head: Option<(u16, usize, usize, bool)> = None;
        loop {
            if head.is_none() {
                head = parse_head(&self.buf[..self.filled])?;
            }
            if let Some((status, head_len, body_len, close)) = head {
                let end = head_len + body_len;
                if self.filled >= end {
                    return Ok((status, head_len, end, close));
                }
                if self.buf.len() < end {
                    if end > RESPONSE_BYTES_MAX {
                        return Err(bad("response larger than the benchmark reads"));
                    }
                    self.buf.resize(end, 0);
                }
            } else if self.filled == self.buf.len() {
                if self.buf.len() >= RESPONSE_BYTES_MAX {
                    return Err(bad("response head larger than the benchmark reads"));
                }
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before a whole response",
                ));
            }
            self.filled += n;
        }
    }
}

/// Parses a response head: `None` if incomplete, else (status, head
/// length, body length, `Connection: close`).
fn parse_head(b: &[u8]) -> io::Result<Option<(u16, usize, usize, bool)>> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&b[..end]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut len = None;
    let mut close = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not read by the benchmark"));
        }
    }
    let len = len.ok_or_else(|| bad("response without Content-Length"))?;
    Ok(Some((status, end + 4, len, close)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heads_parse() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
                .unwrap()
                .is_none()
        );
        let h =
            parse_head(b"HTTP/1.1 503 Busy\r\ncontent-length: 12\r\nConnection: close\r\n\r\nxx")
                .unwrap()
                .unwrap();
        assert_eq!(h, (503, 60, 12, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
