//! Recovery: a core rebuilt from a snapshot and the records after it is a
//! pure fold, with the same apply the live core uses. Records at or below
//! the applied LSN are skipped, so replaying overlapping input changes
//! nothing. Jobs found in flight lost their attempt with the process: the
//! first `step` fails them (the attempt counts), so they retry or go dead.
//!
//! Production rebuilds in three calls (see the crate docs):
//! [`Core::recover_encoded`] with the snapshot's bytes and no records, then
//! [`Core::apply_owned`] for each record as the log is read, then
//! [`Core::finish_rebuild`]. [`Core::recover`] does the same in one call
//! from a decoded snapshot.

use super::Core;
use crate::codec::DecodeError;
use crate::config::Config;
use crate::record::Record;
use crate::snapshot::Snapshot;
use crate::snapshot_feed::SnapshotDecoder;
use crate::state::ApplyError;

/// Why a core could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverError {
    /// The snapshot's bytes do not decode into a valid state.
    Snapshot(DecodeError),
    /// A record does not apply.
    Apply(ApplyError),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RecoverError::Apply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RecoverError {}

/// A core being rebuilt from its snapshot's bytes, fed in pieces
/// ([`Core::recover_in_pieces`]).
///
/// Guarantees: any cut of the same bytes into pieces gives the same core,
/// or the same error, as [`Core::recover_encoded`]; at most one job's
/// bytes (and the piece being fed) are held beside the core.
pub struct SnapshotFeed {
    core: Core,
    decoder: SnapshotDecoder,
}

impl SnapshotFeed {
    /// Decodes the jobs and fields `piece` completes. After an `Err` the
    /// feed is of no use: drop it.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), RecoverError> {
        self.decoder
            .feed(&mut self.core.state, piece)
            .map_err(RecoverError::Snapshot)
    }

    /// The core, once every byte was fed; `Err` if the snapshot stopped
    /// short of its end.
    pub fn finish(mut self) -> Result<Core, RecoverError> {
        self.decoder.finish().map_err(RecoverError::Snapshot)?;
        self.core.after_restore();
        Ok(self.core)
    }
}

impl Core {
    /// Rebuilds a core from an optional snapshot and the records after it.
    /// `Err` names the first record (or the snapshot) that does not fit.
    pub fn recover(
        config: Config,
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Core, ApplyError> {
        let mut q = Core::new(config);
        if let Some(s) = snapshot {
            let lsn = s.lsn;
            s.restore_into(&mut q.state)
                .map_err(|reason| ApplyError { lsn, reason })?;
        }
        for r in records {
            q.state.apply_owned(r, true)?;
        }
        q.state.index_deferred();
        q.after_restore();
        Ok(q)
    }

    /// [`Core::recover`] from an encoded snapshot (as
    /// [`crate::codec::encode_snapshot`] or
    /// [`crate::codec::SnapshotEncoder`] wrote it), decoding it straight
    /// into the core: the fast path for start-up.
    pub fn recover_encoded(
        config: Config,
        snapshot: &[u8],
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Core, RecoverError> {
        let mut feed = Core::recover_in_pieces(config, snapshot.len());
        feed.feed(snapshot)?;
        let mut q = feed.finish()?;
        for r in records {
            q.state.apply_owned(r, true).map_err(RecoverError::Apply)?;
        }
        q.state.index_deferred();
        q.after_restore();
        Ok(q)
    }

    /// [`Core::recover_encoded`] with the snapshot's bytes fed in pieces
    /// of any size as they are read ([`SnapshotFeed::feed`]), so that the
    /// snapshot is never whole in memory; `len`, its length if known (0
    /// if not), sizes the job table once. Then
    /// [`Core::apply_owned`] and [`Core::finish_rebuild`] as usual.
    pub fn recover_in_pieces(config: Config, len: usize) -> SnapshotFeed {
        SnapshotFeed {
            core: Core::new(config),
            decoder: SnapshotDecoder::new(len),
        }
    }

    /// Applies one durable record to a core being rebuilt (the same
    /// function the live core applies with); its jobs move into the core.
    /// For recovery drivers that stream records: call it before the first
    /// `step`, then [`Core::finish_rebuild`]. A record at or below the
    /// applied LSN changes nothing; one that does not fit changes nothing
    /// and is `Err`.
    ///
    /// # Panics
    ///
    /// If records were proposed since the rebuild began: a live core
    /// applies on [`crate::Input::Durable`] only.
    pub fn apply_owned(&mut self, record: Record) -> Result<(), ApplyError> {
        assert!(
            self.proposals.unapplied.is_empty(),
            "apply is for rebuilding; a live core applies on Durable"
        );
        self.state.apply_owned(record, true)?;
        self.after_restore();
        Ok(())
    }

    /// Ends a rebuild by [`Core::apply_owned`]: indexes the ids of the
    /// jobs it enqueued, which it leaves to one pass at the end (a restart
    /// replaying a million enqueued jobs then takes about a third less
    /// time). Optional: the core answers the same without it (slower), and
    /// its first `step` does it.
    pub fn finish_rebuild(&mut self) {
        self.state.index_deferred();
    }

    /// Jobs a rebuild enqueued whose ids are not indexed yet (each found by
    /// a scan meanwhile); 0 after [`Core::finish_rebuild`] or any `step`.
    pub fn ids_awaiting_index(&self) -> usize {
        self.state.table.deferred_len()
    }

    /// Proposals continue after what was rebuilt; the first step looks for
    /// interrupted attempts.
    fn after_restore(&mut self) {
        self.proposals.next_lsn = self.state.applied_lsn + 1;
        self.enqueuing.restart_at(self.state.next_seq);
        self.find_orphans = true;
        self.unowned_possible = true;
    }
}
