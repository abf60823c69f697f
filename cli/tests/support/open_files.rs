//! Shared by the test crates (each includes this file): a child started
//! under the open-file limits a test chooses.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Makes the child `cmd` starts run under `limit` (soft and hard
/// open-file limits), set before it runs its program.
pub fn limit_open_files(cmd: &mut Command, limit: libc::rlimit) {
    // SAFETY: setrlimit is async-signal-safe and reads only `limit`, a
    // copy the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
