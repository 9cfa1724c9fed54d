//! Agents that are loading yield the CPU: every thread of an agent runs at nice 19 from its
//! start until its workload reports ready, then at the node's own nice value (read once).
//!
//! A load runs tenant code the node cannot interrupt cheaply: a JavaScript top level (one that
//! never ends runs until the node's `load_timeout`), or the compile of a large component on
//! several threads. At nice 19 such a load weighs 15 against the 1024 of every process at
//! nice 0 (the kernel's weights), so the agents that answer calls, the node and nats-server
//! barely notice it, and on an idle machine it still has every core it wants.
//!
//! Raising a nice value needs no privilege; lowering it again needs `CAP_SYS_NICE`. Without that
//! capability a lowered agent would keep nice 19 for its whole life, so the node then leaves
//! agents alone and says so (`load_priority: unavailable` in each workload's `sandbox` map).
//! Unlike CPU shares (`cpu.shares`, cgroups, off by default) this costs a call nothing: once
//! ready, an agent runs as it would without it.

use std::io;
use std::sync::OnceLock;

use rustix::process::Pid;

/// The nice value of a loading agent's threads (the lowest priority there is).
pub const LOADING_NICE: i32 = 19;
/// `CAP_SYS_NICE`: lowering a nice value.
const CAP_SYS_NICE: u32 = 23;

/// Why the node leaves agents' priorities alone.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    /// The node could not lower a nice value again, so it never raises one.
    #[error("the node lacks CAP_SYS_NICE, so it could not restore a loading agent's priority")]
    NoCapability,
    /// A thread's priority could not be set.
    #[error("agent {pid}: {source}")]
    Set {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// Whether this process may lower nice values (`CapEff` in `/proc/self/status`), read once.
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

/// Sets the nice value of every thread of process `pid` (a process's nice value is per thread
/// on Linux; threads started later inherit their creator's).
pub fn set(pid: u32, nice: i32) -> Result<(), PriorityError> {
    let err = |source| PriorityError::Set { pid, source };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(err)?;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        match rustix::process::setpriority_process(Some(tid), nice) {
            Ok(()) => {}
            // The thread ended meanwhile.
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => return Err(err(e.into())),
        }
    }
    Ok(())
}

/// Agent `pid` starts loading: nice [`LOADING_NICE`], when the node can restore it later.
pub fn loading(pid: u32) -> Result<(), PriorityError> {
    available()?;
    set(pid, LOADING_NICE)
}

/// The nice value of a ready agent's threads: the node's own, as agents had before
/// (they inherit it), read once.
pub fn ready_nice() -> i32 {
    static NICE: OnceLock<i32> = OnceLock::new();
    *NICE.get_or_init(|| rustix::process::getpriority_process(None).unwrap_or(0))
}

/// Agent `pid`'s workload is ready: the node's nice value ([`ready_nice`]).
pub fn ready(pid: u32) -> Result<(), PriorityError> {
    available()?;
    set(pid, ready_nice())
}

/// The state the `sandbox` map reports: `nice 19 while loading`, or why not.
pub fn state() -> String {
    match available() {
        Ok(()) => format!("nice {LOADING_NICE} while loading"),
        Err(e) => format!("unavailable ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of(tid: i32) -> i32 {
        rustix::process::getpriority_process(Pid::from_raw(tid)).unwrap()
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

    /// A real child process: lowered, and restored when the node may (as root in CI); without
    /// the capability nothing changes.
    #[test]
    fn every_thread_of_a_process_is_lowered_and_restored() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        match loading(pid) {
            Err(PriorityError::NoCapability) => {
                assert_eq!(nice_of(pid as i32), ready_nice());
                assert!(matches!(ready(pid), Err(PriorityError::NoCapability)));
            }
            Err(e) => panic!("{e}"),
            Ok(()) => {
                assert_eq!(nice_of(pid as i32), LOADING_NICE);
                ready(pid).unwrap();
                assert_eq!(nice_of(pid as i32), ready_nice());
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // A process that is gone is an error of its own kind.
        assert!(matches!(set(pid, 0), Err(PriorityError::Set { .. })));
    }
}
