//! Test helpers shared by nex's integration tests and benchmark.
//!
//! - [`nats`]: a real `nats-server` with JetStream on a free loopback port, killed on drop.
//! - [`NatsCluster`]: three real `nats-server`s joined by routes, with clustered JetStream, each
//!   with its own ports and store; one can be killed and restarted.
//! - [`guest`]: paths of real `.wasm` guests built from source by this crate's `build.rs`
//!   (the seed's echofunction and the fixtures in `guests/`); [`component`]: the components in
//!   `guests/components/`, built for `wasm32-wasip2`.
//! - [`NodeProcess`]: a `nex node up` child process joined to a test server, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use nex_embedded_nats::{ClusterOptions, Liveness, NatsServer, Options};

mod cluster;
pub use cluster::{NatsCluster, http_get, http_get_json};

/// Starts a real nats-server with JetStream on a free port and a temporary store.
pub fn nats() -> NatsServer {
    NatsServer::start(Options::default())
        .unwrap_or_else(|e| panic!("tests need a real nats-server with JetStream: {e}"))
}

/// Path of a guest `.wasm` built from source, by file stem: the examples (`echofunction`,
/// `wasm-counter`, `wasm_hello`) and the fixtures in `guests/` (`trap`, `spin`, `hog`,
/// `nex_handler_fixture`, ...).
pub fn guest(name: &str) -> PathBuf {
    let p = Path::new(env!("NEX_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(p.is_file(), "guest {} was not built", p.display());
    p
}

/// Path of a component `.wasm` built from source for `wasm32-wasip2`, by file stem: the
/// seed `echofunction` and the packages in `guests/components/` (`counter_component`, ...).
pub fn component(name: &str) -> PathBuf {
    let p = Path::new(env!("NEX_GUEST_COMPONENT_DIR")).join(format!("{name}.wasm"));
    assert!(p.is_file(), "component {} was not built", p.display());
    p
}

/// Resident set of process `pid` in KiB (`VmRSS`), if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The repository root (for example files).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("NEX_REPO_ROOT"))
}

/// A running `nex node up` process.
pub struct NodeProcess {
    child: Child,
    pub node_id: String,
    pub xkey: String,
}

impl NodeProcess {
    /// Starts `nex node up --json -s <url>` plus `extra` args with `home` as `$HOME`, and waits for
    /// the node to report its id.
    pub fn start(nex: &Path, url: &str, home: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(nex, url, home, extra, &[])
    }

    /// [`NodeProcess::start`] with variables `env` set for the node.
    pub fn start_with_env(
        nex: &Path,
        url: &str,
        home: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(nex)
            .args(["node", "up", "--json", "-s", url, "--loglevel", "warn"])
            .args(extra)
            .envs(env.iter().copied())
            .env("HOME", home)
            .env_remove("NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("node did not report ready within 30s");
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line)?;
        Ok(Self {
            child,
            node_id: v["node_id"].as_str().unwrap_or_default().to_owned(),
            xkey: v["public_xkey"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `limit` for a clean exit; returns whether it exited.
    pub fn interrupt(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if !self.interrupt(Duration::from_secs(5)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
