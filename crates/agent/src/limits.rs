//! Process-level limits the agent applies to itself before it loads tenant code.
//!
//! At start, before reading anything from the node:
//! - parent-death signal: the agent dies with its node;
//! - rlimits: no core dumps, a small descriptor table;
//! - namespaces: a new user namespace (the agent keeps no capability on the host), network
//!   namespace (no interfaces but a downed loopback), IPC and UTS namespaces;
//! - a seccomp filter that kills the process on any syscall a function runtime never needs:
//!   sockets, exec, fork (a `clone` without `CLONE_THREAD`), ptrace, mounting and namespaces,
//!   kernel modules, keyrings, bpf, other processes' memory. It is a deny list: the runtimes'
//!   own needs (threads, mmap, futex...) stay allowed. A native-code escape that tries any of
//!   these is killed by the kernel; the node sees the agent exit, emits `agent_stopped` and
//!   restarts the workload.
//!
//! After the init frame, before loading tenant code ([`apply_workload_limits`]):
//! - Landlock: no file system access at all except the compiled-module cache directory; no TCP
//!   bind or connect; no signals to, or abstract sockets of, processes outside the agent;
//! - `RLIMIT_AS` for JavaScript agents (QuickJS allocates with malloc, so an address-space cap
//!   backs up its own heap limit). WebAssembly agents reserve address space for the pooling
//!   allocator up front, and each call's linear memory is capped by wasmtime instead.
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
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let err = |e: &dyn std::fmt::Debug| format!("seccomp: {e:?}");
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into().map_err(|e| err(&e))?;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|&nr| (nr, vec![])).collect();
    // `clone` makes threads (allowed) and processes (a fork: killed).
    let fork = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )
    .map_err(|e| err(&e))?;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![fork]).map_err(|e| err(&e))?],
    );
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    )
    .map_err(|e| err(&e))?;
    // `clone3` passes its flags in memory, where a filter cannot look: answer ENOSYS, and the
    // C library falls back to `clone`, which the filter above inspects.
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    for filter in [no_clone3, deny] {
        let program: BpfProgram = filter.try_into().map_err(|e| err(&e))?;
        seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// Moves the agent into new user, network, IPC and UTS namespaces. Must run while the process
/// has a single thread (a multi-threaded process cannot enter a new user namespace).
fn enter_namespaces() -> Result<(), String> {
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // SAFETY: `unshare` takes flags only and changes this process's namespaces; no memory of
    // ours is involved.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
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
    report.insert(
        "namespaces".into(),
        match enter_namespaces() {
            Ok(()) => "active (user, network, ipc, uts)".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        },
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

/// What the agent runs, as far as its limits are concerned.
pub struct WorkloadLimits<'a> {
    /// The compiled-module cache: the one directory the agent may use.
    pub cache_dir: Option<&'a std::path::Path>,
    /// Cap on the whole address space, for runtimes that allocate with malloc.
    pub address_space_bytes: Option<u64>,
}

/// Applies the measures that depend on the workload (see the module docs) and adds them to
/// `report`. Called after the init frame and before any tenant code is loaded.
pub fn apply_workload_limits(limits: &WorkloadLimits, report: &mut BTreeMap<String, String>) {
    let landlock = match crate::landlock::restrict(limits.cache_dir) {
        Ok(abi) => format!(
            "active (abi {abi}: no files but the module cache, no tcp{})",
            if abi >= 6 {
                ", signals and abstract sockets scoped"
            } else {
                ""
            }
        ),
        Err(e) => format!("unavailable: {e}"),
    };
    report.insert("landlock".into(), landlock);
    let address_space = match limits.address_space_bytes {
        Some(bytes) if set_rlimit(libc::RLIMIT_AS, bytes) => {
            format!("active ({} MiB)", bytes >> 20)
        }
        Some(_) => "unavailable".into(),
        None => "not set (wasm: the pooling allocator reserves address space; each call's memory is capped by wasmtime)".into(),
    };
    report.insert("rlimit_as".into(), address_space);
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

/// For tests: installs the limits, then forks. With the filter active the kernel kills the
/// process (SIGSYS) before the child exists.
pub fn selftest_fork() -> i32 {
    let report = apply_process_limits(true);
    eprintln!("{report:?}");
    // SAFETY: the child exits at once without touching shared state.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` ends the child immediately.
        unsafe { libc::_exit(0) };
    }
    eprintln!("fork() returned {pid}: the seccomp filter did not stop it");
    1
}

/// For tests: applies every measure, then tries to read `path`. Returns 0 when refused.
pub fn selftest_read_file(path: &std::path::Path) -> i32 {
    let mut report = apply_process_limits(true);
    apply_workload_limits(
        &WorkloadLimits {
            cache_dir: None,
            address_space_bytes: None,
        },
        &mut report,
    );
    eprintln!("{report:?}");
    match std::fs::read(path) {
        Ok(_) => {
            eprintln!("read {} despite landlock", path.display());
            1
        }
        Err(e) => {
            eprintln!("refused: {e}");
            0
        }
    }
}
