//! Job bodies: beanstalkd's are opaque bytes, beaver's payloads are JSON.
//!
//! A body that is UTF-8 is kept as a JSON string (readable over HTTP as
//! the text it is); any other body as `{"bytes_hex": "..."}`. Reading
//! back gives the exact bytes. A payload enqueued over HTTP in any other
//! shape is handed to beanstalkd clients as its JSON text.

use beaver_core::Payload;

/// The key of the object that holds a body that is not UTF-8.
const HEX_KEY: &str = "bytes_hex";

/// The largest payload a body of `body_bytes_max` bytes can become: a
/// JSON string escapes a control byte as six bytes (`\u0000`).
pub fn payload_bytes_max(body_bytes_max: u32) -> u64 {
    u64::from(body_bytes_max) * 6 + 64
}

/// The payload that keeps `body`.
pub fn to_payload(body: &[u8]) -> Result<Payload, String> {
    match std::str::from_utf8(body) {
        Ok(text) => Payload::from_text(text),
        Err(_) => {
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            Payload::from_value(&serde_json::json!({ HEX_KEY: hex }))
        }
    }
}

/// The body a payload keeps (see the module docs).
pub fn from_payload(payload: &Payload) -> Vec<u8> {
    let bytes = payload.as_bytes();
    // A JSON string with no escape in it is its text between the quotes
    // (a payload is one valid JSON value, so the last quote closes it).
    if let [b'"', text @ .., b'"'] = bytes
        && !text.contains(&b'\\')
    {
        return text.to_vec();
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::String(text)) => text.into_bytes(),
        Ok(serde_json::Value::Object(map)) if map.len() == 1 => {
            match map.get(HEX_KEY).and_then(|v| v.as_str()).and_then(unhex) {
                Some(body) => body,
                None => bytes.to_vec(),
            }
        }
        _ => bytes.to_vec(),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_survives_the_round_trip() {
        let bodies: [&[u8]; 8] = [
            b"",
            b"hello",
            b"a\r\n\0\r\n",
            "é \"quoted\" \\".as_bytes(),
            &[0xff, 0x00, 0x80],
            b"{\"bytes_hex\":\"zz\"}",
            b"\"quoted\"",
            b"\\",
        ];
        for body in bodies {
            let p = to_payload(body).expect("a body always makes a payload");
            assert_eq!(from_payload(&p), body, "{body:?}");
            assert!(p.len() as u64 <= payload_bytes_max(body.len() as u32));
        }
    }

    proptest::proptest! {
        /// Any text, escaped or not, written as a JSON string by HTTP or by
        /// a put, reads back as that text.
        #[test]
        fn a_json_string_payload_reads_as_its_text(text in proptest::prop_oneof![proptest::prelude::any::<String>(), "[a\"\\\\\\x00-\\x1fé]{0,24}"]) {
            let p = Payload::from_value(&text).expect("a string is JSON");
            proptest::prop_assert_eq!(from_payload(&p), text.as_bytes());
        }
    }

    /// `ServeLimits::for_engine` (in `beaver-input`) inverts
    /// `payload_bytes_max`: the largest body it allows fits the engine's
    /// payload limits, and one byte more would not (below the default cap).
    #[test]
    fn the_largest_body_the_limits_allow_fits_the_payload_limits() {
        use super::super::ServeLimits;
        for limit in [
            70u64,
            71,
            100,
            1_000,
            65_535 * 6 + 63,
            65_535 * 6 + 64,
            1 << 30,
        ] {
            let mut engine = beaver_runtime::EngineConfig::default();
            engine.queue.limits.payload_bytes_max = limit;
            engine.queue.limits.batch_bytes_max = limit.max(engine.queue.limits.batch_bytes_max);
            let max = ServeLimits::for_engine(&engine, 1)
                .expect("at least 70 bytes")
                .job_bytes_max;
            assert!(payload_bytes_max(max) <= limit, "limit {limit}: body {max}");
            let capped = max == crate::beanstalk::JOB_BYTES_MAX_DEFAULT;
            assert!(
                capped || payload_bytes_max(max + 1) > limit,
                "limit {limit}: body {max}"
            );
        }
        let mut engine = beaver_runtime::EngineConfig::default();
        engine.queue.limits.payload_bytes_max = 69;
        assert!(ServeLimits::for_engine(&engine, 1).is_err());
    }

    #[test]
    fn a_payload_from_http_reads_as_its_json_text() {
        let p = Payload::from_json(b"{\"to\":\"ada\"}").expect("valid JSON");
        assert_eq!(from_payload(&p), b"{\"to\":\"ada\"}");
    }
}
