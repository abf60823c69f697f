//! The `beanstalk_command` target: the bytes a beanstalkd client sends,
//! through the command framer and parser.
//!
//! Input layout: byte 0 picks the largest job body (`job_bytes_max`, small
//! so that `JOB_TOO_BIG` is reachable), byte 1 the size of the chunks the
//! rest arrives in (a socket delivers any split); the rest is the stream.
//!
//! Checked: the framer never holds more than a line or a body allows; a
//! push without a frame took every byte; every command it accepts
//! re-encodes to bytes that frame, from a fresh framer, to exactly that
//! command; every refusal is answered with one of the protocol's error
//! lines.

use beaver_input::beanstalk::{Frame, Framer, LINE_BYTES_MAX};

/// The error lines a refusal may answer.
const REFUSALS: [&[u8]; 4] = [
    b"BAD_FORMAT\r\n",
    b"UNKNOWN_COMMAND\r\n",
    b"EXPECTED_CRLF\r\n",
    b"JOB_TOO_BIG\r\n",
];

/// See the module doc.
pub fn check_beanstalk(data: &[u8]) {
    let [size, chunk, stream @ ..] = data else {
        return;
    };
    let job_bytes_max = match size {
        0 => beaver_input::beanstalk::JOB_BYTES_MAX_DEFAULT,
        n => u32::from(*n) - 1,
    };
    let chunk = 1 + usize::from(*chunk % 64);
    let mut framer = Framer::new(job_bytes_max);
    let held_max = LINE_BYTES_MAX.max(job_bytes_max as usize + 2);
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        while !input.is_empty() {
            let (used, frame) = framer.push(input);
            assert!(used <= input.len(), "took {used} of {} bytes", input.len());
            assert!(
                framer.buffered_bytes() <= held_max,
                "holds {} bytes, more than {held_max}",
                framer.buffered_bytes()
            );
            input = &input[used..];
            match frame {
                Some(f) => check_frame(&f, job_bytes_max),
                None => assert!(input.is_empty(), "no frame, yet bytes left untaken"),
            }
        }
    }
}

fn check_frame(frame: &Frame, job_bytes_max: u32) {
    match frame {
        Frame::Command(c) => {
            let mut bytes = Vec::new();
            c.encode(&mut bytes);
            let mut again = Vec::new();
            Framer::new(job_bytes_max).push_all(&bytes, &mut again);
            assert_eq!(
                again,
                vec![frame.clone()],
                "{c:?} re-encoded as {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Frame::Refused(r) => {
            let mut line = Vec::new();
            r.reply().encode(&mut line);
            assert!(
                REFUSALS.contains(&line.as_slice()),
                "a refusal answered {:?}",
                String::from_utf8_lossy(&line)
            );
        }
    }
}

/// The largest body the `beanstalkd_binlog` target lets a job have.
const BINLOG_BODY_MAX: u64 = 64;

/// The `beanstalkd_binlog` target: beanstalkd's own log, as `beaver
/// beanstalkd` reads it to take beanstalkd's jobs over. Input layout:
/// bytes 0 and 1 are the length of the first file (little endian, cut to
/// what follows); the rest of the input is the second (`binlog.1`,
/// `binlog.2`: a job's records run across files). Checked: the reader
/// never panics; what it returns has distinct ascending nonzero ids, tube
/// names of at most 200 bytes and bodies within the limit; an error names
/// a file.
pub fn check_binlog(data: &[u8]) {
    use beaver_input::beanstalk::binlog::read;
    let [lo, hi, rest @ ..] = data else {
        return;
    };
    let at = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
    let files = vec![
        ("binlog.1".to_string(), rest[..at].to_vec()),
        ("binlog.2".to_string(), rest[at..].to_vec()),
    ];
    match read(&files, BINLOG_BODY_MAX) {
        Ok(jobs) => {
            assert!(jobs.windows(2).all(|w| w[0].id < w[1].id), "ids in order");
            for j in &jobs {
                assert!(j.id != 0, "a zero id ends a file");
                assert!(j.tube.len() <= 200, "tube of {} bytes", j.tube.len());
                assert!(
                    j.body.len() as u64 <= BINLOG_BODY_MAX,
                    "body over the limit"
                );
            }
        }
        Err(e) => assert!(e.contains("binlog."), "an error names its file: {e}"),
    }
}
