//! Everything a beanstalkd server answers, encoded byte for byte.

use super::TubeName;

/// One reply. Bodies and YAML documents are borrowed: encoding copies them
/// once, into the caller's output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `INSERTED <id>`: a `put` stored its job.
    Inserted(u64),
    /// `BURIED <id>`: a `put` stored its job buried (beanstalkd: out of
    /// memory for the ready queue).
    BuriedNew(u64),
    /// `BURIED`: `bury` succeeded, or `release` buried the job.
    Buried,
    /// `USING <tube>`: the tube now used (`use`, `list-tube-used`).
    Using(&'a TubeName),
    /// `RESERVED <id> <bytes>` and the body.
    Reserved {
        /// The job.
        id: u64,
        /// Its body.
        body: &'a [u8],
    },
    /// `FOUND <id> <bytes>` and the body (the `peek` commands).
    Found {
        /// The job.
        id: u64,
        /// Its body.
        body: &'a [u8],
    },
    /// `DEADLINE_SOON`: a job this connection reserved is in its last
    /// second.
    DeadlineSoon,
    /// `TIMED_OUT`: no job came within the timeout.
    TimedOut,
    /// `DELETED`.
    Deleted,
    /// `NOT_FOUND`.
    NotFound,
    /// `RELEASED`.
    Released,
    /// `TOUCHED`.
    Touched,
    /// `WATCHING <count>`: how many tubes the connection now watches.
    Watching(u64),
    /// `NOT_IGNORED`: the connection tried to ignore its last tube.
    NotIgnored,
    /// `KICKED <count>` (`kick`).
    Kicked(u64),
    /// `KICKED` (`kick-job`).
    KickedJob,
    /// `OK <bytes>` and a YAML document (see [`super::stats`]).
    Ok(&'a [u8]),
    /// `PAUSED`.
    Paused,
    /// `OUT_OF_MEMORY`: a limit refused the request.
    OutOfMemory,
    /// `INTERNAL_ERROR`.
    InternalError,
    /// `BAD_FORMAT`.
    BadFormat,
    /// `UNKNOWN_COMMAND`.
    UnknownCommand,
    /// `EXPECTED_CRLF`.
    ExpectedCrlf,
    /// `JOB_TOO_BIG`.
    JobTooBig,
    /// `DRAINING`: the server takes no new jobs.
    Draining,
}

impl Reply<'_> {
    /// Appends the reply, CRLFs included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = match self {
            Reply::Inserted(id) => write!(out, "INSERTED {id}\r\n"),
            Reply::BuriedNew(id) => write!(out, "BURIED {id}\r\n"),
            Reply::Using(tube) => write!(out, "USING {tube}\r\n"),
            Reply::Reserved { id, body } => with_body(out, format_args!("RESERVED {id}"), body),
            Reply::Found { id, body } => with_body(out, format_args!("FOUND {id}"), body),
            Reply::Watching(n) => write!(out, "WATCHING {n}\r\n"),
            Reply::Kicked(n) => write!(out, "KICKED {n}\r\n"),
            Reply::Ok(doc) => with_body(out, format_args!("OK"), doc),
            fixed => {
                out.extend_from_slice(fixed.word().as_bytes());
                out.extend_from_slice(b"\r\n");
                Ok(())
            }
        };
    }

    /// The encoded reply, for tests and one-off uses.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The reply's first word (all of it for a reply without arguments).
    pub fn word(&self) -> &'static str {
        match self {
            Reply::Buried => "BURIED",
            Reply::DeadlineSoon => "DEADLINE_SOON",
            Reply::TimedOut => "TIMED_OUT",
            Reply::Deleted => "DELETED",
            Reply::NotFound => "NOT_FOUND",
            Reply::Released => "RELEASED",
            Reply::Touched => "TOUCHED",
            Reply::NotIgnored => "NOT_IGNORED",
            Reply::KickedJob => "KICKED",
            Reply::Paused => "PAUSED",
            Reply::OutOfMemory => "OUT_OF_MEMORY",
            Reply::InternalError => "INTERNAL_ERROR",
            Reply::BadFormat => "BAD_FORMAT",
            Reply::UnknownCommand => "UNKNOWN_COMMAND",
            Reply::ExpectedCrlf => "EXPECTED_CRLF",
            Reply::JobTooBig => "JOB_TOO_BIG",
            Reply::Draining => "DRAINING",
            Reply::Inserted(_) => "INSERTED",
            Reply::BuriedNew(_) => "BURIED",
            Reply::Using(_) => "USING",
            Reply::Reserved { .. } => "RESERVED",
            Reply::Found { .. } => "FOUND",
            Reply::Watching(_) => "WATCHING",
            Reply::Kicked(_) => "KICKED",
            Reply::Ok(_) => "OK",
        }
    }
}

/// `<head> <len>\r\n<data>\r\n`.
fn with_body(out: &mut Vec<u8>, head: std::fmt::Arguments<'_>, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    write!(out, "{head} {}\r\n", data.len())?;
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_beanstalkds_bytes() {
        let tube = TubeName::default_tube();
        let cases: [(Reply<'_>, &[u8]); 8] = [
            (Reply::Inserted(7), b"INSERTED 7\r\n"),
            (Reply::BuriedNew(7), b"BURIED 7\r\n"),
            (Reply::Buried, b"BURIED\r\n"),
            (Reply::Using(&tube), b"USING default\r\n"),
            (
                Reply::Reserved {
                    id: 3,
                    body: b"a\r\nb",
                },
                b"RESERVED 3 4\r\na\r\nb\r\n",
            ),
            (Reply::Found { id: 3, body: b"" }, b"FOUND 3 0\r\n\r\n"),
            (
                Reply::Ok(b"---\n- default\n"),
                b"OK 14\r\n---\n- default\n\r\n",
            ),
            (Reply::KickedJob, b"KICKED\r\n"),
        ];
        for (reply, bytes) in cases {
            assert_eq!(reply.to_bytes(), bytes, "{reply:?}");
        }
    }
}
