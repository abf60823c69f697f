//! `-u USER`: beanstalkd's "become user and group", done once the
//! listener is bound (so a port below 1024 can still be taken as root)
//! and before the data dir is opened or created (so its files belong to
//! that user).

use std::ffi::CString;

/// Room for one `passwd` entry's strings (`getpwnam_r`'s buffer).
const PASSWD_BUF_BYTES: usize = 16 << 10;

/// A user as the system's user database gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// Its user id.
    pub uid: libc::uid_t,
    /// Its primary group.
    pub gid: libc::gid_t,
}

/// `name` as the C string the user database calls take.
fn c_string(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("-u {name:?}: a user name has no NUL"))
}

/// Looks `name` up in the user database; the error says what is wrong.
pub fn lookup(name: &str) -> Result<Ids, String> {
    let c_name = c_string(name)?;
    // SAFETY: an all-zero passwd is a valid value of this plain C struct;
    // getpwnam_r only writes into it and into `buf`, both ours and sized
    // as passed, and `found` is null or points at `entry`.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; PASSWD_BUF_BYTES];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: see above; every pointer is valid for the call.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        let e = std::io::Error::from_raw_os_error(rc);
        return Err(format!("-u {name}: cannot read the user database: {e}"));
    }
    if found.is_null() {
        return Err(format!(
            "-u {name}: no such user; give a user of this system (see /etc/passwd)"
        ));
    }
    Ok(Ids {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// Becomes user `name`: its groups (the supplementary ones from the group
/// database, and its primary group), then its user id, for the whole
/// process. Nothing to do when the process already runs as that user.
/// Another user needs root; the error says so.
pub fn become_user(name: &str) -> Result<(), String> {
    let ids = lookup(name)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == ids.uid {
        return Ok(());
    }
    let c_name = c_string(name)?;
    let failed = |what: &str| {
        let e = std::io::Error::last_os_error();
        format!("-u {name}: cannot {what}: {e} (becoming another user needs root)")
    };
    // SAFETY: a valid C string and a gid; initgroups only reads them.
    if unsafe { libc::initgroups(c_name.as_ptr(), ids.gid) } != 0 {
        return Err(failed("take its groups"));
    }
    // SAFETY: setgid and setuid take plain ids (glibc applies them to every
    // thread of the process).
    if unsafe { libc::setgid(ids.gid) } != 0 {
        return Err(failed("take its group"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(ids.uid) } != 0 {
        return Err(failed("become it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_uid_0_and_an_unknown_user_is_named_in_the_error() {
        assert_eq!(lookup("root").map(|i| i.uid), Ok(0));
        let e = lookup("no-such-user-beaver-test").unwrap_err();
        assert!(
            e.contains("-u no-such-user-beaver-test: no such user"),
            "{e}"
        );
        let e = lookup("a\0b").unwrap_err();
        assert!(e.contains("has no NUL"), "{e}");
    }

    #[test]
    fn becoming_the_user_the_process_already_is_changes_nothing() {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        // Find this process's user's name through the database.
        // SAFETY: getpwuid returns null or a pointer to a static entry,
        // read at once on this thread.
        let name = unsafe {
            let p = libc::getpwuid(me);
            assert!(!p.is_null(), "the running user is in the database");
            std::ffi::CStr::from_ptr((*p).pw_name)
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(become_user(&name), Ok(()));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::geteuid() }, me);
    }
}
