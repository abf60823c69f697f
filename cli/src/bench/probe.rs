//! W5, the disk probe (beaver-io's, on written blocks), its variant beside
//! a spinning thread, and the data dir's size.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub use beaver_io::probe::Probe;
use beaver_io::probe::{Prepared, disk_probe as probe_in};

/// Below this many probe fdatasyncs per second the disk is in its slow
/// state and a run's figures do not count.
pub const FAST_DISK_SYNCS_PER_SEC: f64 = 6_000.0;

/// The disk probe of W5: [`beaver_io::probe::disk_probe`] on a file whose
/// blocks are written first.
pub fn disk_probe(dir: &Path, syncs: u64, within: Duration) -> Result<Probe, String> {
    probe_in(dir, syncs, within, Prepared::Written)
}

/// The same probe, run on a thread pinned to one CPU beside a thread
/// spinning on that same CPU, so the CPU never idles while the probe waits
/// in fdatasync. On this machine's VM a waiting thread whose CPU halted is
/// woken a timer tick (4 ms) late: the "slow state" is that, not the disk.
/// This line shows what the disk itself does; it is not a target.
pub fn disk_probe_spinning(dir: &Path, syncs: u64, within: Duration) -> Result<Probe, String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).map_err(|_| "sched_getcpu failed".to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(cpu);
            // Bounded by the probe's own bound (and the flag).
            let t = Instant::now();
            while !stop.load(Relaxed) && t.elapsed() < within + Duration::from_secs(5) {
                std::hint::spin_loop();
            }
        })
    };
    let dir = dir.to_path_buf();
    let probe = std::thread::spawn(move || {
        pin(cpu);
        disk_probe(&dir, syncs, within)
    })
    .join()
    .map_err(|_| "the probe thread panicked".to_string());
    stop.store(true, Relaxed);
    let _ = spinner.join();
    probe?
}

/// Pins the calling thread to `cpu` (best effort: unpinned if it fails).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds
    // for cpu < CPU_SETSIZE, checked first; sched_setaffinity(0, ...)
    // changes only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, as `du`
/// counts them: preallocated WAL segments count whole).
pub fn dir_bytes(dir: &Path) -> u64 {
    dir_usage(dir).0
}

/// The files under `dir`: (bytes allocated on disk, the sum of their sizes).
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    let (mut allocated, mut sizes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    // Bounded: a data dir holds a few dozen files.
    let mut visited = 0;
    while let Some(d) = stack.pop() {
        visited += 1;
        if visited > 10_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                allocated += m.blocks() * 512;
                sizes += m.len();
            }
        }
    }
    (allocated, sizes)
}
