//! Cutting a connection's byte stream into commands, bounded, exactly as
//! beanstalkd 1.12 does.

use super::command::{Command, Line, Verb, parse_line};
use super::reply::Reply;
use super::{JOB_BYTES_MAX_LIMIT, LINE_BYTES_MAX};

/// An error line beanstalkd answers to a malformed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `BAD_FORMAT`: a malformed line, a bad number or name, or a line
    /// longer than [`LINE_BYTES_MAX`].
    BadFormat,
    /// `UNKNOWN_COMMAND`: the line starts with no command's name.
    UnknownCommand,
    /// `EXPECTED_CRLF`: a `put` body was not followed by CRLF. The two
    /// bytes after the body are consumed anyway. beanstalkd has already
    /// given the job an id by then, so the id is used up.
    ExpectedCrlf,
    /// `JOB_TOO_BIG`: a `put` announced more than the largest job; its
    /// body (and two more bytes) has been read and dropped.
    JobTooBig,
}

impl ProtocolError {
    /// The reply to send.
    pub fn reply(self) -> Reply<'static> {
        match self {
            ProtocolError::BadFormat => Reply::BadFormat,
            ProtocolError::UnknownCommand => Reply::UnknownCommand,
            ProtocolError::ExpectedCrlf => Reply::ExpectedCrlf,
            ProtocolError::JobTooBig => Reply::JobTooBig,
        }
    }
}

/// A refused request: the error to answer, and the `cmd-*` counter
/// beanstalkd bumps for it anyway (a `put` refused after its numbers were
/// read, a `pause-tube` whose name is refused after its delay was read;
/// `None` for every other refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What went wrong.
    pub error: ProtocolError,
    /// The command whose counter beanstalkd increments, if any.
    pub counted_as: Option<Verb>,
}

impl Refusal {
    pub(super) fn new(error: ProtocolError, counted_as: Option<Verb>) -> Refusal {
        Refusal { error, counted_as }
    }

    /// The reply to send.
    pub fn reply(&self) -> Reply<'static> {
        self.error.reply()
    }
}

/// What the framer made of the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A well-formed command, body included for `put`.
    Command(Command),
    /// A request to answer with an error; the connection goes on.
    Refused(Refusal),
}

/// Where the framer is in the stream.
#[derive(Debug)]
enum State {
    /// Reading a command line.
    Line,
    /// Dropping the rest of a line that outgrew [`LINE_BYTES_MAX`]; its end
    /// earns one `BAD_FORMAT`.
    DiscardLine,
    /// Reading a `put` body and its CRLF.
    Body {
        pri: u32,
        delay_s: u32,
        ttr_s: u32,
        bytes: u32,
        body: Vec<u8>,
    },
    /// Dropping the body of a `put` that was too big.
    Skip { remaining: u64 },
}

/// Turns the bytes of one connection into [`Frame`]s, exactly as beanstalkd
/// 1.12 reads them, whatever the chunking.
///
/// beanstalkd reads a command line into a buffer of [`LINE_BYTES_MAX`]
/// bytes and ends the line at the *first* `\r` of the buffer, and only if
/// a `\n` follows it. So `stats\r\r\n` is not a line: nothing is answered
/// until the buffer is full. A full buffer with no line end is dropped,
/// and so is everything after it up to the next line end (found the same
/// way, within the next buffer-full); then one `BAD_FORMAT` is answered.
/// A CRLF split across two buffer-fulls is not a line end.
///
/// The framer keeps at most [`LINE_BYTES_MAX`] bytes of a line and
/// `job_bytes_max + 2` bytes of a body; it never panics, whatever the
/// bytes.
#[derive(Debug)]
pub struct Framer {
    job_bytes_max: u32,
    state: State,
    /// The start of the current line window when it came in several
    /// pushes; always shorter than [`LINE_BYTES_MAX`] and without a line
    /// end.
    line: Vec<u8>,
}

/// The length of the command line at the start of `window` (CRLF
/// included), found as beanstalkd finds it: the first `\r` must be
/// followed by `\n`.
fn line_end(window: &[u8]) -> Option<usize> {
    let searched = window.len().checked_sub(1)?;
    let cr = window[..searched].iter().position(|&b| b == b'\r')?;
    (window[cr + 1] == b'\n').then_some(cr + 2)
}

impl Framer {
    /// A framer for one connection; bodies over `job_bytes_max` bytes
    /// (clamped to [`JOB_BYTES_MAX_LIMIT`]) are refused with `JOB_TOO_BIG`.
    pub fn new(job_bytes_max: u32) -> Framer {
        Framer {
            job_bytes_max: job_bytes_max.min(JOB_BYTES_MAX_LIMIT),
            state: State::Line,
            line: Vec::new(),
        }
    }

    /// The largest body this framer accepts, in bytes.
    pub fn job_bytes_max(&self) -> u32 {
        self.job_bytes_max
    }

    /// Bytes held for a request not yet complete; at most
    /// `LINE_BYTES_MAX` or `job_bytes_max + 2`.
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Body { body, .. } => body.len(),
            _ => self.line.len(),
        }
    }

    /// Whether the stream is between requests (nothing of a next request
    /// received yet).
    pub fn is_between_requests(&self) -> bool {
        matches!(self.state, State::Line) && self.line.is_empty()
    }

    /// Takes bytes from the start of `input` and returns how many it took,
    /// with the frame they completed, if any. With no frame, all of
    /// `input` was taken; with one, call again with the rest.
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let mut used = 0;
        while used < input.len() {
            let (n, frame) = self.step(&input[used..]);
            debug_assert!(n > 0, "every step takes a byte");
            used += n;
            if frame.is_some() {
                return (used, frame);
            }
        }
        (used, None)
    }

    /// Pushes all of `input`, appending every frame to `out` in order
    /// (frames after a `quit` included: the caller stops there).
    pub fn push_all(&mut self, mut input: &[u8], out: &mut Vec<Frame>) {
        while !input.is_empty() {
            let (used, frame) = self.push(input);
            input = &input[used..];
            out.extend(frame);
        }
    }

    /// One move of the state machine on non-empty `input`: takes at least
    /// one byte.
    fn step(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        match &mut self.state {
            State::Line | State::DiscardLine => self.step_line(input),
            State::Body { bytes, body, .. } => {
                let want = *bytes as usize + 2 - body.len();
                let take = want.min(input.len());
                body.extend_from_slice(&input[..take]);
                if take < want {
                    return (take, None);
                }
                (take, Some(self.finish_body()))
            }
            State::Skip { remaining } => {
                let take = (*remaining).min(input.len() as u64);
                *remaining -= take;
                if *remaining > 0 {
                    return (take as usize, None);
                }
                self.state = State::Line;
                let refusal = Refusal::new(ProtocolError::JobTooBig, Some(Verb::Put));
                (take as usize, Some(Frame::Refused(refusal)))
            }
        }
    }

    /// Reads into the line window; answers when a line ends.
    fn step_line(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let held = self.line.len();
        let take = input.len().min(LINE_BYTES_MAX - held);
        let window_full = held + take == LINE_BYTES_MAX;
        if held == 0 {
            // The common case: the whole line is in `input`, no copy.
            if let Some(end) = line_end(&input[..take]) {
                return (end, self.end_line(&input[..end - 2]));
            }
            if !window_full {
                self.line.extend_from_slice(&input[..take]);
            }
        } else {
            self.line.extend_from_slice(&input[..take]);
            if let Some(end) = line_end(&self.line) {
                // `self.line` held no line end, so this one ends in `input`.
                let mut line = std::mem::take(&mut self.line);
                let frame = self.end_line(&line[..end - 2]);
                line.clear();
                self.line = line;
                return (end - held, frame);
            }
        }
        if window_full {
            // A full window without a line end: drop it, and the rest of
            // the line after it.
            self.line.clear();
            self.state = State::DiscardLine;
        }
        (take, None)
    }

    /// Handles a complete line (CRLF stripped) read in state `Line` or
    /// `DiscardLine`.
    fn end_line(&mut self, line: &[u8]) -> Option<Frame> {
        if matches!(self.state, State::DiscardLine) {
            self.state = State::Line;
            return Some(Frame::Refused(Refusal::new(ProtocolError::BadFormat, None)));
        }
        match parse_line(line, self.job_bytes_max) {
            Line::Command(c) => Some(Frame::Command(c)),
            Line::Refused(r) => Some(Frame::Refused(r)),
            Line::Put {
                pri,
                delay_s,
                ttr_s,
                bytes,
            } => {
                self.state = State::Body {
                    pri,
                    delay_s,
                    ttr_s,
                    bytes,
                    body: Vec::new(),
                };
                None
            }
            Line::PutTooBig { bytes } => {
                self.state = State::Skip {
                    remaining: u64::from(bytes) + 2,
                };
                None
            }
        }
    }

    /// Ends a complete body (CRLF included) read in state `Body`.
    fn finish_body(&mut self) -> Frame {
        let State::Body {
            pri,
            delay_s,
            ttr_s,
            bytes,
            mut body,
        } = std::mem::replace(&mut self.state, State::Line)
        else {
            unreachable!("finish_body runs in state Body only");
        };
        if !body.ends_with(b"\r\n") {
            return Frame::Refused(Refusal::new(ProtocolError::ExpectedCrlf, Some(Verb::Put)));
        }
        body.truncate(bytes as usize);
        Frame::Command(Command::Put {
            pri,
            delay_s,
            ttr_s,
            body,
        })
    }
}
