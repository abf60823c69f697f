//! Replaying the WAL into the queue at start-up, on both cores.
//!
//! The thread reading the log checks and decodes each record (and allocates
//! its strings); a second thread first builds the queue the records apply
//! to (restoring the snapshot, the longest part of a restart from one),
//! then applies them in LSN order. Outside madsim the two overlap, so a
//! restart takes about as long as the slower of the two halves instead of
//! their sum. Under madsim (threads are not simulated) the queue is built
//! and the records applied inline, in the same order, with the same errors.

use beaver_core::{Core, Record, codec};

use crate::error::EngineError;

/// Records handed to the applying thread at once, at most.
const BATCH_RECORDS: usize = 1024;
/// Encoded bytes handed over at once, at most (records can hold big batches).
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the two threads: bounds the memory of decoded
/// but unapplied records (about 64 MiB of log), and lets the reader run
/// that far ahead while the queue is being restored.
#[cfg(not(madsim))]
const BATCHES_IN_FLIGHT: usize = 64;

/// Builds the queue the replayed records apply to (from a snapshot, or
/// empty); runs on the applying thread.
pub(crate) type Base = Box<dyn FnOnce() -> Result<Core, EngineError> + Send>;

/// Feeds replayed records to a queue; [`Replay::finish`] returns the queue,
/// the count applied, and the first error if any: the base's, else the
/// first record's by LSN (nothing after a failed record is applied).
pub(crate) struct Replay {
    batch: Vec<Record>,
    batch_bytes: usize,
    decode_error: Option<EngineError>,
    sink: Sink,
}

#[cfg(not(madsim))]
struct Sink {
    tx: Option<std::sync::mpsc::SyncSender<Vec<Record>>>,
    done: tokio::sync::oneshot::Receiver<Applied>,
}

#[cfg(madsim)]
struct Sink {
    applier: Applier,
}

/// The applying side: the queue, and what applying has done so far.
struct Applier {
    /// `Err`: the base could not be built; records are then dropped.
    queue: Result<Core, EngineError>,
    applied: u64,
    error: Option<EngineError>,
}

type Applied = (Result<Core, EngineError>, u64, Option<EngineError>);

impl Applier {
    fn new(base: Base) -> Applier {
        Applier {
            queue: base(),
            applied: 0,
            error: None,
        }
    }

    fn apply(&mut self, records: Vec<Record>) {
        let Ok(queue) = &mut self.queue else { return };
        for r in records {
            if self.error.is_some() {
                return;
            }
            let lsn = r.lsn;
            match queue.apply_owned(r) {
                Ok(()) => self.applied += 1,
                Err(e) => {
                    self.error = Some(EngineError::Replay {
                        lsn,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// The queue (its deferred ids indexed), the count applied, the error.
    fn into_parts(mut self) -> Applied {
        if let Ok(q) = &mut self.queue {
            q.finish_rebuild();
        }
        (self.queue, self.applied, self.error)
    }
}

impl Replay {
    /// Starts replaying into the queue `base` builds (on the applying
    /// thread, while records are taken).
    pub(crate) fn new(base: Base) -> Replay {
        Replay {
            batch: Vec::with_capacity(BATCH_RECORDS),
            batch_bytes: 0,
            decode_error: None,
            sink: Sink::start(base),
        }
    }

    /// Takes the record the log holds at `lsn`. After the first error
    /// (a body that does not decode or names another LSN), nothing more is
    /// taken.
    pub(crate) fn push(&mut self, lsn: u64, body: &[u8]) {
        if self.decode_error.is_some() {
            return;
        }
        match codec::decode_logged_record(lsn, body) {
            Ok(r) => {
                self.batch.push(r);
                self.batch_bytes += body.len();
                if self.batch.len() >= BATCH_RECORDS || self.batch_bytes >= BATCH_BYTES {
                    self.batch_bytes = 0;
                    let full =
                        std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_RECORDS));
                    self.sink.send(full);
                }
            }
            Err(e) => {
                self.decode_error = Some(EngineError::Replay {
                    lsn,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Waits for the base and every taken record to be applied. `Err` is
    /// the base's error, else the first record (by LSN) that could not be
    /// decoded or applied.
    pub(crate) async fn finish(mut self) -> Result<(Core, u64), EngineError> {
        let rest = std::mem::take(&mut self.batch);
        self.sink.send(rest);
        let (queue, applied, apply_error) = self.sink.finish().await?;
        let queue = queue?;
        // The applier saw only records before the first undecodable one, so
        // an apply error, if any, is at a lower LSN.
        match apply_error.or(self.decode_error) {
            Some(e) => Err(e),
            None => Ok((queue, applied)),
        }
    }
}

#[cfg(not(madsim))]
impl Sink {
    fn start(base: Base) -> Sink {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(BATCHES_IN_FLIGHT);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("beaver-replay".into())
            .spawn(move || {
                let mut applier = Applier::new(base);
                while let Ok(records) = rx.recv() {
                    applier.apply(records);
                }
                let _ = done_tx.send(applier.into_parts());
            });
        match spawned {
            Ok(_) => Sink { tx: Some(tx), done },
            Err(e) => {
                // No second thread: `finish` reports it; nothing is applied.
                tracing::error!(error = %e, "cannot start the replay thread");
                Sink { tx: None, done }
            }
        }
    }

    fn send(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        // A closed channel means the applier ended (it panicked); `finish`
        // reports it.
        if let Some(tx) = &self.tx {
            if tx.send(records).is_err() {
                self.tx = None;
            }
        }
    }

    async fn finish(mut self) -> Result<Applied, EngineError> {
        self.tx = None;
        self.done.await.map_err(|_| EngineError::Replay {
            lsn: 0,
            reason: "the replay thread could not start or ended without a result".into(),
        })
    }
}

#[cfg(madsim)]
impl Sink {
    fn start(base: Base) -> Sink {
        Sink {
            applier: Applier::new(base),
        }
    }

    fn send(&mut self, records: Vec<Record>) {
        self.applier.apply(records);
    }

    async fn finish(self) -> Result<Applied, EngineError> {
        Ok(self.applier.into_parts())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use beaver_core::config::Config;
    use beaver_core::job::JobId;
    use beaver_core::record::Op;

    use crate::testing::enqueue;

    fn complete_unknown(lsn: u64) -> Vec<u8> {
        codec::encode_record(&Record {
            lsn,
            at: 0,
            op: Op::Complete {
                id: JobId::parse("nobody").unwrap(),
                attempt: 1,
            },
        })
    }

    fn replay(
        bodies: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(Core, u64), EngineError> {
        replay_onto(Box::new(|| Ok(Core::new(Config::default()))), bodies)
    }

    fn replay_onto(
        base: Base,
        bodies: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(Core, u64), EngineError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = Replay::new(base);
            for (lsn, body) in bodies {
                r.push(lsn, &body);
            }
            r.finish().await
        })
    }

    /// One-job enqueues at `lsns`, but bytes that do not decode at `bad`.
    fn log_undecodable_at(
        lsns: std::ops::RangeInclusive<u64>,
        bad: u64,
    ) -> impl Iterator<Item = (u64, Vec<u8>)> {
        lsns.map(move |lsn| {
            let body = if lsn == bad {
                vec![0xff; 7]
            } else {
                enqueue(lsn, 1)
            };
            (lsn, body)
        })
    }

    fn failed_at(r: Result<(Core, u64), EngineError>) -> (u64, String) {
        match r {
            Err(EngineError::Replay { lsn, reason }) => (lsn, reason),
            Err(e) => panic!("not a replay error: {e}"),
            Ok((_, n)) => panic!("replayed {n} records, expected an error"),
        }
    }

    #[test]
    fn applies_every_record_in_order_across_batches() {
        let n = 3 * BATCH_RECORDS as u64 + 5;
        let (q, applied) = replay((1..=n).map(|lsn| (lsn, enqueue(lsn, 2)))).unwrap();
        assert_eq!(applied, n);
        assert_eq!(q.applied_lsn(), n);
        assert_eq!(q.stats().jobs.pending, 2 * n);
        assert!(q.job(&format!("j{n}-1")).is_some());
    }

    #[test]
    fn records_apply_on_top_of_the_base_it_builds() {
        // The base (a restored snapshot in the engine) holds LSNs 1-3; the
        // log after it is replayed onto it, across batches.
        let base: Base = Box::new(|| {
            let mut q = Core::new(Config::default());
            for lsn in 1..=3 {
                let r = codec::decode_logged_record(lsn, &enqueue(lsn, 2)).unwrap();
                q.apply_owned(r).unwrap();
            }
            Ok(q)
        });
        let n = 2 * BATCH_RECORDS as u64 + 7;
        let (q, applied) = replay_onto(base, (4..=n).map(|lsn| (lsn, enqueue(lsn, 2)))).unwrap();
        assert_eq!(applied, n - 3);
        assert_eq!(q.applied_lsn(), n);
        assert_eq!(q.stats().jobs.pending, 2 * n);
        assert!(q.job("j1-0").is_some() && q.job(&format!("j{n}-1")).is_some());
    }

    #[test]
    fn a_base_that_cannot_be_built_is_the_error() {
        let base: Base = Box::new(|| {
            Err(EngineError::Snapshot {
                path: "snap-7".into(),
                reason: "does not decode".into(),
            })
        });
        // A bad record later in the log does not hide the base's error.
        match replay_onto(base, log_undecodable_at(8..=300, 100)) {
            Err(EngineError::Snapshot { reason, .. }) => assert_eq!(reason, "does not decode"),
            Err(e) => panic!("not the base's error: {e}"),
            Ok((_, n)) => panic!("replayed {n} records onto a base that failed"),
        }
    }

    #[test]
    fn a_body_that_does_not_decode_stops_the_replay_at_its_lsn() {
        let (lsn, _) = failed_at(replay(log_undecodable_at(1..=300, 280)));
        assert_eq!(lsn, 280);
    }

    #[test]
    fn a_record_naming_another_lsn_is_refused() {
        let (lsn, reason) = failed_at(replay([(1, enqueue(1, 1)), (2, enqueue(3, 1))]));
        assert_eq!(lsn, 2);
        assert!(
            reason.contains("the frame says LSN 2, the record 3"),
            "{reason}"
        );
    }

    #[test]
    fn the_first_failure_by_lsn_wins() {
        // An apply error at LSN 2 is reported even though a decode error
        // follows at LSN 400 (the two sides fail on different threads).
        let bodies = (1..=500u64).map(|lsn| {
            let body = match lsn {
                2 => complete_unknown(lsn),
                400 => vec![1, 2, 3],
                _ => enqueue(lsn, 1),
            };
            (lsn, body)
        });
        let (lsn, reason) = failed_at(replay(bodies));
        assert_eq!(lsn, 2, "{reason}");
    }
}
