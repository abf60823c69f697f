//! Where beanstalkd's protocol is to be served, as the command line and
//! the settings file give it: parsed, and refused off loopback unless the
//! user opted in.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
