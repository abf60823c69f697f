//! A client connection for the tests: raw bytes out, and everything
//! received kept, so a test can match replies byte by byte and report what
//! came.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most a test connection keeps of what it receives.
const RECEIVED_BYTES_MAX: usize = 16 << 20;

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    /// Every byte received so far.
    pub received: Vec<u8>,
    /// How much of `received` the test has consumed.
    pub consumed: usize,
    /// Whether the server closed its side.
    pub eof: bool,
}

impl Conn {
    /// Connects (within 5 s).
    pub fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            received: Vec::new(),
            consumed: 0,
            eof: false,
        })
    }

    /// Sends all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("send: {e}"))
    }

    /// Closes the sending side (the server sees a half-closed connection).
    pub fn shutdown_write(&mut self) -> Result<(), String> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))
    }

    /// The received bytes not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.received[self.consumed..]
    }

    /// Reads whatever arrives before `deadline` (at least one read, even
    /// past it). Returns false when nothing new came.
    pub fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                if self.received.len() + n > RECEIVED_BYTES_MAX {
                    return Err("the server sent more than 16 MiB".into());
                }
                self.received.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            // A signal that interrupted the read (EINTR) is no answer
            // either: the caller reads again until its deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Waits until at least `n` unconsumed bytes are there, or the deadline
    /// passes or the server closes (false).
    pub fn want(&mut self, n: usize, deadline: Instant) -> Result<bool, String> {
        while self.pending().len() < n {
            if self.eof || Instant::now() >= deadline {
                return Ok(false);
            }
            self.fill(deadline)?;
        }
        Ok(true)
    }

    /// Reads one whole reply (its line, and the data block that `RESERVED`,
    /// `FOUND` and `OK` announce) and consumes it.
    pub fn read_reply(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        let line_len = loop {
            if let Some(p) = self.pending().windows(2).position(|w| w == b"\r\n") {
                break p + 2;
            }
            if self.eof {
                return Err(format!(
                    "closed after {:?}",
                    String::from_utf8_lossy(self.pending())
                ));
            }
            if Instant::now() >= deadline || self.pending().len() > 1024 {
                return Err(format!(
                    "no reply line within {within:?}: {:?}",
                    String::from_utf8_lossy(self.pending())
                ));
            }
            self.fill(deadline)?;
        };
        let line = &self.pending()[..line_len - 2];
        let data = data_len(line).map_or(0, |n| n + 2);
        if !self.want(line_len + data, deadline)? {
            return Err(format!(
                "reply data missing: {:?}",
                String::from_utf8_lossy(self.pending())
            ));
        }
        let reply = self.pending()[..line_len + data].to_vec();
        self.consumed += line_len + data;
        Ok(reply)
    }
}

/// Sends `cmds` in turn on a new connection to `addr`, each after the
/// reply to the one before; the last reply, whole, as text.
pub fn last_reply(addr: SocketAddr, cmds: &[&str]) -> String {
    let mut c = Conn::connect(addr).expect("connect");
    let mut reply = Vec::new();
    for cmd in cmds {
        c.send(cmd.as_bytes()).expect("send");
        reply = c.read_reply(Duration::from_secs(10)).expect("reply");
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The value of `key` in the YAML document `cmd` is answered with, on a
/// new connection to `addr`.
pub fn yaml_value(addr: SocketAddr, cmd: &str, key: &str) -> String {
    let text = last_reply(addr, &[cmd]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the answer to {cmd:?}: {text}"))
        .to_string()
}

/// The size of the data block a reply line announces, if it announces one.
pub fn data_len(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    let n = match words.next()? {
        "RESERVED" | "FOUND" => words.nth(1)?,
        "OK" => words.next()?,
        _ => return None,
    };
    n.parse().ok()
}
