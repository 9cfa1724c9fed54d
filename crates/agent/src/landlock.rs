//! Landlock (Linux 5.13+) through the `landlock` crate: the agent gives up the file system
//! except one directory, TCP bind/connect (ABI 4+), and signals to and abstract Unix sockets of
//! processes outside itself (ABI 6+). The crate asks for what the running kernel knows
//! (best effort) and reports how much of it is enforced.
//!
//! `landlock_restrict_self` restricts the calling thread and every thread or process it starts
//! later, not threads that already run. The agent calls [`restrict`] while it has one thread
//! (see `run` in the crate root), so the whole process is restricted.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The newest ABI whose rights we ask for. Rights of newer ABIs (e.g. the audit flags of 7) add
/// nothing the agent needs.
const TARGET: ABI = ABI::V6;

/// Why Landlock could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The module-cache directory could not be opened.
    #[error("landlock: cannot open {dir}: {source}")]
    Dir {
        dir: String,
        source: landlock::PathFdError,
    },
    /// A ruleset step failed (the kernel refused, or the request was inconsistent).
    #[error("landlock: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    /// The kernel has no Landlock, or it is disabled at boot.
    #[error("landlock: not enforced by this kernel")]
    NotEnforced,
}

/// What is in force after [`restrict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// The ABI the kernel and the crate agree on.
    pub abi: i32,
    /// Every right we asked for is enforced (false: a best-effort subset on an older kernel).
    pub fully: bool,
}

/// The rights the module-cache directory keeps: files in it may be read, written, made,
/// truncated and removed; nothing in it may be executed.
fn cache_rights() -> landlock::BitFlags<AccessFs> {
    AccessFs::ReadFile
        | AccessFs::WriteFile
        | AccessFs::ReadDir
        | AccessFs::MakeReg
        | AccessFs::RemoveFile
        | AccessFs::Truncate
}

/// Restricts this process as the module docs describe, allowing `dir` (created if missing) for
/// files. Must be called while the process has one thread.
pub fn restrict(dir: Option<&Path>) -> Result<Enforced, LandlockError> {
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET))?
        .handle_access(AccessNet::from_all(TARGET))?
        .scope(Scope::from_all(TARGET))?
        .create()?;
    if let Some(dir) = dir {
        let _ = std::fs::create_dir_all(dir);
        let fd = PathFd::new(dir).map_err(|source| LandlockError::Dir {
            dir: dir.display().to_string(),
            source,
        })?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, cache_rights()))?;
    }
    let status = ruleset.restrict_self()?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => return Err(LandlockError::NotEnforced),
    };
    match status.ruleset {
        RulesetStatus::NotEnforced => Err(LandlockError::NotEnforced),
        s => Ok(Enforced {
            abi,
            fully: s == RulesetStatus::FullyEnforced,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Landlock restricts the calling thread (and what it starts later): a thread of its own
    /// keeps the test harness unrestricted, and must see only the cache directory.
    #[test]
    fn only_the_cache_directory_is_left() {
        let cache = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), b"secret").unwrap();
        let (dir, file) = (cache.path().to_owned(), outside.path().to_owned());
        let seen = std::thread::spawn(move || {
            let enforced = match restrict(Some(&dir)) {
                Err(LandlockError::NotEnforced) => return None,
                r => r.expect("restrict"),
            };
            let inside = dir.join("module.bin");
            std::fs::write(&inside, b"code").expect("write in the cache");
            assert_eq!(std::fs::read(&inside).unwrap(), b"code");
            let read_outside = std::fs::read(&file).map_err(|e| e.kind());
            let listed_root = std::fs::read_dir("/").map(|_| ()).map_err(|e| e.kind());
            Some((enforced, read_outside, listed_root))
        })
        .join()
        .unwrap();
        let Some((enforced, read_outside, listed_root)) = seen else {
            eprintln!("skipped: this kernel does not enforce Landlock");
            return;
        };
        assert!(enforced.abi >= 1);
        let denied = Err(std::io::ErrorKind::PermissionDenied);
        assert_eq!(read_outside.map(|_| ()), denied);
        assert_eq!(listed_root, denied);
        // The harness thread was not restricted.
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"secret");
    }
}
