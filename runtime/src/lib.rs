//! beaver-runtime: the async engine that owns a core, the WAL, snapshots,
//! an executor and timers, and carries out the core's effects.
//!
//! The same code runs on tokio (production) and under madsim (the
//! simulator): `tokio` here is madsim-tokio, every `select!` is `biased;`,
//! storage goes through [`beaver_io::Disk`] and execution through
//! [`Executor`].
//!
//! Tasks: the core task (owns the [`beaver_core::Core`], takes requests in
//! batches, steps the core, routes effects), the WAL task of
//! [`beaver_io::GroupCommit`] (encodes, writes, syncs; one fdatasync in
//! flight with the next batch forming behind it),
//! the snapshot task (folds snapshots off the core's task; the core task
//! has it free the log when the disk is in its reserve), and one task per
//! attempt (bounded by the worker count).
//!
//! [`Session`] is a protocol connection's reservations (external leases)
//! and the rule that a closed connection gives them all back at once; the
//! beanstalkd server and the simulator both use it.

pub mod client;
pub mod clock;
mod commit;
mod compaction;
pub mod config;
mod core_task;
pub mod engine;
pub mod error;
pub mod executor;
mod figures;
pub mod observer;
mod pace;
mod replay;
mod reserve;
pub mod session;
mod snapshotter;
#[cfg(test)]
mod testing;

pub use beaver_core::QueuePause;
pub use client::Client;
pub use clock::{Clock, SystemClock};
pub use config::EngineConfig;
pub use engine::{Engine, EngineHandle, RecoveryReport, start};
pub use error::EngineError;
pub use executor::{AnyExecutor, Executor, ExecutorConfig};
pub use figures::{EngineFigures, EngineStatus};
pub use observer::{NoObserver, Observer};
pub use session::{Finish, Reservation, Returned, Session};
