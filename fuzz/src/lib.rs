//! What the fuzz targets share: running the storage's futures, the WAL
//! checks (with a checksum verifier written apart from the WAL's own), the
//! codec and parser checks, and the builders of the seed corpus.
//!
//! Each `check_*` function takes the fuzzer's bytes, runs one decoder on
//! them and panics (which libFuzzer reports as a crash) when a property
//! fails, not only when the decoder itself panics. The targets in
//! `fuzz_targets/` are one line each, so a failing input can be replayed
//! from a plain test as well.

pub mod beanstalk;
pub mod body;
pub mod codec;
pub mod seeds;
pub mod settings;
pub mod wal;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future of the simulated disk to completion on this thread.
///
/// `SimDisk` without latency never waits (no timer, no other task), so
/// every future it makes is ready at its first poll; one that is not would
/// be a hang, reported as a panic instead of spinning.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a SimDisk future without latency waited"),
    }
}
