//! Planted bugs for the simulator's own test.
//!
//! Each [`Mutant`] names one deliberate bug. Which one a simulated node
//! runs with is part of its configuration: the core's `Config::planted`,
//! handed on by the runtime to the WAL (`WalOptions::planted`), the
//! snapshot store and the client; the simulator's disk wrapper carries the
//! two disk-level ones. Each hook is one small, named check of that value,
//! compiled only with the `mutants` feature of core, io and runtime.
//! Without it this crate is not linked and every hook is compiled out, so
//! the `beaver` binary contains none of it (CI's `no-planted-bugs` stage
//! checks the built binary). No global or thread-local state: one build
//! serves every planted bug, each node naming its own. It is a crate of its
//! own so that io need not depend on the core for it.

/// A planted bug. See each variant for where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// io (group commit): records are reported durable as soon as they are written.
    AckBeforeFsync,
    /// sim's disk wrapper: a failed fdatasync of a WAL segment is retried
    /// (and its success believed).
    RetryFailedFsync,
    /// sim's disk wrapper: the snapshot directory's fsyncs (after a rename
    /// or a removal there) are skipped.
    SkipSnapshotDirFsync,
    /// io: recovery serves what it read without rewriting and syncing it.
    ServeBeforeRecoverySync,
    /// io: a checksum error at or below the watermark is treated as a torn tail.
    TruncateVouchedCorruption,
    /// io: a snapshot's length field is outside its checksum and bounds the body.
    LengthOutsideChecksum,
    /// io + core: recovery replays records the snapshot already holds, and
    /// apply does not skip them.
    NonIdempotentReplay,
    /// io: a sync reports every batch written so far durable, even those
    /// written after it began.
    DurableBeforeOwnSync,
    /// core: an attempt interrupted by a crash is released, not counted.
    ForgetOrphanAttempt,
    /// io (snapshot store): WAL segments are deleted up to the newer snapshot.
    DeleteSegmentOlderSnapshotNeeds,
    /// core: a job is executed as soon as its dispatch is proposed.
    DispatchBeforeDurable,
    /// runtime: the client's enqueue future resolves before the core replies.
    ClientResolvesEarly,
    /// core: a timed-out attempt is released, not counted.
    TimeoutNotCounted,
    /// io: recovery trusts a segment's preallocated length without making
    /// it durable, and refuses any segment cut inside a batch (the old
    /// assumption that a preallocated length always survives).
    TrustPreallocatedLength,
    /// core: a job whose attempt recovery gave back uncounted is dispatched
    /// ahead of a free worker, so a job that kills the server when it
    /// starts is never counted and loops.
    SuspectDispatchedAhead,
    /// core: a complete or fail naming a lease that is no longer current
    /// ends the job's current lease instead (fencing by job, not attempt).
    StaleLeaseCompletes,
    /// core: a heartbeat naming a lease that is no longer current renews
    /// the job's current lease (the attempt is not checked).
    HeartbeatIgnoresAttempt,
    /// core: a lease request is answered as soon as its dispatches are
    /// proposed, before they are durable.
    LeaseBeforeDurable,
    /// runtime: the disk's reserve never makes a compaction due (neither
    /// while the disk is in it nor after it left), so only a person's ask
    /// or the size and time snapshots free the log.
    NoCompactionOnPressure,
    /// runtime: a closed connection's session forgets its reservations
    /// without giving them back, so their jobs wait for their TTR.
    ReservationsKeptOnClose,
    /// core: a dead job requeued for a lease by id (beanstalkd's
    /// `reserve-job`) goes to dispatch before it is leased, so a lease
    /// waiting on its queue takes it first.
    RevivedJobDispatchedFirst,
    /// io: reading a range of the log for a snapshot fails on a corrupt
    /// end of the log past the range (which, while the log is appended
    /// to, a read racing with the writes can see).
    JudgeLogPastTheRange,
    /// core: a cancel lets its job's payload go without keeping the
    /// table's footprint in step, so the disk reserve is sized from
    /// figures a recount would not give.
    FootprintMissesAnEdit,
    /// io (snapshot store): reading a snapshot in pieces, a piece of the
    /// body cut by the end of a read loses its last byte.
    SnapshotPieceCutShort,
    /// io: the WAL writes its zeros ahead of the log's end from where the
    /// batch began, over the batch just written, not from where it ended.
    FillOverTheBatch,
    /// core: a delay or a lease a client names ends at the clock's reading
    /// plus its length, without the millisecond the reading (whole
    /// milliseconds, rounded down) may be behind the true time.
    SpanEndsEarly,
}

impl Mutant {
    /// Every planted bug.
    pub const ALL: [Mutant; 26] = [
        Mutant::AckBeforeFsync,
        Mutant::RetryFailedFsync,
        Mutant::SkipSnapshotDirFsync,
        Mutant::ServeBeforeRecoverySync,
        Mutant::TruncateVouchedCorruption,
        Mutant::LengthOutsideChecksum,
        Mutant::NonIdempotentReplay,
        Mutant::DurableBeforeOwnSync,
        Mutant::ForgetOrphanAttempt,
        Mutant::DeleteSegmentOlderSnapshotNeeds,
        Mutant::DispatchBeforeDurable,
        Mutant::ClientResolvesEarly,
        Mutant::TimeoutNotCounted,
        Mutant::TrustPreallocatedLength,
        Mutant::SuspectDispatchedAhead,
        Mutant::StaleLeaseCompletes,
        Mutant::HeartbeatIgnoresAttempt,
        Mutant::LeaseBeforeDurable,
        Mutant::NoCompactionOnPressure,
        Mutant::ReservationsKeptOnClose,
        Mutant::RevivedJobDispatchedFirst,
        Mutant::JudgeLogPastTheRange,
        Mutant::FootprintMissesAnEdit,
        Mutant::SnapshotPieceCutShort,
        Mutant::FillOverTheBatch,
        Mutant::SpanEndsEarly,
    ];

    /// The name used on the command line (`BEAVER_MUTANT=...`).
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeFsync => "ack-before-fsync",
            Mutant::RetryFailedFsync => "retry-failed-fsync",
            Mutant::SkipSnapshotDirFsync => "skip-snapshot-dir-fsync",
            Mutant::ServeBeforeRecoverySync => "serve-before-recovery-sync",
            Mutant::TruncateVouchedCorruption => "truncate-vouched-corruption",
            Mutant::LengthOutsideChecksum => "length-outside-checksum",
            Mutant::NonIdempotentReplay => "non-idempotent-replay",
            Mutant::DurableBeforeOwnSync => "durable-before-own-sync",
            Mutant::ForgetOrphanAttempt => "forget-orphan-attempt",
            Mutant::DeleteSegmentOlderSnapshotNeeds => "delete-segment-older-snapshot-needs",
            Mutant::DispatchBeforeDurable => "dispatch-before-durable",
            Mutant::ClientResolvesEarly => "client-resolves-early",
            Mutant::TimeoutNotCounted => "timeout-not-counted",
            Mutant::TrustPreallocatedLength => "trust-preallocated-length",
            Mutant::SuspectDispatchedAhead => "suspect-dispatched-ahead",
            Mutant::StaleLeaseCompletes => "stale-lease-completes",
            Mutant::HeartbeatIgnoresAttempt => "heartbeat-ignores-attempt",
            Mutant::LeaseBeforeDurable => "lease-before-durable",
            Mutant::NoCompactionOnPressure => "no-compaction-on-pressure",
            Mutant::ReservationsKeptOnClose => "reservations-kept-on-close",
            Mutant::RevivedJobDispatchedFirst => "revived-job-dispatched-first",
            Mutant::JudgeLogPastTheRange => "judge-log-past-the-range",
            Mutant::FootprintMissesAnEdit => "footprint-misses-an-edit",
            Mutant::SnapshotPieceCutShort => "snapshot-piece-cut-short",
            Mutant::FillOverTheBatch => "fill-over-the-batch",
            Mutant::SpanEndsEarly => "span-ends-early",
        }
    }

    /// The mutant with this [`Mutant::name`].
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}
