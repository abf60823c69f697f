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
        // Written by hand, not with `write!`: this runs for every reply,
        // and the formatting machinery cost more than the rest of it.
        match self {
            Reply::Using(tube) => {
                out.extend_from_slice(b"USING ");
                out.extend_from_slice(tube.as_str().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Reserved { id, body } | Reply::Found { id, body } => {
                with_body(out, self.word(), Some(*id), body);
            }
            Reply::Ok(doc) => with_body(out, self.word(), None, doc),
            Reply::Inserted(n) | Reply::BuriedNew(n) | Reply::Watching(n) | Reply::Kicked(n) => {
                out.extend_from_slice(self.word().as_bytes());
                out.push(b' ');
                push_decimal(out, *n);
                out.extend_from_slice(b"\r\n");
            }
            fixed => {
                out.extend_from_slice(fixed.word().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The encoded reply in a buffer of its own, allocated once at its
    /// final size (the server answers every command through it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_max());
        self.encode(&mut out);
        out
    }

    /// At least the encoded reply's length (what [`Reply::to_bytes`]
    /// allocates, so that encoding never grows its buffer).
    fn encoded_len_max(&self) -> usize {
        match self {
            Reply::Reserved { body, .. } | Reply::Found { body, .. } | Reply::Ok(body) => {
                HEAD_MAX + body.len()
            }
            Reply::Using(tube) => HEAD_MAX + tube.as_str().len(),
            _ => HEAD_MAX,
        }
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

/// The most bytes of a reply besides its body or tube name: the longest
/// word, two numbers of 20 digits, their spaces and two CRLFs.
const HEAD_MAX: usize = 15 + 2 * 21 + 4;

/// `<word>[ <id>] <len>\r\n<data>\r\n`.
fn with_body(out: &mut Vec<u8>, word: &str, id: Option<u64>, data: &[u8]) {
    out.reserve(HEAD_MAX + data.len());
    out.extend_from_slice(word.as_bytes());
    if let Some(id) = id {
        out.push(b' ');
        push_decimal(out, id);
    }
    out.push(b' ');
    push_decimal(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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

    #[test]
    fn numbers_are_written_in_decimal_as_format_writes_them() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let body = vec![b'x'; (n % 300) as usize];
            let cases = [
                (Reply::Inserted(n), format!("INSERTED {n}\r\n")),
                (Reply::BuriedNew(n), format!("BURIED {n}\r\n")),
                (Reply::Watching(n), format!("WATCHING {n}\r\n")),
                (Reply::Kicked(n), format!("KICKED {n}\r\n")),
                (
                    Reply::Reserved { id: n, body: &body },
                    format!(
                        "RESERVED {n} {}\r\n{}\r\n",
                        body.len(),
                        "x".repeat(body.len())
                    ),
                ),
            ];
            for (reply, text) in cases {
                assert_eq!(reply.to_bytes(), text.as_bytes(), "{reply:?}");
            }
        }
    }

    #[test]
    fn to_bytes_allocates_once_for_every_reply() {
        let tube = TubeName::default_tube();
        let body = vec![b'y'; 65_535];
        let replies = [
            Reply::Inserted(u64::MAX),
            Reply::Using(&tube),
            Reply::Reserved {
                id: u64::MAX,
                body: &body,
            },
            Reply::Found {
                id: u64::MAX,
                body: &body,
            },
            Reply::Ok(&body),
            Reply::UnknownCommand,
            Reply::DeadlineSoon,
        ];
        for reply in replies {
            let want = reply.encoded_len_max();
            let mut out = Vec::with_capacity(want);
            reply.encode(&mut out);
            let word = reply.word();
            assert!(out.len() <= want, "{word}: {} > {want}", out.len());
            assert_eq!(out.capacity(), want, "{word}: the buffer grew");
        }
    }
}
