//! An attempt's process group: stopped with `SIGTERM`, then `SIGKILL`
//! after the kill grace, and never outliving the attempt by more than that.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The process groups of the attempts under way in this process, and of
/// those being stopped (until their `SIGKILL` is sent).
static LIVE_GROUPS: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());

fn live_groups() -> std::sync::MutexGuard<'static, BTreeSet<libc::pid_t>> {
    // The set stays consistent even if a holder panicked (one insert or
    // remove at a time).
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `SIGKILL` to the whole process group of every attempt under way or
/// being stopped, background children included, and returns how many groups
/// there were. For a process about to exit at once (a second shutdown
/// signal): the direct children would die with it (their parent-death
/// signal), what they started would not.
pub fn kill_running_attempts() -> usize {
    let groups = live_groups();
    groups
        .iter()
        .for_each(|&pgid| signal_group(pgid, libc::SIGKILL));
    groups.len()
}

/// Waits (at most `max`) until every attempt's process group got its
/// `SIGKILL`: the attempts stopped at the end of a shutdown grace have had
/// their kill grace. `true` if none is left. Call it before the process
/// exits, or their grace is cut short.
pub async fn attempts_stopped(max: Duration) -> bool {
    let until = Instant::now() + max;
    loop {
        if live_groups().is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` to every process in the group `pgid`.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory arguments; a negative pid addresses the
    // process group. ESRCH (group already empty) is fine.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends `SIGKILL` to the group when dropped, forgets it, and tells
/// whoever reads the group's output that nothing more is coming from it.
struct KillOnDrop {
    pgid: libc::pid_t,
    killed: Option<oneshot::Sender<()>>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        live_groups().remove(&self.pgid);
        signal_group(self.pgid, libc::SIGKILL);
        if let Some(tx) = self.killed.take() {
            let _ = tx.send(());
        }
    }
}

/// The attempt's direct child and its process group (the child leads it).
///
/// Dropping it stops the group: `SIGTERM` (unless already sent), then
/// `SIGKILL` when the kill grace ends or as soon as the child exits,
/// carried out by a task of its own; the child is reaped by that task.
pub(super) struct ProcessGroup {
    /// `None` once handed to the stopping task.
    child: Option<Child>,
    pgid: libc::pid_t,
    /// Whether the group may still hold processes we must kill.
    live: bool,
    /// When `SIGKILL` is due, once `SIGTERM` was sent.
    kill_at: Option<Instant>,
    grace: Duration,
    /// Told when the group got `SIGKILL`.
    killed: Option<oneshot::Sender<()>>,
}

impl ProcessGroup {
    /// Takes charge of a freshly spawned child that leads its own group.
    /// The receiver resolves once the group got `SIGKILL` (or was given up).
    pub(super) fn new(
        child: Child,
        pgid: libc::pid_t,
        grace: Duration,
    ) -> (ProcessGroup, oneshot::Receiver<()>) {
        live_groups().insert(pgid);
        let (tx, rx) = oneshot::channel();
        let group = ProcessGroup {
            child: Some(child),
            pgid,
            live: true,
            kill_at: None,
            grace,
            killed: Some(tx),
        };
        (group, rx)
    }

    fn guard(&mut self) -> KillOnDrop {
        KillOnDrop {
            pgid: self.pgid,
            killed: self.killed.take(),
        }
    }

    /// The child. Present until the group is dropped.
    pub(super) fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is taken only on drop")
    }

    /// Sends `SIGTERM` to the group (once) and returns when `SIGKILL` is due.
    /// With no grace, sends `SIGKILL` at once.
    pub(super) fn terminate(&mut self) -> Instant {
        if let Some(at) = self.kill_at {
            return at;
        }
        let at = Instant::now() + self.grace;
        self.kill_at = Some(at);
        if self.grace.is_zero() {
            self.kill();
        } else if self.live {
            signal_group(self.pgid, libc::SIGTERM);
        }
        at
    }

    /// Sends `SIGKILL` to every process in the group, once.
    ///
    /// Called either before the child is reaped (its pid, which is the
    /// group id, cannot be reused while it is a zombie) or in the same poll
    /// right after reaping it: the id could then be reused only if the
    /// kernel cycled through the whole pid space and the new process made
    /// itself a group leader within those microseconds.
    pub(super) fn kill(&mut self) {
        if std::mem::take(&mut self.live) {
            drop(self.guard());
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let Some(child) = self.child.take() else {
            return self.kill();
        };
        let kill_at = self.terminate();
        if !self.live {
            return; // no grace: killed already
        }
        self.live = false;
        let guard = self.guard();
        match tokio::runtime::Handle::try_current() {
            // If the runtime is shutting down, the task is dropped unrun
            // and its guard kills the group at once.
            Ok(rt) => {
                rt.spawn(finish_stopping(child, guard, kill_at));
            }
            Err(_) => drop(guard),
        }
    }
}

/// Waits for the child to exit or the grace to end, then kills the group
/// and reaps the child. Dropped early, it kills the group at once.
async fn finish_stopping(mut child: Child, guard: KillOnDrop, kill_at: Instant) {
    tokio::select! {
        biased;
        _ = child.wait() => {}
        () = tokio::time::sleep_until(kill_at) => {}
    }
    // In the same poll as the wait's return: see `ProcessGroup::kill`.
    drop(guard);
    // SIGKILL cannot be caught: this ends soon.
    let _ = child.wait().await;
}
