//! Taking over beanstalkd's jobs: `beaver beanstalkd -b DIR` started in
//! beanstalkd's place on the same dir puts the jobs beanstalkd's log
//! (`binlog.N`) holds into its own queue before it serves, then moves
//! beanstalkd's files aside (`DIR/beanstalkd-taken-over/`).
//!
//! Ready and reserved jobs come in ready, delayed ones with the delay they
//! had left, buried ones buried, each with its tube, priority, TTR and
//! body; they get beaver's job numbers. Progress is kept in
//! `DIR/beanstalkd-takeover` (the last beanstalkd id taken, written after
//! each chunk is durable), so a crash in the middle goes on from there:
//! it may put the jobs of one chunk twice, or leave a buried job of that
//! chunk ready, and never loses one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use beaver_core::JobId;
use beaver_runtime::{Finish, Session};
use futures_util::stream::{self, StreamExt};

use super::Shared;
use crate::beanstalk::TubeName;
use crate::beanstalk::binlog::{self, OldJob, OldState};

/// The progress file.
const PROGRESS: &str = "beanstalkd-takeover";
/// Where beanstalkd's files go once taken over.
pub const TAKEN_OVER: &str = "beanstalkd-taken-over";
/// Jobs put between two progress writes.
const CHUNK: usize = 1_000;
/// Puts in flight at once (they share group commits).
const IN_FLIGHT: usize = 64;
/// The most directory entries looked at.
const DIR_ENTRIES_MAX: usize = 100_000;

/// beanstalkd's `binlog.N` files in `dir`, in the order of N.
pub fn binlog_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .take(DIR_ENTRIES_MAX)
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("binlog.")?;
            let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
            Some((n.parse().ok().filter(|_| digits)?, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// What a takeover did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TakenOver {
    /// Jobs put ready.
    pub ready: u64,
    /// Jobs put delayed.
    pub delayed: u64,
    /// Jobs put and buried.
    pub buried: u64,
}

/// beanstalkd's log as read, before anything is written.
#[derive(Debug)]
pub struct OldLog {
    files: Vec<PathBuf>,
    jobs: Vec<OldJob>,
}

impl OldLog {
    /// The jobs it holds.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }
}

/// Refuses to read beanstalkd's log while a beanstalkd still runs on
/// `dir`: it holds a POSIX write lock on `dir/lock` while it runs.
fn refuse_live_beanstalkd(dir: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return Ok(()); // no lock file (or not ours to open): nothing holds it
    };
    // SAFETY: an all-zero flock is a valid value of this plain C struct;
    // fcntl(F_SETLK) reads it and the descriptor is ours for the call.
    let taken = unsafe {
        let mut lk: libc::flock = std::mem::zeroed();
        lk.l_type = libc::F_WRLCK as libc::c_short;
        lk.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lk) == 0
    };
    // Our probe's lock, if taken, goes with the descriptor.
    drop(file);
    if taken {
        return Ok(());
    }
    Err(format!(
        "a beanstalkd still runs on {} (it holds {}): stop it first, then start beaver \
         there to take its jobs over",
        dir.display(),
        path.display()
    ))
}

/// Reads beanstalkd's log in `dir` (jobs of up to `body_max` bytes);
/// `None` when there is none. Writes nothing: a log beaver cannot read
/// stops the start before the dir is touched.
pub fn read_log(dir: &Path, body_max: u32) -> Result<Option<OldLog>, String> {
    let files = binlog_files(dir);
    if files.is_empty() {
        return Ok(None);
    }
    refuse_live_beanstalkd(dir)?;
    // One file in memory at a time, and the jobs.
    let mut reader = binlog::LogReader::new(u64::from(body_max));
    for f in &files {
        let bytes = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let name = f
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        reader.file(&name, &bytes)?;
    }
    let jobs = reader.jobs();
    Ok(Some(OldLog { files, jobs }))
}

/// Takes over the jobs of `old`, read from `dir` (see the module docs);
/// `old` `None`: a finished takeover's progress file is removed, if left.
/// `now_ms`: the wall clock.
pub async fn take_over(
    old: Option<OldLog>,
    dir: &Path,
    shared: &Arc<Shared>,
    now_ms: u64,
) -> Result<Option<TakenOver>, String> {
    let Some(OldLog { files, jobs }) = old else {
        let _ = std::fs::remove_file(dir.join(PROGRESS));
        return Ok(None);
    };
    let done_through = read_progress(dir)?;
    let mut taken = TakenOver::default();
    let left: Vec<OldJob> = jobs.into_iter().filter(|j| j.id > done_through).collect();
    for chunk in left.chunks(CHUNK) {
        put_chunk(shared, chunk, now_ms, &mut taken).await?;
        if let Some(last) = chunk.last() {
            write_progress(dir, last.id)?;
        }
    }
    move_aside(dir, &files)?;
    let _ = std::fs::remove_file(dir.join(PROGRESS));
    Ok(Some(taken))
}

/// Puts `chunk` (many in flight), then buries its buried jobs.
async fn put_chunk(
    shared: &Arc<Shared>,
    chunk: &[OldJob],
    now_ms: u64,
    taken: &mut TakenOver,
) -> Result<(), String> {
    let puts = stream::iter(chunk.iter().map(|j| put_one(shared, j, now_ms)));
    let numbers: Vec<Result<(u64, OldState, u32), String>> =
        puts.buffer_unordered(IN_FLIGHT).collect().await;
    let mut session = Session::new(shared.client.clone(), "beanstalkd takeover");
    for n in numbers {
        let (number, state, pri) = n?;
        match state {
            OldState::Ready => taken.ready += 1,
            OldState::Delayed => taken.delayed += 1,
            OldState::Buried => {
                bury(shared, &mut session, number, pri).await?;
                taken.buried += 1;
            }
        }
    }
    Ok(())
}

/// Puts one job; its number, state and priority.
async fn put_one(shared: &Shared, j: &OldJob, now_ms: u64) -> Result<(u64, OldState, u32), String> {
    let tube = TubeName::new(&j.tube).ok_or_else(|| {
        let name = String::from_utf8_lossy(&j.tube);
        format!(
            "beanstalkd job {} is in tube {name:?}, a name beaver cannot take",
            j.id
        )
    })?;
    let ttr_ms = u64::try_from(j.ttr_ns / 1_000_000).unwrap_or(0);
    let delay_ms = match j.state {
        OldState::Delayed => u64::try_from(j.deadline_ns / 1_000_000)
            .unwrap_or(0)
            .saturating_sub(now_ms),
        OldState::Ready | OldState::Buried => 0,
    };
    let number = shared
        .put_job(&tube, &j.body, j.pri, delay_ms, ttr_ms)
        .await
        .map_err(|e| format!("cannot put beanstalkd job {}: {e}", j.id))?;
    Ok((number, j.state, j.pri))
}

/// Buries the job numbered `number` (just put, ready) through `session`.
async fn bury(shared: &Shared, session: &mut Session, number: u64, pri: u32) -> Result<(), String> {
    let id = JobId::assigned(number, false);
    let failed = |e: beaver_core::Rejection| format!("cannot bury job {number}: {e}");
    session.reserve_job(id).await.map_err(failed)?;
    let how = Finish::Bury {
        priority: Some(beaver_core::priority_from_beanstalk(pri)),
    };
    match session.end(number, how, |_| {}).await {
        Some(Ok(())) => {
            let order = shared.next_bury_order();
            shared.bump(number, |c| c.buried_order = order);
            Ok(())
        }
        Some(Err(e)) => Err(failed(e)),
        None => Err(format!("cannot bury job {number}: not reserved")),
    }
}

/// The last beanstalkd id a previous takeover made durable (0: none).
fn read_progress(dir: &Path) -> Result<u64, String> {
    let path = dir.join(PROGRESS);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            format!(
                "{} does not hold a job id ({text:?}); remove it to take every job over again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Records `through` durably: a temp file, synced, renamed, the dir synced.
fn write_progress(dir: &Path, through: u64) -> Result<(), String> {
    let tmp = dir.join(format!("{PROGRESS}.tmp"));
    let fail = |e: std::io::Error| {
        format!(
            "cannot record the takeover's progress in {}: {e}",
            dir.display()
        )
    };
    std::fs::write(&tmp, format!("{through}\n")).map_err(fail)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, dir.join(PROGRESS)).map_err(fail)?;
    sync_dir(dir).map_err(fail)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves `files` into `dir/beanstalkd-taken-over/`, durably.
fn move_aside(dir: &Path, files: &[PathBuf]) -> Result<(), String> {
    let aside = dir.join(TAKEN_OVER);
    let fail =
        |e: std::io::Error| format!("cannot move beanstalkd's log into {}: {e}", aside.display());
    std::fs::create_dir_all(&aside).map_err(fail)?;
    for f in files {
        if let Some(name) = f.file_name() {
            std::fs::rename(f, aside.join(name)).map_err(fail)?;
        }
    }
    sync_dir(&aside).map_err(fail)?;
    sync_dir(dir).map_err(fail)
}
