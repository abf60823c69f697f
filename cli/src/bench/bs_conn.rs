//! A small beanstalk client over one keep-alive `tokio` TCP stream, for the
//! Wb workloads: commands written as bytes, reply lines read into one
//! bounded buffer. Every unexpected reply is an error naming the workload
//! and the server (the connection's label), never a panic.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest reply line read (beanstalkd's replies to the benchmark's
/// commands are a few dozen bytes).
const LINE_BYTES_MAX: usize = 1_024;
/// The largest job body read back (a reserve's); the benchmark puts 100.
const BODY_BYTES_MAX: usize = 64 << 10;
/// The read buffer: a body, its line and its `\r\n` fit.
const READ_BYTES: usize = BODY_BYTES_MAX + LINE_BYTES_MAX + 2;

/// One reply, as far as the benchmark reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `INSERTED <id>`.
    Inserted(u64),
    /// `RESERVED <id> <bytes>` (its body read and dropped).
    Reserved(u64),
    /// `DELETED`.
    Deleted,
    /// `TIMED_OUT`.
    TimedOut,
    /// `USING <tube>`.
    Using,
    /// Anything else: the line.
    Other(String),
}

/// One connection.
pub struct BsConn {
    addr: SocketAddr,
    label: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// `buf[start..filled]` is read and not yet parsed.
    start: usize,
    filled: usize,
    out: Vec<u8>,
}

impl BsConn {
    /// A connection to `addr`, opened by [`BsConn::open`]; `label` (the
    /// workload and the server) starts every error message.
    pub fn new(addr: SocketAddr, label: &str) -> BsConn {
        BsConn {
            addr,
            label: label.to_string(),
            stream: None,
            buf: vec![0; READ_BYTES],
            start: 0,
            filled: 0,
            out: Vec::with_capacity(16 << 10),
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("{} ({}): {what}", self.label, self.addr)
    }

    /// Connects (no delay on small writes).
    pub async fn open(&mut self) -> Result<(), String> {
        let s = TcpStream::connect(self.addr)
            .await
            .map_err(|e| self.err(format!("cannot connect: {e}")))?;
        s.set_nodelay(true).map_err(|e| self.err(e))?;
        self.stream = Some(s);
        (self.start, self.filled) = (0, 0);
        Ok(())
    }

    /// Queues `put <pri> 0 <ttr> <n>\r\n<body>\r\n` (sent by the next
    /// [`BsConn::flush`]).
    pub fn push_put(&mut self, pri: u32, ttr: u32, body: &[u8]) {
        self.out
            .extend_from_slice(format!("put {pri} 0 {ttr} {}\r\n", body.len()).as_bytes());
        self.out.extend_from_slice(body);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Queues one command line (without its `\r\n`).
    pub fn push_line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> Result<(), String> {
        let Some(s) = self.stream.as_mut() else {
            return Err(self.err("not connected"));
        };
        let sent = s.write_all(&self.out).await;
        self.out.clear();
        sent.map_err(|e| self.err(format!("cannot send: {e}")))
    }

    /// Reads more bytes into the buffer (moving what is unparsed to its
    /// start when the end is reached).
    async fn fill(&mut self) -> Result<(), String> {
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
        } else if self.filled == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            (self.start, self.filled) = (0, self.filled - self.start);
        }
        if self.filled == self.buf.len() {
            return Err(self.err("a reply larger than the benchmark reads"));
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(self.err("not connected"));
        };
        let n = s
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|e| format!("{} ({}): cannot read: {e}", self.label, self.addr))?;
        if n == 0 {
            return Err(self.err("the server closed the connection"));
        }
        self.filled += n;
        Ok(())
    }

    /// Reads one reply line (and a reserved job's body).
    pub async fn reply(&mut self) -> Result<Reply, String> {
        let line = loop {
            let ready = &self.buf[self.start..self.filled];
            if let Some(pos) = ready.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&ready[..pos]).into_owned();
                self.start += pos + 2;
                break line;
            }
            if ready.len() > LINE_BYTES_MAX {
                return Err(self.err("a reply line longer than the benchmark reads"));
            }
            self.fill().await?;
        };
        let reply = parse(&line).ok_or_else(|| self.err(format!("unreadable reply `{line}`")))?;
        if let (Reply::Reserved(_), Some(bytes)) = (&reply, line.split(' ').nth(2)) {
            let bytes: usize = bytes
                .parse()
                .ok()
                .filter(|&b| b <= BODY_BYTES_MAX)
                .ok_or_else(|| self.err(format!("a reserved body too large: `{line}`")))?;
            // Bounded: each fill adds at least one byte, and the body fits.
            while self.filled - self.start < bytes + 2 {
                self.fill().await?;
            }
            if &self.buf[self.start + bytes..self.start + bytes + 2] != b"\r\n" {
                return Err(self.err(format!("a reserved body not ended by CRLF: `{line}`")));
            }
            self.start += bytes + 2;
        }
        Ok(reply)
    }

    /// Reads one reply and calls anything but `want` an error naming
    /// the command it answered.
    async fn expect(&mut self, command: &str, want: fn(&Reply) -> bool) -> Result<Reply, String> {
        let r = self.reply().await?;
        if want(&r) {
            Ok(r)
        } else {
            Err(self.err(format!("`{command}` answered {r:?}")))
        }
    }

    /// `use default`: the server serves.
    pub async fn hello(&mut self) -> Result<(), String> {
        self.push_line("use default");
        self.flush().await?;
        self.expect("use", |r| *r == Reply::Using).await?;
        Ok(())
    }

    /// `count` puts of `body` sent together, then their `count` replies,
    /// each `INSERTED`.
    pub async fn puts(
        &mut self,
        count: usize,
        pri: u32,
        ttr: u32,
        body: &[u8],
    ) -> Result<(), String> {
        for _ in 0..count {
            self.push_put(pri, ttr, body);
        }
        self.flush().await?;
        for _ in 0..count {
            self.expect("put", |r| matches!(r, Reply::Inserted(_)))
                .await?;
        }
        Ok(())
    }

    /// `reserve-with-timeout <secs>`, then `delete` of the job it gave:
    /// `false` if it timed out.
    pub async fn reserve_delete(&mut self, secs: u32) -> Result<bool, String> {
        self.push_line(&format!("reserve-with-timeout {secs}"));
        self.flush().await?;
        let id = match self
            .expect("reserve-with-timeout", |r| {
                matches!(r, Reply::Reserved(_) | Reply::TimedOut)
            })
            .await?
        {
            Reply::Reserved(id) => id,
            _ => return Ok(false),
        };
        self.push_line(&format!("delete {id}"));
        self.flush().await?;
        self.expect("delete", |r| *r == Reply::Deleted).await?;
        Ok(true)
    }
}

/// Parses a reply line; `None` if a known reply's numbers do not parse.
fn parse(line: &str) -> Option<Reply> {
    let mut words = line.split(' ');
    let first = words.next().unwrap_or("");
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    Some(match first {
        "INSERTED" => Reply::Inserted(number()?),
        "RESERVED" => {
            let id = number()?;
            number()?;
            Reply::Reserved(id)
        }
        "DELETED" => Reply::Deleted,
        "TIMED_OUT" => Reply::TimedOut,
        "USING" => Reply::Using,
        _ => Reply::Other(line.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(parse("INSERTED 17"), Some(Reply::Inserted(17)));
        assert_eq!(parse("RESERVED 3 100"), Some(Reply::Reserved(3)));
        assert_eq!(parse("RESERVED 3"), None);
        assert_eq!(parse("INSERTED x"), None);
        assert_eq!(parse("DELETED"), Some(Reply::Deleted));
        assert_eq!(parse("TIMED_OUT"), Some(Reply::TimedOut));
        assert_eq!(parse("USING default"), Some(Reply::Using));
        assert_eq!(
            parse("JOB_TOO_BIG"),
            Some(Reply::Other("JOB_TOO_BIG".into()))
        );
    }

    #[test]
    fn a_pipelined_exchange_reads_every_reply() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while got.windows(2).filter(|w| w == b"\r\n").count() < 6 {
                    let n = s.read(&mut b).await.unwrap();
                    got.extend_from_slice(&b[..n]);
                }
                // Replies split at odd places.
                let all = b"INSERTED 1\r\nINSERTED 2\r\nINSERTED 3\r\nRESERVED 1 3\r\nabc\r\nDELETED\r\nBAD_FORMAT\r\n";
                for chunk in all.chunks(7) {
                    s.write_all(chunk).await.unwrap();
                }
                // Until the client closes (bounded by the test's end).
                while s.read(&mut b).await.is_ok_and(|n| n > 0) {}
            });
            let mut c = BsConn::new(addr, "Wb test");
            c.open().await.unwrap();
            c.puts(3, 1, 60, b"xyz").await.unwrap();
            assert!(c.reserve_delete(1).await.unwrap());
            let e = c.hello().await.unwrap_err();
            assert!(e.starts_with("Wb test (") && e.contains("BAD_FORMAT"), "{e}");
            drop(c);
            server.await.unwrap();
        });
    }
}
