//! Process-level limits the agent applies to itself before it loads tenant code.
//!
//! - parent-death signal: the agent dies with its node;
//! - rlimits: no core dumps, a small descriptor table;
//! - a seccomp filter (Linux) that kills the process on any syscall a function runtime never
//!   needs: sockets, exec, ptrace, mounting and namespaces, kernel modules, keyrings, bpf, other
//!   processes' memory. It is a deny list: the runtimes' own needs (threads, mmap, futex...)
//!   stay allowed. A native-code escape that tries any of these is killed by the kernel; the
//!   node sees the agent exit, emits `agent_stopped` and restarts the workload.
//!
//! Each measure reports whether it took effect, so the node can show what is in force.

use std::collections::BTreeMap;

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> bool {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `setrlimit` reads a fully initialized `rlimit` struct we own; it has no other
    // memory effects.
    unsafe { libc::setrlimit(resource, &lim) == 0 }
}

fn state(ok: bool) -> String {
    if ok { "active" } else { "unavailable" }.to_owned()
}

/// Syscalls no function runtime needs; calling one kills the agent.
const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_kexec_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
];

/// Installs the seccomp deny-list filter for this process and every thread it starts later.
pub fn apply_seccomp() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let rules = DENIED_SYSCALLS.iter().map(|&nr| (nr, vec![])).collect();
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

/// Applies what this platform allows and reports each measure. `sandbox = false` is the node's
/// development mode: only the parent-death signal is set.
pub fn apply_process_limits(sandbox: bool) -> BTreeMap<String, String> {
    let mut report = BTreeMap::new();
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let pdeath = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 };
    report.insert("parent_death_signal".into(), state(pdeath));
    if !sandbox {
        report.insert("seccomp".into(), "off (no_sandbox)".into());
        return report;
    }
    // No core dumps of tenant memory; a small descriptor table.
    report.insert(
        "rlimit_core".into(),
        state(set_rlimit(libc::RLIMIT_CORE, 0)),
    );
    report.insert(
        "rlimit_nofile".into(),
        state(set_rlimit(libc::RLIMIT_NOFILE, 64)),
    );
    let seccomp = match apply_seccomp() {
        Ok(()) => "active (deny list, kill on violation)".to_owned(),
        Err(e) => {
            tracing::warn!("{e}");
            format!("unavailable: {e}")
        }
    };
    report.insert("seccomp".into(), seccomp);
    report
}

/// For tests: installs the limits, then makes a syscall the filter forbids. With the filter
/// active the kernel kills the process (SIGSYS) before this returns.
pub fn selftest_forbidden_syscall() -> i32 {
    let report = apply_process_limits(true);
    eprintln!("{report:?}");
    // SAFETY: `socket` takes three integers and returns a descriptor or -1; no memory is shared.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    eprintln!("socket() returned {fd}: the seccomp filter did not stop it");
    1
}
