//! Process-level limits the agent applies to itself before it loads tenant code.
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

/// Applies what this platform allows and reports each measure.
pub fn apply_process_limits() -> BTreeMap<String, String> {
    let mut report = BTreeMap::new();
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let pdeath = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 };
    report.insert("parent_death_signal".into(), state(pdeath));
    // No core dumps of tenant memory; a small descriptor table; no new processes.
    report.insert(
        "rlimit_core".into(),
        state(set_rlimit(libc::RLIMIT_CORE, 0)),
    );
    report.insert(
        "rlimit_nofile".into(),
        state(set_rlimit(libc::RLIMIT_NOFILE, 64)),
    );
    report
}
