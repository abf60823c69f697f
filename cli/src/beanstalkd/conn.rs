//! One beanstalkd connection: frames in, commands mapped onto the
//! runtime's client, replies out, one command at a time. Every reply that
//! reports a change comes from a client future, which resolves only once
//! the change is durable.

use std::collections::BTreeMap;
use std::time::Duration;

use beaver_core::{JobId, JobSpec, JobState, JobView, QueueName, Rejection, RequeueTarget};
use beaver_runtime::QueuePause;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Shared, body, now_ms, peek, stats};
use crate::beanstalk::{Command, Frame, Framer, Reply, TubeName};

/// The most jobs one connection may hold reserved at once; a reserve
/// beyond it is answered `OUT_OF_MEMORY`.
pub const RESERVED_PER_CONNECTION_MAX: usize = 1_024;
/// The most tubes one connection may watch; a watch beyond it is
/// answered `OUT_OF_MEMORY`.
pub const WATCHED_MAX: usize = 16;
/// A `reserve` without a timeout asks the core in waits of at most this.
const RESERVE_WAIT_STEP: Duration = Duration::from_secs(60);

/// A job this connection reserved.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub lease: u64,
    pub lease_until: u64,
}

/// What one connection has chosen and holds.
pub struct Conn {
    pub id: u64,
    pub used: TubeName,
    pub watched: Vec<TubeName>,
    pub reserved: BTreeMap<u64, Held>,
}

/// Serves one connection until it quits, closes, idles out or the server
/// stops; then gives its reservations back.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(shared: &Shared, mut stream: S, id: u64) {
    let mut conn = Conn {
        id,
        used: TubeName::default_tube(),
        watched: vec![TubeName::default_tube()],
        reserved: BTreeMap::new(),
    };
    let _ = run(shared, &mut stream, &mut conn).await;
    for held in conn.reserved.values() {
        // The job is ready again at once, its priority kept.
        let _ = shared.client.release(held.lease, None, 0).await;
    }
}

/// The read, frame, execute, reply loop. `Err` when the peer is gone.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    conn: &mut Conn,
) -> std::io::Result<()> {
    let mut framer = Framer::new(shared.job_bytes_max);
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let read = tokio::time::timeout(shared.idle_timeout, stream.read(&mut buf)).await;
        let n = match read {
            Ok(r) => r?,
            Err(_) => return Ok(()), // idle too long
        };
        if n == 0 {
            return Ok(());
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, frame) = framer.push(input);
            input = &input[used..];
            match frame {
                Some(Frame::Command(Command::Quit)) => return Ok(()),
                Some(Frame::Command(cmd)) => {
                    shared.count(cmd.verb());
                    execute(shared, conn, cmd, &mut out).await;
                }
                Some(Frame::Refused(r)) => {
                    if let Some(verb) = r.counted_as {
                        shared.count(verb);
                    }
                    r.reply().encode(&mut out);
                }
                None => {}
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
    }
}

/// The job number `id` names, as a job id.
fn job_id(id: u64) -> JobId {
    JobId::assigned(id, false)
}

/// The queue a tube is; `None` for a tube name beaver's queue names
/// cannot spell (see the README).
pub fn queue_of(tube: &TubeName) -> Option<QueueName> {
    QueueName::parse(tube.as_str()).ok()
}

/// Executes one command, writing its reply to `out`.
async fn execute(shared: &Shared, conn: &mut Conn, cmd: Command, out: &mut Vec<u8>) {
    let reply_bytes = match cmd {
        Command::Put {
            pri,
            delay_s,
            ttr_s,
            body,
        } => put(shared, conn, pri, delay_s, ttr_s, &body).await,
        Command::Use(tube) => match queue_of(&tube) {
            Some(_) => {
                conn.used = tube;
                Reply::Using(&conn.used).to_bytes()
            }
            None => Reply::BadFormat.to_bytes(),
        },
        Command::Reserve => reserve(shared, conn, None).await,
        Command::ReserveWithTimeout { timeout_s } => {
            reserve(shared, conn, Some(Duration::from_secs(timeout_s.into()))).await
        }
        Command::ReserveJob { .. } => Reply::NotFound.to_bytes(),
        Command::Delete { id } => delete(shared, conn, id).await,
        Command::Release { id, pri, delay_s } => release(shared, conn, id, pri, delay_s).await,
        Command::Bury { id, pri } => bury(shared, conn, id, pri).await,
        Command::Touch { id } => touch(shared, conn, id).await,
        Command::Watch(tube) => watch(conn, tube),
        Command::Ignore(tube) => ignore(conn, &tube),
        Command::Peek { id } => match live_job(shared, id).await {
            Some(j) => found(&j),
            None => Reply::NotFound.to_bytes(),
        },
        Command::PeekReady | Command::PeekDelayed | Command::PeekBuried => {
            match peek::first(shared, &conn.used, &cmd).await {
                Some(j) => found(&j),
                None => Reply::NotFound.to_bytes(),
            }
        }
        Command::Kick { bound } => kick(shared, conn, bound).await,
        Command::KickJob { id } => kick_job(shared, id).await,
        Command::StatsJob { id } => match live_job(shared, id).await {
            Some(j) => stats::job_yaml(shared, &j),
            None => Reply::NotFound.to_bytes(),
        },
        Command::StatsTube(tube) => stats::tube_yaml(shared, &tube).await,
        Command::Stats => stats::server_yaml(shared).await,
        Command::ListTubes => stats::list_tubes(shared).await,
        Command::ListTubeUsed => Reply::Using(&conn.used).to_bytes(),
        Command::ListTubesWatched => {
            Reply::Ok(&crate::beanstalk::stats::tube_list_yaml(&conn.watched)).to_bytes()
        }
        Command::PauseTube { tube, delay_s } => pause(shared, &tube, delay_s).await,
        Command::Quit => Vec::new(),
    };
    out.extend_from_slice(&reply_bytes);
}

/// `FOUND` with a job's body.
fn found(j: &JobView) -> Vec<u8> {
    let body = j
        .payload
        .as_ref()
        .map(body::from_payload)
        .unwrap_or_default();
    Reply::Found {
        id: j.seq,
        body: &body,
    }
    .to_bytes()
}

/// The job numbered `id` if it still exists for beanstalkd: not
/// completed or cancelled (deleted), and a number beaver assigned.
pub async fn live_job(shared: &Shared, id: u64) -> Option<JobView> {
    let j = shared.client.get(job_id(id)).await.ok()??;
    let live = !matches!(j.state, JobState::Completed | JobState::Cancelled);
    (live && j.seq == id).then_some(j)
}

async fn put(
    shared: &Shared,
    conn: &Conn,
    pri: u32,
    delay_s: u32,
    ttr_s: u32,
    b: &[u8],
) -> Vec<u8> {
    if shared.draining() {
        return Reply::Draining.to_bytes();
    }
    let (Some(queue), Ok(payload)) = (queue_of(&conn.used), body::to_payload(b)) else {
        return Reply::InternalError.to_bytes();
    };
    let spec = JobSpec {
        id: None,
        queue: Some(queue),
        payload,
        priority: beaver_core::priority_from_beanstalk(pri),
        max_attempts: Some(super::UNLIMITED_ATTEMPTS),
        // beanstalkd runs a TTR of 0 as 1 second.
        timeout_ms: Some(u64::from(ttr_s.max(1)) * 1_000),
        delay_ms: u64::from(delay_s) * 1_000,
    };
    match shared.client.enqueue(vec![spec]).await {
        Ok(done) => match done.first().and_then(|e| e.id.assigned_number()) {
            Some(n) => {
                shared.bump(n, |c| c.delay_s = u64::from(delay_s));
                Reply::Inserted(n).to_bytes()
            }
            None => Reply::InternalError.to_bytes(),
        },
        Err(Rejection::Stopping) => Reply::Draining.to_bytes(),
        Err(_) => Reply::OutOfMemory.to_bytes(),
    }
}

/// The earliest deadline among this connection's reservations.
fn soonest_deadline(conn: &Conn) -> Option<u64> {
    conn.reserved.values().map(|h| h.lease_until).min()
}

async fn reserve(shared: &Shared, conn: &mut Conn, timeout: Option<Duration>) -> Vec<u8> {
    if conn.reserved.len() >= RESERVED_PER_CONNECTION_MAX {
        return Reply::OutOfMemory.to_bytes();
    }
    let queues: Vec<QueueName> = conn.watched.iter().filter_map(queue_of).collect();
    let holder = format!("beanstalk connection {}", conn.id);
    let give_up = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let now = now_ms();
        // A reservation in its last second is said at once, and ends a wait.
        let soon = soonest_deadline(conn).map(|d| d.saturating_sub(1_000));
        if soon.is_some_and(|s| s <= now) {
            return Reply::DeadlineSoon.to_bytes();
        }
        let mut wait = match give_up {
            Some(end) => end.saturating_duration_since(tokio::time::Instant::now()),
            None => RESERVE_WAIT_STEP,
        };
        if let Some(s) = soon {
            wait = wait.min(Duration::from_millis(s - now));
        }
        let wait = wait.min(shared.lease_wait_max);
        let asked = (!wait.is_zero()).then_some(wait);
        let jobs = match shared.client.lease(queues.clone(), 1, asked, &holder).await {
            Ok(jobs) => jobs,
            Err(_) => return Reply::OutOfMemory.to_bytes(),
        };
        if let Some(leased) = jobs.into_iter().next() {
            let id = leased.job.seq;
            let held = Held {
                lease: leased.lease_id,
                lease_until: leased.lease_until,
            };
            conn.reserved.insert(id, held);
            shared.bump(id, |c| c.reserves += 1);
            let body = leased
                .job
                .payload
                .as_ref()
                .map(body::from_payload)
                .unwrap_or_default();
            return Reply::Reserved { id, body: &body }.to_bytes();
        }
        let timed_out = give_up.is_some_and(|end| tokio::time::Instant::now() >= end);
        if timed_out {
            return Reply::TimedOut.to_bytes();
        }
    }
}

async fn delete(shared: &Shared, conn: &mut Conn, id: u64) -> Vec<u8> {
    if let Some(held) = conn.reserved.get(&id).copied() {
        let done = shared.client.complete(held.lease).await;
        conn.reserved.remove(&id);
        return match done {
            Ok(()) => {
                shared.forget(id);
                Reply::Deleted.to_bytes()
            }
            Err(_) => Reply::NotFound.to_bytes(),
        };
    }
    if live_job(shared, id).await.is_none() {
        return Reply::NotFound.to_bytes();
    }
    match shared.client.delete(job_id(id)).await {
        Ok(()) => {
            shared.forget(id);
            Reply::Deleted.to_bytes()
        }
        Err(_) => Reply::NotFound.to_bytes(),
    }
}

async fn release(shared: &Shared, conn: &mut Conn, id: u64, pri: u32, delay_s: u32) -> Vec<u8> {
    let Some(held) = conn.reserved.remove(&id) else {
        return Reply::NotFound.to_bytes();
    };
    let priority = Some(beaver_core::priority_from_beanstalk(pri));
    let delay_ms = u64::from(delay_s) * 1_000;
    match shared.client.release(held.lease, priority, delay_ms).await {
        Ok(()) => {
            shared.bump(id, |c| {
                c.releases += 1;
                c.delay_s = u64::from(delay_s);
            });
            Reply::Released.to_bytes()
        }
        Err(_) => Reply::NotFound.to_bytes(),
    }
}

async fn bury(shared: &Shared, conn: &mut Conn, id: u64, pri: u32) -> Vec<u8> {
    let Some(held) = conn.reserved.remove(&id) else {
        return Reply::NotFound.to_bytes();
    };
    let priority = Some(beaver_core::priority_from_beanstalk(pri));
    match shared.client.bury(held.lease, priority).await {
        Ok(()) => {
            shared.bump(id, |c| c.buries += 1);
            Reply::Buried.to_bytes()
        }
        Err(_) => Reply::NotFound.to_bytes(),
    }
}

async fn touch(shared: &Shared, conn: &mut Conn, id: u64) -> Vec<u8> {
    let Some(held) = conn.reserved.get_mut(&id) else {
        return Reply::NotFound.to_bytes();
    };
    match shared.client.heartbeat(held.lease, None).await {
        Ok(until) => {
            held.lease_until = until;
            Reply::Touched.to_bytes()
        }
        Err(_) => {
            conn.reserved.remove(&id);
            Reply::NotFound.to_bytes()
        }
    }
}

fn watch(conn: &mut Conn, tube: TubeName) -> Vec<u8> {
    if queue_of(&tube).is_none() {
        return Reply::BadFormat.to_bytes();
    }
    if !conn.watched.contains(&tube) {
        if conn.watched.len() >= WATCHED_MAX {
            return Reply::OutOfMemory.to_bytes();
        }
        conn.watched.push(tube);
    }
    Reply::Watching(conn.watched.len() as u64).to_bytes()
}

fn ignore(conn: &mut Conn, tube: &TubeName) -> Vec<u8> {
    if conn.watched.len() == 1 && conn.watched[0] == *tube {
        return Reply::NotIgnored.to_bytes();
    }
    conn.watched.retain(|t| t != tube);
    Reply::Watching(conn.watched.len() as u64).to_bytes()
}

/// `kick`: up to `bound` buried jobs of the used tube, oldest buried
/// first. (Kicking delayed jobs when none is buried is not done yet: 0.)
async fn kick(shared: &Shared, conn: &Conn, bound: u32) -> Vec<u8> {
    let buried = peek::buried(shared, &conn.used, bound as usize).await;
    let mut kicked = 0;
    for j in buried {
        if shared
            .client
            .requeue(RequeueTarget::One(j.id.clone()))
            .await
            .is_ok()
        {
            shared.bump(j.seq, |c| c.kicks += 1);
            kicked += 1;
        }
    }
    Reply::Kicked(kicked).to_bytes()
}

async fn kick_job(shared: &Shared, id: u64) -> Vec<u8> {
    let Some(j) = live_job(shared, id)
        .await
        .filter(|j| j.state == JobState::Dead)
    else {
        return Reply::NotFound.to_bytes();
    };
    match shared.client.requeue(RequeueTarget::One(j.id)).await {
        Ok(_) => {
            shared.bump(id, |c| c.kicks += 1);
            Reply::KickedJob.to_bytes()
        }
        Err(_) => Reply::NotFound.to_bytes(),
    }
}

async fn pause(shared: &Shared, tube: &TubeName, delay_s: u32) -> Vec<u8> {
    let Some(queue) = queue_of(tube) else {
        return Reply::NotFound.to_bytes();
    };
    let how = match delay_s {
        0 => QueuePause::Resume,
        s => QueuePause::For(Duration::from_secs(s.into())),
    };
    match shared.client.pause_queue(queue, how).await {
        Ok(()) => {
            shared.count_pause(tube);
            Reply::Paused.to_bytes()
        }
        Err(_) => Reply::NotFound.to_bytes(),
    }
}
