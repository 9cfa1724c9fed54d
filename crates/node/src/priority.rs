//! Agents that are loading yield the CPU: every thread of an agent runs under `SCHED_IDLE` from
//! its start until its workload reports ready, then under `SCHED_OTHER` like the node.
//!
//! A load runs tenant code the node cannot interrupt cheaply: a JavaScript top level (one that
//! never ends runs until the node's `load_timeout`), or the compile of a large component on
//! several threads. Under `SCHED_IDLE` such a load runs only on CPU time nothing else wants,
//! and any other task that wakes (an agent answering a call, the node, nats-server) preempts it
//! at once, where a low nice value still lets it finish its time slice: measured with the
//! `neighbours` test, two spinning loads at nice 19 still took a bystander's p99 to 2.96x idle
//! (docs/security.md). On an idle machine a load still has every core it wants.
//!
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE`. Without that capability a loading agent would keep
//! it for its whole life, so the node then leaves agents alone and says so (`load_priority:
//! unavailable (...)` in each workload's `sandbox` map). Unlike CPU shares (`cpu.shares`,
//! cgroups, off by default) this costs a call nothing: once ready, an agent runs as it would
//! without it. rustix does not wrap `sched_setscheduler` (it is in its `not_implemented`
//! list), so this is the one `libc` call of the node.

use std::io;
use std::sync::OnceLock;

/// `CAP_SYS_NICE`: leaving `SCHED_IDLE`.
const CAP_SYS_NICE: u32 = 23;

/// Why the node leaves agents' scheduling alone.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    /// The node could not take a thread out of `SCHED_IDLE` again, so it never puts one in.
    #[error("the node lacks CAP_SYS_NICE, so it could not restore a loading agent's scheduling")]
    NoCapability,
    /// A thread's scheduling could not be set.
    #[error("agent {pid}: {source}")]
    Set {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// Whether this process may take threads out of `SCHED_IDLE` (`CapEff` in
/// `/proc/self/status`), read once.
pub fn available() -> Result<(), PriorityError> {
    static CAN: OnceLock<bool> = OnceLock::new();
    let can = *CAN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| has_capability(&s, CAP_SYS_NICE))
            .unwrap_or(false)
    });
    if can {
        Ok(())
    } else {
        Err(PriorityError::NoCapability)
    }
}

/// Whether the `CapEff` line of a `/proc/<pid>/status` text holds capability `bit`.
fn has_capability(status: &str, bit: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps >> bit & 1 == 1)
}

/// Puts thread `tid` under `policy` (`SCHED_IDLE` or `SCHED_OTHER`, both at static priority 0).
fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that lives across the call, which only reads it;
    // a wrong or vanished `tid` is an error return, never undefined behaviour.
    let r = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts every thread of process `pid` under `policy` (scheduling is per thread on Linux;
/// threads started later inherit their creator's).
fn set(pid: u32, policy: libc::c_int) -> Result<(), PriorityError> {
    let err = |source| PriorityError::Set { pid, source };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(err)?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        match set_policy(tid, policy) {
            Ok(()) => {}
            // The thread ended meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

/// Agent `pid` starts loading: `SCHED_IDLE`, when the node can restore it later.
pub fn loading(pid: u32) -> Result<(), PriorityError> {
    available()?;
    set(pid, libc::SCHED_IDLE)
}

/// Agent `pid`'s workload is ready: `SCHED_OTHER` (its nice value, inherited from the node,
/// was never changed).
pub fn ready(pid: u32) -> Result<(), PriorityError> {
    available()?;
    set(pid, libc::SCHED_OTHER)
}

/// The state the `sandbox` map reports: `sched_idle while loading`, or why not.
pub fn state() -> String {
    match available() {
        Ok(()) => "sched_idle while loading".into(),
        Err(e) => format!("unavailable ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(pid: u32) -> libc::c_int {
        // SAFETY: a plain query of a pid; an unknown one is an error return.
        unsafe { libc::sched_getscheduler(pid as libc::pid_t) }
    }

    #[test]
    fn capabilities_are_read_from_cap_eff() {
        let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(has_capability(status, CAP_SYS_NICE), Some(true));
        assert_eq!(has_capability(status, 24), Some(false));
        assert_eq!(
            has_capability("CapEff:\t0000000000000000\n", 23),
            Some(false)
        );
        assert_eq!(has_capability("Name:\tx\n", 23), None);
    }

    /// A real child process: idle while loading, and back when ready where the node may (as
    /// root in CI); without the capability nothing changes.
    #[test]
    fn a_loading_process_is_idle_and_restored_when_ready() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        match loading(pid) {
            Err(PriorityError::NoCapability) => {
                assert_eq!(policy_of(pid), libc::SCHED_OTHER);
                assert!(matches!(ready(pid), Err(PriorityError::NoCapability)));
            }
            Err(e) => panic!("{e}"),
            Ok(()) => {
                assert_eq!(policy_of(pid), libc::SCHED_IDLE);
                ready(pid).unwrap();
                assert_eq!(policy_of(pid), libc::SCHED_OTHER);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // A process that is gone is an error of its own kind.
        assert!(matches!(
            set(pid, libc::SCHED_OTHER),
            Err(PriorityError::Set { .. })
        ));
    }
}
