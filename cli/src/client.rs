//! A small blocking HTTP/1.1 client for the command-line commands (and the
//! tests): one request per connection, plain HTTP to a beaver server.
//!
//! beaver listens on loopback by default; to reach it across machines, put
//! a TLS proxy in front and use its address. `https://` is refused with a
//! message saying so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A server to talk to.
#[derive(Debug, Clone)]
pub struct Server {
    /// The URL as given, for messages.
    pub url: String,
    host: String,
    addrs: Vec<SocketAddr>,
    token: Option<String>,
    timeout: Duration,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error message of an `{"error": {...}}` body, else the body.
    pub fn error_message(&self) -> String {
        match serde_json::from_slice::<crate::schema::ErrorDoc>(&self.body) {
            Ok(d) => d.error.message,
            Err(_) => self.text().trim().to_string(),
        }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing answered: the request was not sent.
    Unreachable(String),
    /// The connection failed after the request (or part of it) was sent:
    /// the server may or may not have acted on it.
    Lost(String),
    /// The URL is unusable.
    BadUrl(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(m) | ClientError::Lost(m) | ClientError::BadUrl(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl Server {
    /// Parses `http://HOST:PORT` (or `HOST:PORT`).
    pub fn new(url: &str, token: Option<String>) -> Result<Server, ClientError> {
        let bad = |why: &str| ClientError::BadUrl(format!("--server {url}: {why}"));
        if url.starts_with("https://") {
            return Err(bad(
                "beaver speaks plain HTTP; put a TLS proxy in front of it and give the proxy's http:// address, or use an SSH tunnel",
            ));
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(bad("give http://HOST:PORT, such as http://127.0.0.1:7070"));
        }
        let addrs: Vec<SocketAddr> = host
            .to_socket_addrs()
            .map_err(|e| {
                bad(&format!(
                    "{e}; give http://HOST:PORT, such as http://127.0.0.1:7070"
                ))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(bad("it names no address"));
        }
        Ok(Server {
            url: url.to_string(),
            host: host.to_string(),
            addrs,
            token,
            timeout: Duration::from_secs(60),
        })
    }

    /// The same server with another response timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Server {
        self.timeout = timeout;
        self
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &[u8]) -> Result<Response, ClientError> {
        self.request("POST", path, Some(("application/json", body)))
    }

    /// Any request; `body` is (content type, bytes).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, ClientError> {
        let mut stream = None;
        let mut last = None;
        for a in &self.addrs {
            match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            let why = last.map(|e| e.to_string()).unwrap_or_default();
            return Err(ClientError::Unreachable(format!(
                "no beaver server answering at {} ({why})",
                self.url
            )));
        };
        let lost = |e: std::io::Error| {
            ClientError::Lost(format!("the connection to {} failed: {e}", self.url))
        };
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(self.timeout)).map_err(lost)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(lost)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: beaver/{}\r\n",
            self.host,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body_bytes = match body {
            Some((ct, b)) => {
                head.push_str(&format!("Content-Type: {ct}\r\n"));
                b
            }
            None => &[][..],
        };
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body_bytes.len()));
        // A server may answer before it has read the whole body (413 for a
        // body over its limit) and close: the write then fails (broken pipe,
        // reset) while its answer waits to be read. Read it either way.
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body_bytes));
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            // A server answering early (413) may reset the connection after
            // its answer; keep what arrived if it is a whole response.
            if raw.is_empty() {
                return Err(lost(sent.err().unwrap_or(e)));
            }
        }
        if let Err(e) = sent {
            if parse_response(&raw).is_none() {
                return Err(lost(e));
            }
        }
        parse_response(&raw).ok_or_else(|| {
            ClientError::Lost(format!(
                "the connection to {} closed before a whole response arrived",
                self.url
            ))
        })
    }
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_parse() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(
            (r.status, r.header("retry-after"), r.body.as_slice()),
            (503, Some("2"), &b"hi"[..])
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_none());
        assert!(Server::new("https://x:1", None).is_err());
        assert!(Server::new("http://127.0.0.1:7070/", None).is_ok());
    }
}
