//! Records and snapshots: decoding, re-encoding, and folding what decodes.

use beaver_core::codec::{
    RECORD_FORMAT_VERSION, SNAPSHOT_FORMAT_VERSION, decode_logged_record, decode_record,
    decode_snapshot, encode_queue_snapshot, encode_record, encode_snapshot,
};
use beaver_core::{Config, Core, Record};

/// Splits an input into records as the golden file frames them (a `u32`
/// little-endian length, then that many bytes); what does not frame is
/// one last record.
pub fn frames(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        match tail.split_at_checked(u32::from_le_bytes(*len) as usize) {
            Some((one, after)) => {
                out.push(one);
                rest = after;
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Checks one record's decoding: what decodes re-encodes to a record that
/// decodes to the same value (and no longer than what was read: the
/// encoding is canonical), and the logged-record check agrees.
fn check_record(bytes: &[u8]) -> Option<Record> {
    let r = decode_record(bytes).ok()?;
    let again = encode_record(&r);
    assert_eq!(
        decode_record(&again).as_ref(),
        Ok(&r),
        "decode(encode(r)) != r"
    );
    // Canonical within a version; a record of an older version may grow
    // (version 2 added a byte to dispatches).
    if bytes.first() == Some(&RECORD_FORMAT_VERSION) {
        assert!(
            again.len() <= bytes.len(),
            "re-encoding grew: {again:?} from {bytes:?}"
        );
    }
    assert_eq!(decode_logged_record(r.lsn, bytes).as_ref(), Ok(&r));
    if let Some(other) = r.lsn.checked_add(1) {
        assert!(
            decode_logged_record(other, bytes).is_err(),
            "a record under another LSN"
        );
    }
    Some(r)
}

/// Checks that a rebuilt queue is sound and that its snapshot round-trips
/// through both decoders.
fn check_queue(q: &Core) {
    if let Err(v) = q.check_invariants() {
        panic!("a rebuilt queue breaks an invariant: {v}");
    }
    let snap = q.snapshot();
    let bytes = encode_queue_snapshot(q);
    assert_eq!(
        bytes,
        encode_snapshot(&snap),
        "the two snapshot encoders differ"
    );
    assert_eq!(
        beaver_core::codec::queue_snapshot_len(q),
        bytes.len() as u64,
        "the snapshot's length computed without encoding differs"
    );
    assert_eq!(
        decode_snapshot(&bytes).as_ref(),
        Ok(&snap),
        "snapshot round trip"
    );
    match Core::recover_encoded(Config::default(), &bytes, []) {
        Ok(q2) => assert_eq!(q2.snapshot(), snap, "restored snapshot differs"),
        Err(e) => panic!("a queue's own snapshot is refused: {e}"),
    }
}

/// The core the snapshot `data` gives fed in pieces of 1 to 7 bytes (as a
/// snapshot build reads its file), so that every part is cut somewhere.
fn fed_in_pieces(data: &[u8]) -> Result<Core, beaver_core::RecoverError> {
    let mut feed = Core::recover_in_pieces(Config::default(), data.len());
    let (mut rest, mut size) = (data, 1);
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(size.min(rest.len()));
        feed.feed(piece)?;
        rest = after;
        size = size % 7 + 1;
    }
    feed.finish()
}

/// The `record` target: every frame decodes (or not) soundly; the records
/// that decode, folded from an empty queue, either are refused or give a
/// sound queue whose snapshot round-trips; and folding them twice
/// (replay) gives the same state.
pub fn check_records(data: &[u8]) {
    let records: Vec<Record> = frames(data).into_iter().filter_map(check_record).collect();
    if records.is_empty() {
        return;
    }
    let Ok(q) = Core::recover(Config::default(), None, records.clone()) else {
        return;
    };
    check_queue(&q);
    let twice = records.iter().chain(&records).cloned();
    match Core::recover(Config::default(), None, twice) {
        Ok(q2) => assert_eq!(
            q2.snapshot(),
            q.snapshot(),
            "replaying records again changed the state"
        ),
        Err(e) => panic!("replaying records again failed: {e}"),
    }
}

/// The `snapshot` target, on the core's encoding (version byte, postcard):
/// what decodes re-encodes to the same value; the streaming decoder used at
/// start-up (`recover_encoded`) accepts exactly what decoding and restoring
/// accept, to the same state; a restored queue is sound. The same bytes as
/// a snapshot file's body survive the file framing, and as a whole file
/// decode (or not) without panicking.
pub fn check_snapshot(data: &[u8]) {
    check_snapshot_body(data);
    let lsn = decode_snapshot(data).map_or(7, |s| s.lsn.min(u64::MAX / 2));
    let file = beaver_io::snapshot::encode_snapshot(lsn, data);
    assert_eq!(
        beaver_io::snapshot::decode_snapshot_file(&file),
        Ok((lsn, data)),
        "the snapshot file framing does not round-trip"
    );
    if let Ok((_, body)) = beaver_io::snapshot::decode_snapshot_file(data) {
        check_snapshot_body(body);
    }
}

fn check_snapshot_body(data: &[u8]) {
    let decoded = decode_snapshot(data);
    if let Ok(s) = &decoded {
        let again = encode_snapshot(s);
        assert_eq!(
            decode_snapshot(&again).as_ref(),
            Ok(s),
            "decode(encode(s)) != s"
        );
        // Canonical within a version; an older version's snapshot may grow
        // (version 2 added a byte per job and the paused queues).
        if data.first() == Some(&SNAPSHOT_FORMAT_VERSION) {
            assert!(again.len() <= data.len(), "re-encoding grew");
        }
    }
    let streamed = Core::recover_encoded(Config::default(), data, []);
    match (&streamed, fed_in_pieces(data)) {
        (Ok(q), Ok(q2)) => assert_eq!(q.snapshot(), q2.snapshot(), "fed in pieces, it differs"),
        (Ok(_), Err(e)) => panic!("fed in pieces, the snapshot is refused ({e}), whole it is not"),
        (Err(e), Ok(_)) => {
            panic!("fed in pieces, the snapshot is accepted, whole it is refused ({e})")
        }
        (Err(_), Err(_)) => {}
    }
    let folded = decoded.map(|s| Core::recover(Config::default(), Some(s), []));
    match (streamed, folded) {
        (Ok(q), Ok(Ok(q2))) => {
            assert_eq!(q.snapshot(), q2.snapshot(), "the two restore paths differ");
            check_queue(&q);
        }
        (Ok(_), Ok(Err(e))) => panic!("the streaming decoder accepted what restoring refuses: {e}"),
        (Ok(_), Err(e)) => panic!("the streaming decoder accepted what does not decode: {e}"),
        (Err(e), Ok(Ok(_))) => panic!("the streaming decoder refused ({e}) what restoring accepts"),
        (Err(_), _) => {}
    }
}
