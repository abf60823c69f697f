//! Helpers shared by the io integration tests.
#![allow(dead_code)]

use std::path::Path;

use beaver_io::{Disk, Result, Wal, WalOptions};

/// The WAL directory used in simulated tests.
pub const DIR: &str = "/data/wal";

/// Small segments so tests rotate often.
pub fn opts(segment_bytes: u64, salt_seed: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        salt_seed,
        ..WalOptions::default()
    }
}

/// A body that says which LSN it was written for.
pub fn body(lsn: u64, len: usize) -> Vec<u8> {
    let mut b = format!("record-{lsn}-").into_bytes();
    while b.len() < len {
        b.push(b'a' + (lsn % 26) as u8);
    }
    b.truncate(len.max(1));
    b
}

/// Opens (recovers) a WAL and collects every record after `after`.
pub async fn recover<D: Disk>(
    disk: &D,
    dir: &Path,
    o: WalOptions,
    after: u64,
) -> Result<(Wal<D>, Vec<(u64, Vec<u8>)>)> {
    let mut got = Vec::new();
    let (wal, _) = Wal::open(disk.clone(), dir, o, after, |l, b| {
        got.push((l, b.to_vec()))
    })
    .await?;
    Ok((wal, got))
}

/// Writes `n` records (one batch) with bodies from [`body`].
pub async fn write<D: Disk>(wal: &mut Wal<D>, n: u64, len: usize) -> Result<u64> {
    let first = wal.next_lsn();
    let bodies: Vec<Vec<u8>> = (first..first + n).map(|l| body(l, len)).collect();
    let recs: Vec<(u64, &[u8])> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (first + i as u64, b.as_slice()))
        .collect();
    wal.write_batch(&recs).await?;
    Ok(first + n - 1)
}

/// Asserts that `got` is exactly records `1..=last` with [`body`] contents.
pub fn assert_dense(got: &[(u64, Vec<u8>)], from: u64, last: u64, len: usize) {
    let lsns: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert_eq!(lsns, (from..=last).collect::<Vec<_>>());
    for (l, b) in got {
        assert_eq!(b, &body(*l, len), "body of LSN {l}");
    }
}

/// A current-thread runtime (time paused, so simulated latency is instant).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}
