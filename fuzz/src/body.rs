//! The HTTP enqueue body: one JSON job object, an array of them, or NDJSON.

use beaver_core::JobSpec;
use beaver_input::parse::{BadJob, job_json, parse_body, parse_ndjson};

/// The longest error message a body may provoke: faults quote what is
/// wrong, cut short, never the whole body.
pub const MESSAGE_BYTES_MAX: usize = 512;

fn check_error(e: &BadJob) {
    let text = e.to_string();
    assert!(!e.reason.is_empty(), "an error without a reason: {e:?}");
    assert!(
        text.len() <= MESSAGE_BYTES_MAX,
        "a {} byte error message: {}...",
        text.len(),
        text.get(..200).unwrap_or(&text)
    );
}

/// Accepted jobs, written back as `beaver enqueue` writes them, parse to
/// the same jobs: as an array, one by one, and as NDJSON (when no payload
/// holds a line break, which NDJSON cannot carry).
fn check_reserialised(specs: &[JobSpec]) {
    let mut array = vec![b'['];
    let mut lines = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let mut one = Vec::new();
        job_json(s, &mut one);
        assert_eq!(
            parse_body(&one).as_deref(),
            Ok(std::slice::from_ref(s)),
            "job {i} written back as {:?}",
            String::from_utf8_lossy(&one)
        );
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(&one);
        lines.extend_from_slice(&one);
        lines.push(b'\n');
    }
    array.push(b']');
    assert_eq!(
        parse_body(&array).as_deref(),
        Ok(specs),
        "the jobs written back as an array"
    );
    if !specs.iter().any(|s| s.payload.as_bytes().contains(&b'\n')) {
        assert_eq!(
            parse_ndjson(&lines).as_deref(),
            Ok(specs),
            "the jobs written back as NDJSON"
        );
    }
}

/// The `job_body` target: the same bytes as a JSON body and as an NDJSON
/// body. Accepted jobs re-serialise to an equivalent body; refusals carry
/// a reason of bounded length, and name a job only within the batch.
pub fn check_body(data: &[u8]) {
    for (parsed, ndjson) in [(parse_body(data), false), (parse_ndjson(data), true)] {
        match parsed {
            Ok(specs) => {
                assert!(!specs.is_empty(), "an accepted body with no job");
                check_reserialised(&specs);
            }
            Err(e) => {
                check_error(&e);
                if let (Some(i), true, Ok(text)) = (e.index, ndjson, std::str::from_utf8(data)) {
                    let jobs = text.lines().filter(|l| !l.trim().is_empty()).count();
                    assert!(i < jobs, "job index {i} of {jobs} non-blank lines");
                }
            }
        }
    }
}
