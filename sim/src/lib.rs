//! beaver-sim: the deterministic simulator.
//!
//! It runs the real engine (`beaver_runtime::start`, the code `beaver run`
//! uses) on the fault-injecting [`beaver_io::SimDisk`] under madsim, drives
//! it through the in-process client (the acknowledgement path the HTTP API
//! uses), and checks every run against a reference model of the durable
//! records. Everything a run does derives from one seed: configuration,
//! workload, fault profile (swarm testing: each seed draws its own rates).
//!
//! - [`plan`]: seed -> configuration, workload and fault profile.
//! - [`world`]: what the harness observes (the shadow log of every record
//!   written, the model folded to the durable LSN, executions, acks, the
//!   trace and the coverage marks) and the oracles checked as it goes.
//! - [`tap`]: a `Disk` wrapper that records every WAL record written.
//! - [`executor`]: a seeded executor (success, failure, hang past timeout).
//! - [`external`]: external worker nodes over the simulated network, the
//!   engine's request shim, partitions, and their oracles.
//! - [`sessions`]: beanstalk-style connections through the runtime's
//!   `Session` (the beanstalkd server's own type), and their oracle.
//! - [`run`]: one seed: node start/kill/restart, faults, final phase.
//! - [`suite`]: ranges of seeds in parallel, coverage, determinism, mutants.
//! - [`rerun`]: how `cargo test --features sim` turns the simulator on.
//!
//! Only [`rerun`] exists outside `cfg(madsim)`.

pub mod rerun;

#[cfg(madsim)]
pub mod executor;
#[cfg(madsim)]
pub mod external;
#[cfg(madsim)]
pub mod model;
#[cfg(madsim)]
pub mod plan;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod sessions;
#[cfg(madsim)]
pub mod suite;
#[cfg(madsim)]
pub mod tap;
#[cfg(madsim)]
pub mod world;
