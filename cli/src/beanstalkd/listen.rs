//! Where beanstalkd's protocol is served, and the accept loop both
//! `beaver beanstalkd` and `beaver run --beanstalk-listen` run.

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::activation::Passed;
use super::{Listen, Shared, check_loopback, conn};

/// A bound listener of either kind.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket; the path, if it is removed when the listener is
    /// dropped (not a socket the service manager passed).
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    /// Binds `listen` with beanstalkd's backlog ([`crate::listening`]), or
    /// says why it cannot.
    pub async fn bind(listen: &Listen) -> Result<Listener, String> {
        let listener = match listen {
            Listen::Tcp(addr) => TcpListener::bind(addr)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
            Listen::Unix(path) => {
                clear_stale_socket(path)?;
                UnixListener::bind(path)
                    .map(|l| Listener::Unix(l, Some(path.clone())))
                    .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?
            }
        };
        let widened = match &listener {
            Listener::Tcp(l) => crate::listening::widen_backlog(l),
            Listener::Unix(l, _) => crate::listening::widen_backlog(l),
        };
        widened.map_err(|e| format!("cannot listen on {}: {e}", listener.address()))?;
        Ok(listener)
    }

    /// Serves on the socket a service manager passed; one on an address
    /// other than loopback only with `allow_remote` (as `-l`).
    pub fn passed(passed: Passed, allow_remote: bool) -> Result<Listener, String> {
        let failed = |e: std::io::Error| format!("cannot serve on the passed socket: {e}");
        match passed {
            Passed::Tcp(l) => {
                let ip = l.local_addr().map_err(failed)?.ip();
                let what = "the service manager passed a socket on";
                check_loopback(ip, allow_remote, what, "--allow-remote")?;
                TcpListener::from_std(l).map(Listener::Tcp).map_err(failed)
            }
            Passed::Unix(l) => UnixListener::from_std(l)
                .map(|l| Listener::Unix(l, None))
                .map_err(failed),
        }
    }

    /// The bound address as `ADDR` takes it: `IP:PORT` (the real port
    /// when 0 was asked) or `unix:PATH`.
    pub fn address(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("(unknown: {e})"), |a| a.to_string()),
            Listener::Unix(l, _) => match l.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix:(unnamed)".to_string(),
                },
                Err(e) => format!("(unknown: {e})"),
            },
        }
    }

    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Replies are small and each one is awaited: send at once.
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

/// Removes a socket file that a server which is gone (killed, crashed)
/// left at `path`, as beanstalkd does, so that a restart after `kill -9`
/// binds again. A socket some live server accepts on is left alone, and so
/// is any other kind of file: the error names what is there and what to do.
fn clear_stale_socket(path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // nothing there (or unreadable: bind says why)
    };
    let at = path.display();
    if !meta.file_type().is_socket() {
        return Err(format!(
            "cannot listen on unix:{at}: a file that is not a socket is there; \
             remove it or give another path"
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "cannot listen on unix:{at}: another server accepts connections there; \
             stop it or give another path"
        ));
    }
    std::fs::remove_file(path)
        .map_err(|e| format!("cannot remove the stale socket unix:{at} to listen there: {e}"))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Accepts connections (at most `connections_max` at once, more wait to
/// be accepted; one task each) until `stop` completes. Connections still
/// open then are served on until the process exits. An accept error that
/// is not one connection's own (out of descriptors) pauses accepting
/// ([`crate::listening::ACCEPT_PAUSE`]) instead of spinning on it.
pub async fn serve(
    listener: Listener,
    shared: Arc<Shared>,
    connections_max: usize,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let slots = Arc::new(Semaphore::new(connections_max));
    let mut next_id = 0u64;
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut stop => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut stop => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    () = crate::listening::pause_after_accept_error(&e) => continue,
                }
            }
        };
        next_id += 1;
        let (shared, id) = (shared.clone(), next_id);
        tokio::spawn(async move {
            match stream {
                Stream::Tcp(s) => conn::serve(&shared, s, id).await,
                Stream::Unix(s) => conn::serve(&shared, s, id).await,
            }
            drop(permit);
        });
    }
}
