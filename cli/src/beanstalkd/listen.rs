//! Where beanstalkd's protocol is served, and the accept loop both
//! `beaver beanstalkd` and `beaver run --beanstalk-listen` run.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::{CONNECTIONS_MAX, Shared, conn};

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Listen {
    /// Parses `IP:PORT` or `unix:PATH` (as `--beanstalk-listen` takes it);
    /// an IP other than loopback is refused unless `allow_remote`. `flag`
    /// and `opt_in` name the settings in the error.
    pub fn parse(
        text: &str,
        allow_remote: bool,
        flag: &str,
        opt_in: &str,
    ) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!(
                    "{flag} unix: needs a path, such as unix:/run/beaver.sock"
                ));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = text.parse().map_err(|e| {
            format!("{flag} {text}: give IP:PORT (such as 127.0.0.1:11300) or unix:PATH ({e})")
        })?;
        check_loopback(addr.ip(), allow_remote, flag, opt_in)?;
        Ok(Listen::Tcp(addr))
    }
}

/// Refuses an address other than loopback unless `allow_remote`: the
/// protocol has no authentication, so anyone who reaches the port can
/// read and delete every job.
pub fn check_loopback(
    ip: IpAddr,
    allow_remote: bool,
    flag: &str,
    opt_in: &str,
) -> Result<(), String> {
    if ip.is_loopback() || allow_remote {
        return Ok(());
    }
    Err(format!(
        "{flag} {ip}: beanstalkd's protocol has no authentication, so beaver listens on loopback only; add {opt_in} to serve {ip} anyway"
    ))
}

/// A bound listener of either kind.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket (removed when the listener is dropped).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `listen`, or says why it cannot.
    pub async fn bind(listen: &Listen) -> Result<Listener, String> {
        match listen {
            Listen::Tcp(addr) => TcpListener::bind(addr)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}")),
            Listen::Unix(path) => UnixListener::bind(path)
                .map(|l| Listener::Unix(l, path.clone()))
                .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display())),
        }
    }

    /// The bound address as `ADDR` takes it: `IP:PORT` (the real port
    /// when 0 was asked) or `unix:PATH`.
    pub fn address(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("(unknown: {e})"), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
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

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Accepts connections (at most [`CONNECTIONS_MAX`] at once, more wait
/// to be accepted; one task each) until `stop` completes. Connections
/// still open then are served on until the process exits.
pub async fn serve(listener: Listener, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
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
        let Ok(stream) = accepted else { continue };
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
