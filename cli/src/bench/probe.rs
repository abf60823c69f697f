//! W5, the disk probe, and the data dir's size.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The probe's result.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// fdatasyncs done.
    pub syncs: u64,
    /// How long they took.
    pub secs: f64,
}

/// Below this many probe fdatasyncs per second the disk is in its slow
/// state and a run's figures do not count.
pub const FAST_DISK_SYNCS_PER_SEC: f64 = 6_000.0;

/// 100-byte writes + fdatasync into a preallocated file in `dir`, from one
/// thread: `syncs` of them, or fewer if `within` runs out first. This is
/// the most a single client waiting for each acknowledgement could get.
pub fn disk_probe(dir: &Path, syncs: u64, within: Duration) -> Result<Probe, String> {
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
    let bytes = 100 * syncs.max(1);
    // Written (not just sized), so every write below overwrites allocated
    // blocks, as the WAL's preallocated segments are overwritten.
    f.write_all_at(&vec![0u8; usize::try_from(bytes).unwrap_or(8 << 20)], 0)
        .map_err(|e| fail("cannot preallocate", e))?;
    f.sync_all().map_err(|e| fail("cannot sync", e))?;
    let buf = [b'p'; 100];
    let t = Instant::now();
    let mut done = 0;
    while done < syncs {
        f.write_all_at(&buf, done * 100)
            .map_err(|e| fail("cannot write", e))?;
        f.sync_data().map_err(|e| fail("cannot fdatasync", e))?;
        done += 1;
        if done % 64 == 0 && t.elapsed() > within {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(Probe { syncs: done, secs })
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
    let mut total = 0;
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
                total += m.blocks() * 512;
            }
        }
    }
    total
}
