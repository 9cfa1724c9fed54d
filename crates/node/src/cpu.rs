//! A CPU share per agent, with cgroups.
//!
//! Every agent process goes into a cgroup of its own, `a<pid>`, under one group for all the
//! node's agents, `nex-<node pid>`, which sits in the node's own cgroup. The kernel then shares CPU
//! between groups, not threads:
//! - each workload gets an equal share whatever it does: a top level that spins, a call that
//!   loops or a module that compiles on many threads weighs as much as one idle neighbour that
//!   wakes for a request;
//! - an agent whose workload is still loading has the smallest share until it is ready, so a
//!   top level that never ends (it runs until the node's `load_timeout`) yields to every agent
//!   that answers calls;
//! - all agents together weigh `agents_shares` against the node itself, nats-server and the rest
//!   of the machine, so the processes that carry every tenant's calls keep running under a
//!   tenant's load.
//!
//! Shares only count under contention; an idle machine gives a single busy agent every core.
//!
//! Off by default (`cpu.shares` in the node config): in one `nex-bench` run the echo rows' p99
//! was 2.2-2.6 ms with shares against 0.5-0.7 ms for the same node without, while a
//! bystander's p99 under two spinning loads improved only from 3.5x to 2.8x idle
//! (docs/security.md).
//!
//! This is the cgroup v1 `cpu` controller, which needs write access to the node's cgroup in that
//! hierarchy (root, or a delegated subtree). cgroup v2 (`cpu.weight`) is not supported yet. Where
//! neither is available the node runs without CPU shares and says so in each workload's
//! `sandbox` map (`cpu_share: unavailable`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Why agents run without CPU shares.
#[derive(Debug, thiserror::Error)]
pub enum CpuGroupError {
    /// The node config turns CPU shares off (`cpu.shares: false`).
    #[error("off in the node config")]
    Off,
    /// No cgroup v1 hierarchy with the `cpu` controller (cgroup v2 only, or none mounted).
    #[error("no cgroup v1 `cpu` hierarchy is mounted (cgroup v2 is not supported yet)")]
    NoHierarchy,
    /// A cgroup could not be made or written (no permission, usually).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CpuGroupError + '_ {
    move |source| CpuGroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The shares of one agent's group: the kernel default, so that agents are equal.
const AGENT_SHARES: u64 = 1024;
/// The shares of an agent's group until its workload is ready (the smallest the kernel takes):
/// a top level or compile that spins yields to every agent that answers calls, and still has
/// the CPU to itself when they are idle. Its deadline is the node's `load_timeout`.
const LOADING_SHARES: u64 = 2;
/// How often groups of agents that are gone are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The directory of this process's cgroup in the v1 hierarchy with the `cpu` controller, from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn v1_cpu_dir(mountinfo: &str, proc_cgroup: &str) -> Option<PathBuf> {
    let has_cpu = |list: &str| list.split(',').any(|c| c == "cpu");
    // `4:cpu,cpuacct:/some/path`
    let own = proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        has_cpu(controllers).then_some(path)
    })?;
    // `36 25 0:31 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu`: root, mount point, then
    // after ` - `: type, source, super options.
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (kind, _, options) = (r.next()?, r.next()?, r.next()?);
        if kind != "cgroup" || !has_cpu(options) {
            return None;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        let (root, mount) = (*f.get(3)?, *f.get(4)?);
        // The part of our path below the mount's root (a container sees its own as `/`).
        let below = own.strip_prefix(root).unwrap_or(own);
        Some(Path::new(mount).join(below.trim_start_matches('/')))
    })
}

/// The group of one node's agents; each agent gets a group inside it.
#[derive(Debug)]
pub struct CpuGroups {
    base: PathBuf,
}

impl CpuGroups {
    /// Creates the agents' group `nex-<pid>` in this process's cgroup, with `agents_shares`, and
    /// starts sweeping the groups of agents that are gone.
    pub fn start(agents_shares: u64) -> Result<Arc<Self>, CpuGroupError> {
        let read = |p: &str| std::fs::read_to_string(p).map_err(io_at(Path::new(p)));
        let dir = v1_cpu_dir(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)
            .ok_or(CpuGroupError::NoHierarchy)?;
        let groups = Arc::new(Self::create_in(&dir, std::process::id(), agents_shares)?);
        let weak = Arc::downgrade(&groups);
        tokio::spawn(sweeper(weak));
        Ok(groups)
    }

    /// Creates `dir/nex-<pid>` with `agents_shares` (the node's own cgroup is `dir`, its
    /// process `pid`). Groups left by nodes that are gone are removed on the way.
    pub fn create_in(dir: &Path, pid: u32, agents_shares: u64) -> Result<Self, CpuGroupError> {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let owner = name
                    .to_string_lossy()
                    .strip_prefix("nex-")
                    .map(str::to_owned);
                let gone = owner.is_some_and(|p| {
                    p.parse::<u32>().is_ok() && !Path::new("/proc").join(&p).exists()
                });
                if gone {
                    remove_group(&e.path());
                }
            }
        }
        let base = dir.join(format!("nex-{pid}"));
        make_group(&base, agents_shares)?;
        Ok(Self { base })
    }

    /// Moves agent `pid` into a group of its own, with the loading share until
    /// [`CpuGroups::loaded`].
    pub fn place(&self, pid: u32) -> Result<(), CpuGroupError> {
        let group = self.base.join(format!("a{pid}"));
        make_group(&group, LOADING_SHARES)?;
        let procs = group.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io_at(&procs))
    }

    /// Agent `pid`'s workload is ready: its group gets an agent's full share.
    pub fn loaded(&self, pid: u32) -> Result<(), CpuGroupError> {
        let file = self.base.join(format!("a{pid}/cpu.shares"));
        std::fs::write(&file, AGENT_SHARES.to_string()).map_err(io_at(&file))
    }

    /// Removes the group of agent `pid`, which has ended.
    pub fn remove_agent(&self, pid: u32) {
        let _ = std::fs::remove_dir(self.base.join(format!("a{pid}")));
    }

    /// Removes the groups whose agents are gone (a group with a live process cannot be removed).
    pub fn sweep(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with('a') && e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }

    /// The group of all agents.
    #[cfg(test)]
    fn base(&self) -> &Path {
        &self.base
    }
}

impl CpuGroups {
    /// Removes the agents' group and the groups in it (those of agents that ended); whether
    /// it is gone.
    pub fn close(&self) -> bool {
        remove_group(&self.base);
        !self.base.exists()
    }
}

impl Drop for CpuGroups {
    fn drop(&mut self) {
        remove_group(&self.base);
    }
}

/// Makes group `path` (or keeps it) and sets its shares.
fn make_group(path: &Path, shares: u64) -> Result<(), CpuGroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    let file = path.join("cpu.shares");
    std::fs::write(&file, shares.to_string()).map_err(io_at(&file))
}

/// Removes a group and the empty groups in it (cgroup directories hold only the kernel's files,
/// which go with them: `rmdir`, never a recursive delete).
fn remove_group(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

async fn sweeper(groups: Weak<CpuGroups>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        match groups.upgrade() {
            Some(g) => tokio::task::spawn_blocking(move || g.sweep()).await.ok(),
            None => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 1 0:22 / / rw,relatime - overlay overlay rw
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 25 0:29 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct
34 25 0:30 /docker/abc /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
";

    #[test]
    fn finds_the_cpu_hierarchy_and_the_path_below_its_root() {
        let own = "2:cpuacct:/docker/abc\n1:cpu:/docker/abc/svc\n0::/\n";
        assert_eq!(
            v1_cpu_dir(MOUNTINFO, own),
            Some(PathBuf::from("/sys/fs/cgroup/cpu/svc"))
        );
        // A combined `cpu,cpuacct` mount, seen at its root.
        let combined = "9 1 0:5 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert_eq!(
            v1_cpu_dir(combined, "3:cpu,cpuacct:/user.slice\n"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice"))
        );
    }

    #[test]
    fn cgroup_v2_only_or_cpuacct_alone_is_no_hierarchy() {
        assert_eq!(v1_cpu_dir(MOUNTINFO, "0::/user.slice\n"), None);
        let no_cpu = "33 25 0:29 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n";
        assert_eq!(v1_cpu_dir(no_cpu, "2:cpuacct:/\n1:cpu:/\n"), None);
    }

    #[test]
    fn groups_are_made_with_their_shares_and_stale_ones_removed() {
        // A plain directory stands in for the cgroup file system: the layout and the shares
        // written are what is checked here (the kernel's side is the e2e test's).
        let dir = tempfile::tempdir().unwrap();
        // A node that is gone (no such pid) and one that runs (this test).
        std::fs::create_dir_all(dir.path().join("nex-4294967295/a1")).unwrap();
        let live = format!("nex-{}", std::process::id());
        std::fs::create_dir_all(dir.path().join(&live).join("a2")).unwrap();
        let g = CpuGroups::create_in(dir.path(), 7, 512).unwrap();
        assert!(!dir.path().join("nex-4294967295").exists());
        assert!(dir.path().join(&live).join("a2").exists());
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&g.base().join("cpu.shares")), "512");
        g.place(42).unwrap();
        assert_eq!(read(&g.base().join("a42/cpu.shares")), "2", "loading");
        g.loaded(42).unwrap();
        assert_eq!(read(&g.base().join("a42/cpu.shares")), "1024", "ready");
        assert_eq!(read(&g.base().join("a42/cgroup.procs")), "42");
    }

    #[test]
    fn an_unwritable_place_is_an_io_error_naming_the_path() {
        let err = CpuGroups::create_in(Path::new("/proc/no-such-cgroup"), 7, 1024).unwrap_err();
        match err {
            CpuGroupError::Io { path, .. } => {
                assert_eq!(path, Path::new("/proc/no-such-cgroup/nex-7"))
            }
            other => panic!("{other:?}"),
        }
    }
}
