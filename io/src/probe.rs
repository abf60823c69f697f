//! The disk probe every benchmark prints its figures beside: 100-byte
//! writes, each followed by an fdatasync, into a file prepared in advance,
//! from one thread. The most a single appender waiting for each
//! acknowledgement could get from this disk.

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

/// Runs the probe in `dir`: `syncs` write+fdatasync pairs, or fewer if
/// `within` runs out first. The probe file is removed afterwards.
pub fn disk_probe(
    dir: &Path,
    syncs: u64,
    within: Duration,
    prepared: Prepared,
) -> Result<Probe, String> {
    let path = dir.join("probe");
    let fail =
        |what: &str, e: std::io::Error| format!("disk probe: {what} {}: {e}", path.display());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| fail("cannot create", e))?;
    let bytes = PROBE_WRITE * syncs.max(1);
    match prepared {
        Prepared::Written => f
            .write_all_at(&vec![0u8; usize::try_from(bytes).unwrap_or(8 << 20)], 0)
            .map_err(|e| fail("cannot preallocate", e))?,
        Prepared::Allocated => {
            crate::file_disk::fallocate(&f, bytes).map_err(|e| fail("cannot preallocate", e))?
        }
    }
    f.sync_all().map_err(|e| fail("cannot sync", e))?;
    let buf = [b'p'; PROBE_WRITE as usize];
    let t = Instant::now();
    let cpu = thread_cpu_secs();
    let mut done = 0;
    while done < syncs {
        f.write_all_at(&buf, done * PROBE_WRITE)
            .map_err(|e| fail("cannot write", e))?;
        f.sync_data().map_err(|e| fail("cannot fdatasync", e))?;
        done += 1;
        if done % 64 == 0 && t.elapsed() > within {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs()
        .zip(cpu)
        .map(|(end, start)| (end - start).max(0.0));
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(Probe {
        syncs: done,
        secs,
        cpu_secs,
    })
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
