//! Landlock (Linux 5.13+) through its three system calls: the agent gives up the file system
//! except one directory, TCP bind/connect, and (ABI 6+) signals to and abstract Unix sockets of
//! processes outside itself. Each ABI version handles more rights; we ask for what the running
//! kernel knows.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const CREATE_RULESET_VERSION: libc::c_uint = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_REG: u64 = 1 << 8;
/// Every file-system right of ABI 1 (bits 0..=12).
const FS_ABI1: u64 = (1 << 13) - 1;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The Landlock ABI version of the running kernel.
pub fn abi_version() -> Result<i64, String> {
    // SAFETY: with a null attribute, size 0 and the VERSION flag the call only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        return Err(last_error("landlock"));
    }
    Ok(v)
}

/// Restricts this process (all its threads, and everything started later) as described in the
/// module docs, allowing `dir` for reading and writing files. Returns the ABI version used.
pub fn restrict(dir: Option<&Path>) -> Result<i64, String> {
    let abi = abi_version()?;
    let mut fs = FS_ABI1;
    if abi >= 2 {
        fs |= FS_REFER;
    }
    if abi >= 3 {
        fs |= FS_TRUNCATE;
    }
    if abi >= 5 {
        fs |= FS_IOCTL_DEV;
    }
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Older kernels reject fields they do not know: pass only the size of their struct.
    let size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    // SAFETY: `attr` is a live, initialized struct of at least `size` bytes.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0) };
    if fd < 0 {
        return Err(last_error("landlock_create_ruleset"));
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if let Some(dir) = dir {
        allow_dir(&ruleset, dir, fs)?;
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only; Landlock requires it (or CAP_SYS_ADMIN).
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last_error("no_new_privs"));
    }
    use std::os::fd::AsRawFd;
    // SAFETY: restricts the calling process with a ruleset descriptor we own.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
    if r != 0 {
        return Err(last_error("landlock_restrict_self"));
    }
    Ok(abi)
}

fn allow_dir(ruleset: &OwnedFd, dir: &Path, handled: u64) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let _ = std::fs::create_dir_all(dir);
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a NUL-terminated path; O_PATH opens a handle without reading anything.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        return Err(last_error(&format!("open {}", dir.display())));
    }
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let dir_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let rule = PathBeneathAttr {
        allowed_access: (FS_READ_FILE
            | FS_WRITE_FILE
            | FS_READ_DIR
            | FS_MAKE_REG
            | FS_REMOVE_FILE
            | FS_TRUNCATE)
            & handled
            & !FS_EXECUTE,
        parent_fd: dir_fd.as_raw_fd(),
    };
    // SAFETY: `rule` is a live, initialized path-beneath attribute; both descriptors are ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &rule,
            0,
        )
    };
    if r != 0 {
        return Err(last_error("landlock_add_rule"));
    }
    Ok(())
}
