//! Process-level limits the agent applies to itself before it loads tenant code.
//!
//! At start, before reading anything from the node:
//! - parent-death signal: the agent dies with its node;
//! - rlimits: no core dumps, a small descriptor table;
//! - namespaces: a new user namespace (the agent keeps no capability on the host), network
//!   namespace (no interfaces but a downed loopback), IPC and UTS namespaces;
//! - seccomp: an allow list of the syscalls the runtimes use (anything else fails with ENOSYS),
//!   and a kill list of what no function runtime needs and an escape would want: sockets, exec,
//!   fork (a `clone` without `CLONE_THREAD`), ptrace, mounting and namespaces, kernel modules,
//!   keyrings, bpf, other processes' memory. A native-code escape that tries any of these is
//!   killed by the kernel; the node sees the agent exit, emits `agent_stopped` and restarts the
//!   workload.
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

use rustix::process::{Resource, Rlimit};

fn set_rlimit(resource: Resource, value: u64) -> bool {
    let lim = Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    rustix::process::setrlimit(resource, lim).is_ok()
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

/// Syscalls the runtimes, the C library and the agent use (found by tracing every agent of the
/// test suite with strace, plus their harmless relatives: time, memory, own descriptors, own
/// signals). Anything else fails with ENOSYS; the [`DENIED_SYSCALLS`] kill.
const ALLOWED_SYSCALLS: &[libc::c_long] = &[
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    // descriptors the agent holds (Landlock decides which files can be opened)
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_getdents64,
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    // time
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    // threads (`clone` is further filtered: no new processes)
    libc::SYS_clone,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    // signals (Landlock scopes them to the agent itself)
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_restart_syscall,
    // the process itself
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_getrandom,
    libc::SYS_uname,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getcwd,
    // applied after seccomp, once the init frame named the cache directory
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lstat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_access,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getrlimit,
];

/// Installs the seccomp filters for this process and every thread it starts later: the
/// dangerous syscalls kill the process, everything outside the allow list fails with ENOSYS.
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
    // Everything else answers ENOSYS. `clone3` is left out on purpose: it passes its flags in
    // memory, where a filter cannot look, and the C library falls back to `clone`, which the
    // filter above inspects.
    let allow = SeccompFilter::new(
        ALLOWED_SYSCALLS.iter().map(|&nr| (nr, vec![])).collect(),
        SeccompAction::Errno(libc::ENOSYS as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| err(&e))?;
    // The allow list goes last: it forbids `seccomp` itself.
    for filter in [deny, allow] {
        let program: BpfProgram = filter.try_into().map_err(|e| err(&e))?;
        seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// Moves the agent into new user, network, IPC and UTS namespaces. Must run while the process
/// has a single thread (a multi-threaded process cannot enter a new user namespace).
fn enter_namespaces() -> Result<(), String> {
    use rustix::thread::UnshareFlags;
    let flags =
        UnshareFlags::NEWUSER | UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: the hazard of `unshare` is `FILES` (threads seeing descriptors from another
    // table); these flags only move the process into new namespaces.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| e.to_string())
}

/// Applies what this platform allows and reports each measure. `sandbox = false` is the node's
/// development mode: only the parent-death signal is set.
pub fn apply_process_limits(sandbox: bool) -> BTreeMap<String, String> {
    let mut report = BTreeMap::new();
    let pdeath =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .is_ok();
    report.insert("parent_death_signal".into(), state(pdeath));
    if !sandbox {
        report.insert("seccomp".into(), "off (no_sandbox)".into());
        return report;
    }
    // No core dumps of tenant memory; a small descriptor table.
    report.insert("rlimit_core".into(), state(set_rlimit(Resource::Core, 0)));
    report.insert(
        "rlimit_nofile".into(),
        state(set_rlimit(Resource::Nofile, 64)),
    );
    report.insert(
        "namespaces".into(),
        match enter_namespaces() {
            Ok(()) => "active (user, network, ipc, uts)".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        },
    );
    let seccomp = match apply_seccomp() {
        Ok(()) => format!(
            "active (allow list of {} syscalls, others ENOSYS; {} kill the agent)",
            ALLOWED_SYSCALLS.len(),
            DENIED_SYSCALLS.len() + 1
        ),
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
        Ok(e) => format!(
            "active (abi {}{}: no files but the module cache, no tcp{})",
            e.abi,
            if e.fully { "" } else { ", best effort" },
            if e.abi >= 6 {
                ", signals and abstract sockets scoped"
            } else {
                ""
            }
        ),
        Err(e) => format!("unavailable: {e}"),
    };
    report.insert("landlock".into(), landlock);
    let address_space = match limits.address_space_bytes {
        Some(bytes) if set_rlimit(Resource::As, bytes) => {
            format!("active ({} MiB)", bytes >> 20)
        }
        Some(_) => "unavailable".into(),
        None => "not set (wasm: the pooling allocator reserves address space; each call's memory is capped by wasmtime)".into(),
    };
    report.insert("rlimit_as".into(), address_space);
}

/// What a native-code escape would try first: open a socket. With the filter active the kernel
/// kills the process (SIGSYS) before this returns.
pub fn forbidden_syscall() {
    // SAFETY: `socket` takes three integers and returns a descriptor or -1; no memory is shared.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    eprintln!("socket() returned {fd}: the seccomp filter did not stop it");
}

/// For tests: installs the limits, then makes a syscall the filter forbids.
pub fn selftest_forbidden_syscall() -> i32 {
    let report = apply_process_limits(true);
    eprintln!("{report:?}");
    forbidden_syscall();
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

/// For tests: applies every measure, then tries to read `path` and to make a syscall outside
/// the allow list. Returns 0 when both are refused.
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
    // SAFETY: `getpriority` takes two integers and touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    if r != -1 || errno != Some(libc::ENOSYS) {
        eprintln!("getpriority was not refused with ENOSYS: {r} {errno:?}");
        return 2;
    }
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
