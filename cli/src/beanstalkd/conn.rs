//! One beanstalkd connection: frames in, commands mapped onto the
//! runtime's client, replies out, one command at a time. Every reply that
//! reports a change comes from a client future, which resolves only once
//! the change is durable.

use std::time::Duration;

use beaver_core::{JobId, JobState, JobView, Rejection};
use beaver_runtime::{Finish, QueuePause, Reservation, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::tubes::queue_of;
use super::{PutFailed, Shared, body, now_ms, peek, stats};
use crate::beanstalk::{Command, Frame, Framer, Reply, TubeName, Verb};

/// The most jobs one connection may hold reserved at once; a reserve
/// beyond it is answered `OUT_OF_MEMORY`.
pub const RESERVED_PER_CONNECTION_MAX: usize = 1_024;
/// The most tubes one connection may watch; a watch beyond it is
/// answered `OUT_OF_MEMORY`.
pub const WATCHED_MAX: usize = 16;
/// The most bytes read ahead while a reserve waits (pipelined commands);
/// beyond it the connection is not read until the reserve is answered.
const READ_AHEAD_MAX: usize = 256 * 1024;
/// The most jobs one `kick` kicks (one durable step each).
const KICK_MAX: usize = 10_000;

/// Bytes read ahead while a reserve waited, and whether the peer has
/// closed its sending side.
#[derive(Default)]
pub struct ReadAhead {
    pub bytes: Vec<u8>,
    pub eof: bool,
    /// The buffer each read while a reserve waits goes into: made (and
    /// zeroed) at the connection's first reserve, not at every one.
    chunk: Vec<u8>,
}

/// The most bytes one read takes while a reserve waits.
const READ_CHUNK: usize = 4096;

/// What one connection has chosen and holds.
pub struct Conn {
    pub used: TubeName,
    pub watched: Vec<TubeName>,
    /// The jobs it reserved (given back when it closes).
    pub session: Session,
    pub ahead: ReadAhead,
    pub producer: bool,
    pub worker: bool,
}

/// Serves one connection until it quits, closes, idles out or the server
/// stops; then gives its reservations back.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(shared: &Shared, mut stream: S, id: u64) {
    let mut conn = Conn {
        used: TubeName::default_tube(),
        watched: vec![TubeName::default_tube()],
        session: Session::new(shared.client.clone(), format!("beanstalk connection {id}")),
        ahead: ReadAhead::default(),
        producer: false,
        worker: false,
    };
    use std::sync::atomic::Ordering::Relaxed;
    shared.connections.fetch_add(1, Relaxed);
    shared.total_connections.fetch_add(1, Relaxed);
    shared.tube(&conn.used, |f| {
        f.using += 1;
        f.watching += 1;
    });
    let _ = run(shared, &mut stream, &mut conn).await;
    // Every job is ready again at once, its priority kept.
    conn.session
        .close(|job, r| end_reservation(shared, job, r.lease))
        .await;
    shared.tube(&conn.used, |f| f.using = f.using.saturating_sub(1));
    for t in &conn.watched {
        shared.tube(t, |f| f.watching = f.watching.saturating_sub(1));
    }
    let mut referenced = conn.watched.clone();
    referenced.push(conn.used.clone());
    shared.drop_idle_tubes(&referenced).await;
    if conn.producer {
        shared.producers.fetch_sub(1, Relaxed);
    }
    if conn.worker {
        shared.workers.fetch_sub(1, Relaxed);
    }
    shared.connections.fetch_sub(1, Relaxed);
    // Closed only now: a peer that saw the close sees every figure and
    // reservation of this connection gone.
    drop(stream);
}

/// The read, frame, execute, reply loop. `Err` when the peer is gone.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    conn: &mut Conn,
) -> std::io::Result<()> {
    let mut pending = Pending {
        framer: Framer::new(shared.job_bytes_max),
        out: Vec::new(),
        puts: Vec::with_capacity(PIPELINED_PUTS_MAX),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle = IdleLimit::new(shared.idle_timeout);
    loop {
        let chunk = match std::mem::take(&mut conn.ahead.bytes) {
            ahead if !ahead.is_empty() => ahead,
            _ if conn.ahead.eof => return Ok(()),
            _ => {
                let reserved = reserved_for(&conn.session);
                let Some(read) = idle.read(stream, &mut buf, reserved).await else {
                    return Ok(()); // idle too long
                };
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                buf[..n].to_vec()
            }
        };
        if !run_chunk(shared, conn, &mut pending, &chunk, stream).await? {
            return Ok(());
        }
    }
}

/// What a connection keeps between its reads: the framer (a command may
/// span reads), and replies and puts not yet done (empty between reads).
struct Pending {
    framer: Framer,
    out: Vec<u8>,
    puts: Vec<PutArgs>,
}

/// Runs the commands of one read and writes their replies, in order;
/// `false` once the client quit.
async fn run_chunk<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    conn: &mut Conn,
    p: &mut Pending,
    mut input: &[u8],
    stream: &mut S,
) -> std::io::Result<bool> {
    while !input.is_empty() {
        let (used, frame) = p.framer.push(input);
        input = &input[used..];
        let Some(frame) = frame else { continue };
        // A put waits for the puts after it in this read (up to a batch);
        // anything else runs once the puts before it did.
        let other = match frame {
            Frame::Command(Command::Put {
                pri,
                delay_s,
                ttr_s,
                body,
            }) => {
                shared.count(Verb::Put);
                p.puts.push(PutArgs {
                    pri,
                    delay_s,
                    ttr_s,
                    body,
                });
                if p.puts.len() < PIPELINED_PUTS_MAX {
                    continue;
                }
                None
            }
            other => Some(other),
        };
        put_all(shared, conn, &mut p.puts, &mut p.out).await;
        match other {
            None => {}
            Some(Frame::Command(Command::Quit)) => {
                stream.write_all(&p.out).await?;
                return Ok(false);
            }
            Some(Frame::Command(cmd)) => {
                shared.count(cmd.verb());
                execute(shared, conn, cmd, &mut p.out, stream).await;
            }
            Some(Frame::Refused(r)) => {
                if let Some(verb) = r.counted_as {
                    shared.count(verb);
                }
                r.reply().encode(&mut p.out);
            }
        }
        write_out(stream, &mut p.out).await?;
    }
    put_all(shared, conn, &mut p.puts, &mut p.out).await;
    write_out(stream, &mut p.out).await?;
    Ok(true)
}

/// Writes the replies in `out`, if any, and empties it.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Puts of one read run together, at most: their records can share a
/// group commit, where one at a time each waits for its own fdatasync.
/// 8 per connection keeps 1,024 connections' puts within half of the
/// engine's request queue (16,384), whose overflow is answered
/// `OUT_OF_MEMORY`.
const PIPELINED_PUTS_MAX: usize = 8;

/// A `put` command's arguments.
struct PutArgs {
    pri: u32,
    delay_s: u32,
    ttr_s: u32,
    body: Vec<u8>,
}

/// Runs `puts` (consecutive in the connection's input, all to the tube it
/// uses), appending their replies to `out` in order, and empties it. The
/// core takes them in order, so their job numbers rise in that order.
async fn put_all(shared: &Shared, conn: &mut Conn, puts: &mut Vec<PutArgs>, out: &mut Vec<u8>) {
    if puts.is_empty() {
        return;
    }
    note_producer(shared, conn);
    let tube = &conn.used;
    if let [p] = &puts[..] {
        out.extend_from_slice(&put_reply(shared, tube, p).await);
    } else {
        let replies =
            futures_util::future::join_all(puts.iter().map(|p| put_reply(shared, tube, p)));
        for r in replies.await {
            out.extend_from_slice(&r);
        }
    }
    puts.clear();
}

/// How long the connection's reservations still run (nothing if it holds
/// none): a worker is silent while it works a job, so its silence counts
/// toward the idle limit only from when its last reservation ends
/// (beanstalkd closes no connection for silence; beaver closes one only
/// when it has been silent for the limit and holds nothing).
fn reserved_for(session: &Session) -> Duration {
    if session.is_empty() {
        return Duration::ZERO;
    }
    let ends = session.reservations().map(|(_, r)| r.lease_until);
    time_to_last(ends, now_ms())
}

/// From `now` to the latest of `ends` (nothing if none is later).
fn time_to_last(ends: impl Iterator<Item = u64>, now: u64) -> Duration {
    let last = ends.max().unwrap_or(now);
    Duration::from_millis(last.saturating_sub(now))
}

/// A connection's idle limit, kept in one timer for its whole life: each
/// read notes when its silence begins to count, and the timer, when it
/// fires early, moves to that wait's deadline. A timer made and dropped
/// per command cost timer-wheel work and a wake-up of the runtime's
/// driver per put.
struct IdleLimit {
    limit: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    waiting_since: tokio::time::Instant,
}

impl IdleLimit {
    fn new(limit: Duration) -> IdleLimit {
        IdleLimit {
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            waiting_since: tokio::time::Instant::now(),
        }
    }

    /// Reads into `buf`; `None` when nothing arrives for `grace` and then
    /// `limit` more.
    async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut [u8],
        grace: Duration,
    ) -> Option<std::io::Result<usize>> {
        self.waiting_since = tokio::time::Instant::now() + grace;
        loop {
            tokio::select! {
                biased;
                read = stream.read(buf) => return Some(read),
                () = self.timer.as_mut() => {
                    let deadline = self.waiting_since + self.limit;
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// The job number `id` names, as a job id.
fn job_id(id: u64) -> JobId {
    JobId::assigned(id, false)
}

/// Executes one command, writing its reply to `out`. A reserve reads
/// ahead from `stream` while it waits.
async fn execute<S: AsyncRead + Unpin>(
    shared: &Shared,
    conn: &mut Conn,
    cmd: Command,
    out: &mut Vec<u8>,
    stream: &mut S,
) {
    let reply_bytes = match cmd {
        Command::Put {
            pri,
            delay_s,
            ttr_s,
            body,
        } => {
            note_producer(shared, conn);
            let p = PutArgs {
                pri,
                delay_s,
                ttr_s,
                body,
            };
            put_reply(shared, &conn.used, &p).await
        }
        Command::Use(tube) => use_tube(shared, conn, tube).await,
        Command::Reserve => reserve(shared, conn, None, stream).await,
        Command::ReserveWithTimeout { timeout_s } => {
            let timeout = Some(Duration::from_secs(timeout_s.into()));
            reserve(shared, conn, timeout, stream).await
        }
        Command::ReserveJob { id } => reserve_job(shared, conn, id).await,
        Command::Delete { id } => delete(shared, conn, id).await,
        Command::Release { id, pri, delay_s } => release(shared, conn, id, pri, delay_s).await,
        Command::Bury { id, pri } => bury(shared, conn, id, pri).await,
        Command::Touch { id } => touch(conn, id).await,
        Command::Watch(tube) => watch(shared, conn, tube),
        Command::Ignore(tube) => ignore(shared, conn, &tube).await,
        Command::Peek { id } => match live_job(shared, id).await {
            Ok(Some(j)) => found(&j),
            Ok(None) => Reply::NotFound.to_bytes(),
            Err(e) => refused(&e),
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
            Ok(Some(j)) => stats::job_yaml(shared, &j),
            Ok(None) => Reply::NotFound.to_bytes(),
            Err(e) => refused(&e),
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
/// completed or cancelled (deleted), and a number beaver assigned. `Err`
/// when the engine could not answer (see [`refused`]).
pub async fn live_job(shared: &Shared, id: u64) -> Result<Option<JobView>, Rejection> {
    let Some(j) = shared.client.get(job_id(id)).await? else {
        return Ok(None);
    };
    let live = !matches!(j.state, JobState::Completed | JobState::Cancelled);
    Ok((live && j.seq == id).then_some(j))
}

/// The reply to a request the engine refused. `OUT_OF_MEMORY` ("try again
/// later", which beanstalkd may answer to any command) when it could not
/// take the request now: too many requests waiting, its log failing, or
/// stopping. The job is then as it was (a reservation still held), so a
/// retry may pass. `NOT_FOUND` for the rest: no such job, not held, or in
/// a state that forbids the change. Never `NOT_FOUND` for a job that is
/// there: a client told so of its own job stops retrying.
pub fn refused(e: &Rejection) -> Vec<u8> {
    match e {
        Rejection::Busy { .. } | Rejection::Storage { .. } | Rejection::Stopping => {
            Reply::OutOfMemory.to_bytes()
        }
        Rejection::Invalid { .. }
        | Rejection::TooLarge { .. }
        | Rejection::NotFound { .. }
        | Rejection::Conflict { .. }
        | Rejection::LeaseLost { .. } => Reply::NotFound.to_bytes(),
    }
}

/// Counts the connection among `current-producers`, once.
fn note_producer(shared: &Shared, conn: &mut Conn) {
    if !conn.producer {
        conn.producer = true;
        shared
            .producers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Puts one job into `tube`; its reply.
async fn put_reply(shared: &Shared, tube: &TubeName, p: &PutArgs) -> Vec<u8> {
    if shared.draining() {
        return Reply::Draining.to_bytes();
    }
    let ttr_ms = u64::from(p.ttr_s) * 1_000;
    let delay_ms = u64::from(p.delay_s) * 1_000;
    match shared.put_job(tube, &p.body, p.pri, delay_ms, ttr_ms).await {
        Ok(n) => {
            // A new number has no counters yet: all read 0 until one
            // changes, so a put without a delay adds no entry.
            if p.delay_s > 0 {
                shared.bump(n, |c| c.delay_s = u64::from(p.delay_s));
            }
            Reply::Inserted(n).to_bytes()
        }
        Err(PutFailed::Body(_) | PutFailed::NoNumber) => Reply::InternalError.to_bytes(),
        Err(PutFailed::Refused(Rejection::Stopping)) => Reply::Draining.to_bytes(),
        Err(PutFailed::Refused(_)) => Reply::OutOfMemory.to_bytes(),
    }
}

/// Counts the connection among `current-workers`, once.
fn become_worker(shared: &Shared, conn: &mut Conn) {
    if !conn.worker {
        conn.worker = true;
        shared
            .workers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn reserve<S: AsyncRead + Unpin>(
    shared: &Shared,
    conn: &mut Conn,
    timeout: Option<Duration>,
    stream: &mut S,
) -> Vec<u8> {
    become_worker(shared, conn);
    if conn.session.len() >= RESERVED_PER_CONNECTION_MAX {
        return Reply::OutOfMemory.to_bytes();
    }
    for t in &conn.watched {
        shared.tube(t, |f| f.waiting += 1);
    }
    let reply = reserve_waiting(shared, conn, timeout, stream).await;
    for t in &conn.watched {
        shared.tube(t, |f| f.waiting = f.waiting.saturating_sub(1));
    }
    reply
}

/// beanstalkd's safety margin: a reserve while one of the connection's
/// reservations is in its last second answers `DEADLINE_SOON`.
const MARGIN_MS: u64 = 1_000;

/// When the first of `session`'s reservations is surely in its last second,
/// on the engine's clock (0: from the start). A deadline the engine sets
/// is never before the reservation's true one (when it was made, plus its
/// TTR; see [`beaver_core::span_end`]), so the margin starts at most a
/// millisecond late, never early. A TTR of a second or less is in its
/// margin from the start, as in beanstalkd.
fn margin_starts(session: &Session) -> Option<u64> {
    session.reservations().map(|(_, r)| margin_start(r)).min()
}

/// When reservation `r` is surely in its last second (see [`margin_starts`]).
fn margin_start(r: &Reservation) -> u64 {
    if r.timeout_ms <= MARGIN_MS {
        0
    } else {
        r.lease_until.saturating_sub(MARGIN_MS)
    }
}

/// What a wait for a job ended with.
enum Waited {
    Job(beaver_core::LeasedJob),
    Nothing,
    PeerClosed,
    Refused,
}

async fn reserve_waiting<S: AsyncRead + Unpin>(
    shared: &Shared,
    conn: &mut Conn,
    timeout: Option<Duration>,
    stream: &mut S,
) -> Vec<u8> {
    let give_up = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let now = now_ms();
        // A reservation in its last second is said at once, and ends a wait.
        let soon = margin_starts(&conn.session);
        if soon.is_some_and(|s| s <= now) {
            return Reply::DeadlineSoon.to_bytes();
        }
        let mut wait = match give_up {
            Some(end) => end.saturating_duration_since(tokio::time::Instant::now()),
            // The longest wait the core takes: each renewal rejoins the
            // waiting order at its end (README: what differs).
            None => shared.lease_wait_max,
        };
        if let Some(s) = soon {
            wait = wait.min(Duration::from_millis(s - now));
        }
        let wait = wait.min(shared.lease_wait_max);
        match lease_one(shared, conn, wait, stream).await {
            Waited::Job(leased) => return reserved(shared, leased),
            // beanstalkd answers a reserve of a half-closed connection at once.
            Waited::PeerClosed => return Reply::TimedOut.to_bytes(),
            Waited::Refused => return Reply::OutOfMemory.to_bytes(),
            Waited::Nothing => {}
        }
        let timed_out = give_up.is_some_and(|end| tokio::time::Instant::now() >= end);
        if timed_out {
            return Reply::TimedOut.to_bytes();
        }
    }
}

/// Asks for one job of the watched tubes, waiting up to `wait`, while
/// reading ahead what the peer sends (a close ends the wait: dropping the
/// lease future takes no job).
async fn lease_one<S: AsyncRead + Unpin>(
    shared: &Shared,
    conn: &mut Conn,
    wait: Duration,
    stream: &mut S,
) -> Waited {
    let queues = conn.watched.iter().map(queue_of).collect();
    let lives = shared.lives_of(&conn.watched);
    let asked = (!wait.is_zero()).then_some(wait);
    let lease = conn.session.reserve(queues, lives, asked);
    tokio::pin!(lease);
    let ahead = &mut conn.ahead;
    if ahead.chunk.len() < READ_CHUNK {
        ahead.chunk = vec![0; READ_CHUNK];
    }
    loop {
        let reading = !ahead.eof && ahead.bytes.len() < READ_AHEAD_MAX;
        tokio::select! {
            biased;
            r = &mut lease => return match r {
                Ok(job) => job.map_or(Waited::Nothing, Waited::Job),
                Err(_) => Waited::Refused,
            },
            n = stream.read(&mut ahead.chunk), if reading => match n {
                Ok(0) | Err(_) => {
                    ahead.eof = true;
                    return Waited::PeerClosed;
                }
                Ok(n) => ahead.bytes.extend_from_slice(&ahead.chunk[..n]),
            },
        }
    }
}

/// Notes that this process ends the reservation `lease` of job `id`
/// (before asking: another connection may reserve the job the moment the
/// end is durable).
fn end_reservation(shared: &Shared, id: u64, lease: u64) {
    shared.bump(id, |c| {
        if c.open_lease == Some(lease) {
            c.open_lease = None;
        }
    });
}

/// Counts a job this connection's session reserved and answers `RESERVED`.
fn reserved(shared: &Shared, leased: beaver_core::LeasedJob) -> Vec<u8> {
    let id = leased.job.seq;
    shared.bump(id, |c| {
        // A reservation nobody ended: its TTR ran out.
        if c.open_lease.is_some() {
            c.timeouts += 1;
        }
        c.open_lease = Some(leased.lease_id);
        c.reserves += 1;
    });
    let body = leased
        .job
        .payload
        .as_ref()
        .map(body::from_payload)
        .unwrap_or_default();
    Reply::Reserved { id, body: &body }.to_bytes()
}

async fn delete(shared: &Shared, conn: &mut Conn, id: u64) -> Vec<u8> {
    // A job this connection holds is completed through its lease (a stale
    // lease is refused: NOT_FOUND); any other live job is cancelled.
    let (done, queue) = match conn.session.get(id).map(|r| r.queue.clone()) {
        Some(queue) => {
            let ended = |lease| end_reservation(shared, id, lease);
            match conn.session.end(id, Finish::Complete, ended).await {
                Some(done) => (done, queue),
                None => return Reply::NotFound.to_bytes(),
            }
        }
        None => match live_job(shared, id).await {
            Ok(Some(job)) => (shared.client.delete(job.id).await, job.queue),
            Ok(None) => return Reply::NotFound.to_bytes(),
            Err(e) => return refused(&e),
        },
    };
    if let Err(e) = done {
        return refused(&e);
    }
    shared.forget(id);
    if let Some(tube) = shared.tube_of(&queue) {
        shared.tube(&tube, |f| f.cmd_delete += 1);
        // Its last job gone, a tube nobody uses or watches goes too (its
        // figures with it), as in beanstalkd.
        shared.drop_idle_tubes(std::slice::from_ref(&tube)).await;
    }
    Reply::Deleted.to_bytes()
}

async fn release(shared: &Shared, conn: &mut Conn, id: u64, pri: u32, delay_s: u32) -> Vec<u8> {
    let priority = Some(beaver_core::priority_from_beanstalk(pri));
    let delay_ms = u64::from(delay_s) * 1_000;
    let how = Finish::Release { priority, delay_ms };
    let ended = |lease| end_reservation(shared, id, lease);
    match conn.session.end(id, how, ended).await {
        None => Reply::NotFound.to_bytes(),
        Some(Ok(())) => {
            shared.bump(id, |c| {
                c.releases += 1;
                c.delay_s = u64::from(delay_s);
            });
            Reply::Released.to_bytes()
        }
        Some(Err(e)) => refused(&e),
    }
}

async fn bury(shared: &Shared, conn: &mut Conn, id: u64, pri: u32) -> Vec<u8> {
    let how = Finish::Bury {
        priority: Some(beaver_core::priority_from_beanstalk(pri)),
    };
    let ended = |lease| end_reservation(shared, id, lease);
    match conn.session.end(id, how, ended).await {
        None => Reply::NotFound.to_bytes(),
        Some(Ok(())) => {
            let order = shared.next_bury_order();
            shared.bump(id, |c| {
                c.buries += 1;
                c.buried_order = order;
            });
            Reply::Buried.to_bytes()
        }
        Some(Err(e)) => refused(&e),
    }
}

async fn touch(conn: &mut Conn, id: u64) -> Vec<u8> {
    match conn.session.touch(id).await {
        Some(Ok(_)) => Reply::Touched.to_bytes(),
        // Refused: no longer held, unless the engine could not take it now.
        Some(Err(e)) => refused(&e),
        None => Reply::NotFound.to_bytes(),
    }
}

async fn use_tube(shared: &Shared, conn: &mut Conn, tube: TubeName) -> Vec<u8> {
    if !shared.tube(&tube, |f| f.using += 1) {
        return Reply::OutOfMemory.to_bytes();
    }
    let old = std::mem::replace(&mut conn.used, tube);
    shared.tube(&old, |f| f.using = f.using.saturating_sub(1));
    shared.drop_idle_tubes(&[old]).await;
    Reply::Using(&conn.used).to_bytes()
}

fn watch(shared: &Shared, conn: &mut Conn, tube: TubeName) -> Vec<u8> {
    if !conn.watched.contains(&tube) {
        if conn.watched.len() >= WATCHED_MAX || !shared.tube(&tube, |f| f.watching += 1) {
            return Reply::OutOfMemory.to_bytes();
        }
        conn.watched.push(tube);
    }
    Reply::Watching(conn.watched.len() as u64).to_bytes()
}

async fn ignore(shared: &Shared, conn: &mut Conn, tube: &TubeName) -> Vec<u8> {
    if conn.watched.len() == 1 && conn.watched[0] == *tube {
        return Reply::NotIgnored.to_bytes();
    }
    if let Some(i) = conn.watched.iter().position(|t| t == tube) {
        // beanstalkd fills the gap with the last tube watched.
        conn.watched.swap_remove(i);
        shared.tube(tube, |f| f.watching = f.watching.saturating_sub(1));
        shared.drop_idle_tubes(std::slice::from_ref(tube)).await;
    }
    Reply::Watching(conn.watched.len() as u64).to_bytes()
}

/// `kick`: up to `bound` buried jobs of the used tube, buried first
/// first; when none is buried, up to `bound` delayed ones, due first
/// first (as beanstalkd does).
async fn kick(shared: &Shared, conn: &Conn, bound: u32) -> Vec<u8> {
    let bound = (bound as usize).min(KICK_MAX);
    let mut jobs = peek::buried(shared, &conn.used, bound).await;
    if jobs.is_empty() {
        jobs = peek::delayed(shared, &conn.used, bound).await;
    }
    let mut kicked = 0;
    for j in jobs {
        if shared.client.kick(j.id.clone()).await.is_ok() {
            shared.bump(j.seq, |c| c.kicks += 1);
            kicked += 1;
        }
    }
    Reply::Kicked(kicked).to_bytes()
}

/// `kick-job`: a buried or delayed job is ready now.
async fn kick_job(shared: &Shared, id: u64) -> Vec<u8> {
    let j = match live_job(shared, id).await {
        Ok(Some(j)) => j,
        Ok(None) => return Reply::NotFound.to_bytes(),
        Err(e) => return refused(&e),
    };
    match shared.client.kick(j.id).await {
        Ok(()) => {
            shared.bump(id, |c| c.kicks += 1);
            Reply::KickedJob.to_bytes()
        }
        Err(e) => refused(&e),
    }
}

/// `reserve-job`: reserves a ready, delayed or buried job by id. A buried
/// one is requeued and reserved as one request: nobody waiting on its tube
/// can take it in between.
async fn reserve_job(shared: &Shared, conn: &mut Conn, id: u64) -> Vec<u8> {
    if conn.session.len() >= RESERVED_PER_CONNECTION_MAX {
        return Reply::OutOfMemory.to_bytes();
    }
    let j = match live_job(shared, id).await {
        Ok(Some(j)) => j,
        Ok(None) => return Reply::NotFound.to_bytes(),
        Err(e) => return refused(&e),
    };
    match conn.session.reserve_job(j.id).await {
        Ok(leased) => {
            // As in beanstalkd: a reserve-job that reserves makes a worker.
            become_worker(shared, conn);
            reserved(shared, leased)
        }
        Err(e) => refused(&e),
    }
}

async fn pause(shared: &Shared, tube: &TubeName, delay_s: u32) -> Vec<u8> {
    if !shared.tube_exists(tube).await {
        return Reply::NotFound.to_bytes();
    }
    let queue = queue_of(tube);
    let how = match delay_s {
        0 => QueuePause::Resume,
        s => QueuePause::ForMs(u64::from(s) * 1000),
    };
    match shared.client.pause_queue(queue, how).await {
        Ok(()) => {
            shared.tube(tube, |f| {
                f.cmd_pause += 1;
                f.pause_s = u64::from(delay_s);
            });
            Reply::Paused.to_bytes()
        }
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::time::{Instant, sleep};

    /// A reservation made when the engine's clock read `made` (it reads
    /// whole milliseconds: the true time may be up to one later).
    fn reservation(made: u64, ttr_ms: u64) -> Reservation {
        Reservation {
            lease: 1,
            lease_until: beaver_core::span_end(made, ttr_ms),
            timeout_ms: ttr_ms,
            queue: beaver_core::QueueName::parse("default").expect("name"),
        }
    }

    #[test]
    fn the_last_second_starts_a_millisecond_late_never_early() {
        // Made at 10,000.9 ms of true time: the clock read 10,000, the
        // deadline is 12,001 where the true one is 12,000.9. The margin is
        // said once the clock reads 11,001, at least 11,001.0 ms of true
        // time: a whole second after the reservation was made.
        assert_eq!(margin_start(&reservation(10_000, 2_000)), 11_001);
        assert_eq!(margin_start(&reservation(10_000, 60_000)), 69_001);
        // A TTR of a second or less: in the margin from the start.
        assert_eq!(margin_start(&reservation(10_000, 1_000)), 0);
        assert_eq!(margin_start(&reservation(10_000, 1)), 0);
    }

    #[test]
    fn a_refusal_that_may_pass_later_is_out_of_memory_and_never_not_found() {
        let reason = || "r".to_string();
        let later = [
            Rejection::Busy {
                reason: reason(),
                retry_after_ms: 100,
            },
            Rejection::Storage { reason: reason() },
            Rejection::Stopping,
        ];
        for e in &later {
            assert_eq!(refused(e), b"OUT_OF_MEMORY\r\n", "{e:?}");
        }
        let id = JobId::parse("j1").unwrap();
        let gone = [
            Rejection::NotFound { id },
            Rejection::Conflict { reason: reason() },
            Rejection::LeaseLost { lease: 7 },
            Rejection::Invalid {
                index: None,
                field: "f".into(),
                reason: reason(),
            },
            Rejection::TooLarge {
                index: None,
                reason: reason(),
            },
        ];
        for e in &gone {
            assert_eq!(refused(e), b"NOT_FOUND\r\n", "{e:?}");
        }
    }

    // Long beside the writes (a fifth of it): a loaded machine does not
    // make a write miss the limit.
    const LIMIT: Duration = Duration::from_secs(1);

    /// How long a read on a silent peer, given `grace`, took to give up.
    async fn idle_after(grace: Duration) -> Duration {
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let mut idle = IdleLimit::new(LIMIT);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let read = idle.read(&mut ours, &mut buf, grace).await;
        assert!(read.is_none(), "nothing was sent: {read:?}");
        start.elapsed()
    }

    #[tokio::test]
    async fn a_connection_silent_for_the_limit_is_idle() {
        assert!(idle_after(Duration::ZERO).await >= LIMIT);
    }

    #[test]
    fn a_connection_holding_jobs_is_idle_only_after_its_last_reservation_ends() {
        let ms = Duration::from_millis;
        assert_eq!(time_to_last([].into_iter(), 1_000), Duration::ZERO);
        assert_eq!(time_to_last([900].into_iter(), 1_000), Duration::ZERO);
        assert_eq!(
            time_to_last([4_000, 2_500, 900].into_iter(), 1_000),
            ms(3_000)
        );
    }

    #[tokio::test]
    async fn the_limit_counts_from_the_end_of_the_grace() {
        let took = idle_after(LIMIT).await;
        assert!(took >= 2 * LIMIT, "{took:?}");
    }

    #[tokio::test]
    async fn the_limit_counts_from_each_read_not_from_the_connection_start() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        let mut idle = IdleLimit::new(LIMIT);
        let mut buf = [0u8; 8];
        // Longer than the limit spent elsewhere (a reserve waiting), and
        // then reads that each wait less than the limit, together more.
        sleep(LIMIT + LIMIT / 2).await;
        for round in 0..3u8 {
            let writer = async {
                sleep(LIMIT / 5).await;
                theirs.write_all(&[round]).await
            };
            let (read, wrote) =
                tokio::join!(idle.read(&mut ours, &mut buf, Duration::ZERO), writer);
            wrote.expect("the pipe takes a byte");
            assert_eq!(read.map(|r| r.ok()), Some(Some(1)), "round {round}");
            assert_eq!(buf[0], round);
        }
    }
}
