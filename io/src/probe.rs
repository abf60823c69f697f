//! The disk probe every benchmark prints its figures beside: 100-byte
//! writes, each followed by an fdatasync, into a file prepared in advance,
//! from one thread. The most a single appender waiting for each
//! acknowledgement could get from this disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes per probe write.
pub const PROBE_WRITE: u64 = 100;

/// How the probe's file is prepared before the timed writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Zeros written and synced: every timed write overwrites written blocks.
    Written,
    /// Allocated with fallocate and synced, as WAL segments are prepared.
    Allocated,
}

/// What the probe measured.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// fdatasyncs done.
    pub syncs: u64,
    /// How long they took.
    pub secs: f64,
    /// CPU time the probing thread used meanwhile (user + system; on a VM
    /// this includes the exits a device submission costs), if known.
    pub cpu_secs: Option<f64>,
}

impl Probe {
    /// fdatasyncs per second.
    pub fn rate(&self) -> f64 {
        self.syncs as f64 / self.secs.max(1e-9)
    }

    /// The probing thread's CPU time per write + fdatasync, in microseconds.
    pub fn cpu_us_per_sync(&self) -> Option<f64> {
        Some(1e6 * self.cpu_secs? / self.syncs.max(1) as f64)
    }
}

/// The calling thread's CPU time so far, in seconds.
fn thread_cpu_secs() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// A probe error: what failed, on which file, and why.
fn failure(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("disk probe: {what} {}: {e}", path.display())
}

/// Creates the probe's file at `path` with room for `syncs` probe writes
/// (at least one), prepared as `prepared` says and synced.
fn prepared_file(path: &Path, syncs: u64, prepared: Prepared) -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| failure("cannot create", path, e))?;
    let bytes = PROBE_WRITE * syncs.max(1);
    match prepared {
        Prepared::Written => f
            .write_all_at(&vec![0u8; usize::try_from(bytes).unwrap_or(8 << 20)], 0)
            .map_err(|e| failure("cannot preallocate", path, e))?,
        Prepared::Allocated => crate::file_disk::fallocate(&f, bytes)
            .map_err(|e| failure("cannot preallocate", path, e))?,
    }
    f.sync_all().map_err(|e| failure("cannot sync", path, e))?;
    Ok(f)
}

/// Runs the probe in `dir`: `syncs` write+fdatasync pairs, or fewer if
/// `within` runs out first. The probe file is removed afterwards.
pub fn disk_probe(
    dir: &Path,
    syncs: u64,
    within: Duration,
    prepared: Prepared,
) -> Result<Probe, String> {
    let path = dir.join("probe");
    let f = prepared_file(&path, syncs, prepared)?;
    let t = Instant::now();
    let cpu = thread_cpu_secs();
    let done = probe_writes(&f, &path, syncs, within, t)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = cpu_between(cpu, thread_cpu_secs());
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(Probe {
        syncs: done,
        secs,
        cpu_secs,
    })
}

/// Writes probe writes back to back from the start of `f` (the file at
/// `path`), each followed by an fdatasync, until `syncs` are done or,
/// looking every 64, `within` has passed since `start`. How many were done.
fn probe_writes(
    f: &File,
    path: &Path,
    syncs: u64,
    within: Duration,
    start: Instant,
) -> Result<u64, String> {
    let buf = [b'p'; PROBE_WRITE as usize];
    let mut done = 0;
    while done < syncs {
        f.write_all_at(&buf, done * PROBE_WRITE)
            .map_err(|e| failure("cannot write", path, e))?;
        f.sync_data()
            .map_err(|e| failure("cannot fdatasync", path, e))?;
        done += 1;
        if done % 64 == 0 && start.elapsed() > within {
            break;
        }
    }
    Ok(done)
}

/// The CPU time between two readings of [`thread_cpu_secs`], if both were
/// taken (never negative).
fn cpu_between(start: Option<f64>, end: Option<f64>) -> Option<f64> {
    end.zip(start).map(|(end, start)| (end - start).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_its_syncs_and_removes_its_file() {
        for prepared in [Prepared::Written, Prepared::Allocated] {
            let dir = tempfile::tempdir().expect("temp dir");
            let p = disk_probe(dir.path(), 5, Duration::from_secs(60), prepared).expect("probe");
            assert_eq!(p.syncs, 5, "{prepared:?}");
            assert!(p.secs > 0.0 && p.rate() > 0.0, "{p:?}");
            // Five syscall pairs cost the thread some CPU, never more than the wall time.
            let cpu = p.cpu_secs.expect("thread CPU time on Linux");
            assert!(cpu > 0.0 && cpu <= p.secs + 0.01, "{p:?}");
            assert!(p.cpu_us_per_sync().is_some_and(|us| us > 0.0), "{p:?}");
            assert!(!dir.path().join("probe").exists());
        }
    }

    #[test]
    fn the_probe_file_is_prepared_with_room_for_every_probe_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("probe");
        for prepared in [Prepared::Written, Prepared::Allocated] {
            for (syncs, len) in [(5, 5 * PROBE_WRITE), (0, PROBE_WRITE)] {
                let f = prepared_file(&path, syncs, prepared).expect("prepare");
                let got = f.metadata().expect("metadata").len();
                assert_eq!(got, len, "{prepared:?}, {syncs} syncs");
            }
        }
    }

    #[test]
    fn cpu_time_per_sync_is_the_cpu_time_over_the_syncs_in_microseconds() {
        let probe = |syncs, cpu_secs| Probe {
            syncs,
            secs: 1.0,
            cpu_secs,
        };
        assert_eq!(probe(4, Some(0.002)).cpu_us_per_sync(), Some(500.0));
        assert_eq!(probe(0, Some(0.002)).cpu_us_per_sync(), Some(2000.0));
        assert_eq!(probe(4, None).cpu_us_per_sync(), None);
    }

    #[test]
    fn the_rate_is_syncs_per_second() {
        let probe = Probe {
            syncs: 10,
            secs: 2.0,
            cpu_secs: None,
        };
        assert_eq!(probe.rate(), 5.0);
    }

    #[test]
    fn probe_writes_go_back_to_back_from_the_start_of_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("probe");
        let f = prepared_file(&path, 4, Prepared::Written).expect("prepare");
        let done = probe_writes(&f, &path, 3, Duration::from_secs(60), Instant::now());
        assert_eq!(done, Ok(3));
        let bytes = std::fs::read(&path).expect("read the probe file");
        let written = 3 * PROBE_WRITE as usize;
        assert!(bytes[..written].iter().all(|&b| b == b'p'), "{bytes:?}");
        assert!(bytes[written..].iter().all(|&b| b == 0), "{bytes:?}");
    }

    #[test]
    fn probe_writes_past_their_time_stop_at_the_next_64() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("probe");
        let f = prepared_file(&path, 200, Prepared::Written).expect("prepare");
        let done = probe_writes(&f, &path, 200, Duration::ZERO, Instant::now());
        assert_eq!(done, Ok(64));
    }

    #[test]
    fn cpu_time_between_two_readings_is_their_difference_never_negative() {
        assert_eq!(cpu_between(Some(1.0), Some(3.5)), Some(2.5));
        assert_eq!(cpu_between(Some(3.0), Some(1.0)), Some(0.0));
        assert_eq!(cpu_between(None, Some(1.0)), None);
        assert_eq!(cpu_between(Some(1.0), None), None);
    }

    #[test]
    fn a_directory_that_is_not_there_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = disk_probe(
            &dir.path().join("missing"),
            5,
            Duration::from_secs(1),
            Prepared::Written,
        )
        .unwrap_err();
        assert!(e.starts_with("disk probe: cannot create"), "{e}");
    }
}
