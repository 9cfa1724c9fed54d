//! Starts and stops a local `nats-server` process with JetStream.
//!
//! This crate owns the child process: finding the binary, choosing a port, waiting until the
//! server accepts clients, and killing it on drop. `nex node up` uses it for the embedded default
//! and the test suites use it for a real server on a free loopback port. It knows nothing of nex.
//!
//! Every server it starts gets a small config file (`nex-nats.conf` in the store directory) with
//! the [`Liveness`] settings: the server pings a silent client every `ping_interval` and closes
//! it when `ping_max` pings are unanswered, so a client that hangs without closing its socket
//! (a stopped or wedged process) is cut off within seconds, as long as nothing is being sent to
//! it (see [`Liveness`]). A server can
//! also be one member of a cluster with routes ([`ClusterOptions`]); JetStream then runs
//! clustered (replicated streams, a meta leader).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where to get `nats-server` when it is missing.
pub const INSTALL_HINT: &str = "install it with `apt-get install nats-server` (Debian/Ubuntu), \
`brew install nats-server` (macOS), or put the binary on PATH / set NEX_NATS_SERVER";

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `nats-server` binary was not found.
    #[error("nats-server is not installed: {INSTALL_HINT}")]
    NotInstalled,
    /// Spawning or talking to the process failed.
    #[error("could not run nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// The server exited or did not accept clients in time.
    #[error("nats-server did not start: {0}")]
    NotReady(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How quickly the server gives up on a client (or route) that stopped answering.
///
/// The server sends a `PING` to a connection without activity for `ping_interval` and closes it
/// ("Stale Connection") when a ping would make more than `ping_max` outstanding. A hung client
/// that nothing is sent to is therefore cut off within `ping_interval * (ping_max + 2)` (measured:
/// 2.2 s with nex's 1 s and 2; nats-server's defaults are 2 minutes and 2). But nats-server 2.9
/// counts messages it delivers as activity, so a hung subscriber that keeps being sent messages
/// (a queue-group member under load) is never pinged, and keeps its share until the server finds
/// it a slow consumer (docs/scale-out.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How long a connection may be silent before the server pings it (`ping_interval`).
    pub ping_interval: Duration,
    /// How many unanswered pings the server allows before it closes the connection (`ping_max`).
    pub ping_max: u32,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(1),
            ping_max: 2,
        }
    }
}

impl Liveness {
    /// The longest a silent connection stays open: `ping_interval * (ping_max + 2)`.
    pub fn bound(&self) -> Duration {
        self.ping_interval * (self.ping_max + 2)
    }
}

/// One member of a cluster of servers joined by routes.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster's name; every member uses the same.
    pub name: String,
    /// This server's name, unique in the cluster (JetStream peers are known by it).
    pub server_name: String,
    /// The port this server listens on for routes from the other members.
    pub route_port: u16,
    /// Route ports of the other members on 127.0.0.1 (this server's own may be in the list).
    pub routes: Vec<u16>,
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// JetStream store directory; `None` uses a temporary one removed on drop.
    pub store_dir: Option<PathBuf>,
    /// Path of the binary; `None` uses `$NEX_NATS_SERVER` or `nats-server` on PATH.
    pub binary: Option<PathBuf>,
    /// Extra command-line arguments. A config file given here (`-c FILE`) is used instead of
    /// the generated one, so `liveness` and `cluster` are then the file's business.
    pub extra_args: Vec<String>,
    /// Ping settings that bound how long a hung client keeps receiving messages.
    pub liveness: Liveness,
    /// Join a cluster of servers; `None` runs alone.
    pub cluster: Option<ClusterOptions>,
    /// Port of the HTTP monitoring endpoint (`/varz`, `/routez`, `/jsz`); `None` has none.
    pub monitor_port: Option<u16>,
}

/// The config file for `opts`: liveness and, for a cluster member, its name and routes.
fn config_text(opts: &Options) -> String {
    let mut c = format!(
        "ping_interval: \"{}ms\"\nping_max: {}\n",
        opts.liveness.ping_interval.as_millis().max(1),
        opts.liveness.ping_max
    );
    if let Some(cl) = &opts.cluster {
        let routes: Vec<String> = cl
            .routes
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        c.push_str(&format!(
            "server_name: {:?}\ncluster {{\n  name: {:?}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
            cl.server_name,
            cl.name,
            cl.route_port,
            routes.join(", ")
        ));
    }
    c
}

/// A running `nats-server`; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    store_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// Finds the `nats-server` binary.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NEX_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Is something accepting TCP connections on 127.0.0.1:`port`?
pub fn is_listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

impl NatsServer {
    /// Starts a server with JetStream on 127.0.0.1 and waits until it accepts clients.
    pub fn start(opts: Options) -> Result<Self> {
        let binary = opts
            .binary
            .clone()
            .or_else(find_binary)
            .ok_or(Error::NotInstalled)?;
        let (store_dir, temp) = match &opts.store_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("nex-nats-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let log_path = store_dir.join("nats-server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = Command::new(&binary);
        // A config file of the caller's own (`-c` in `extra_args`) replaces the generated one.
        let own_config = opts.extra_args.iter().any(|a| a == "-c" || a == "--config");
        if !own_config {
            let config_path = store_dir.join("nex-nats.conf");
            std::fs::write(&config_path, config_text(&opts))?;
            cmd.arg("-c").arg(&config_path);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store_dir);
        if let Some(m) = opts.monitor_port {
            cmd.args(["-m", &m.to_string()]);
        }
        let child = cmd
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotInstalled,
                _ => Error::Io(e),
            })?;
        let mut server = NatsServer {
            child,
            port,
            store_dir,
            _temp: temp,
        };
        server.wait_ready(&log_path, Duration::from_secs(10))?;
        tracing::debug!(port, "nats-server started");
        Ok(server)
    }

    fn wait_ready(&mut self, log_path: &Path, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(Error::NotReady(format!("exited with {status}: {tail}")));
            }
            if Self::answers_info(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady(format!(
                    "no answer on port {} after {limit:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_info(port: u16) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to exit (SIGTERM-like kill) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        if find_binary().is_none() {
            panic!("nats-server is not installed: {INSTALL_HINT}");
        }
        let mut s = NatsServer::start(Options::default()).unwrap();
        assert!(is_listening(s.port()));
        let port = s.port();
        s.stop();
        assert!(!is_listening(port));
    }

    #[test]
    fn config_carries_liveness_and_routes() {
        let opts = Options {
            cluster: Some(ClusterOptions {
                name: "c".into(),
                server_name: "s1".into(),
                route_port: 7001,
                routes: vec![7002, 7003],
            }),
            ..Default::default()
        };
        let c = config_text(&opts);
        assert!(c.contains("ping_interval: \"1000ms\""), "{c}");
        assert!(c.contains("ping_max: 2"), "{c}");
        assert!(c.contains("server_name: \"s1\""), "{c}");
        assert!(c.contains("listen: \"127.0.0.1:7001\""), "{c}");
        assert!(
            c.contains("\"nats-route://127.0.0.1:7002\", \"nats-route://127.0.0.1:7003\""),
            "{c}"
        );
        assert_eq!(Liveness::default().bound(), Duration::from_secs(4));
    }

    #[test]
    fn missing_binary_says_how_to_install() {
        let err = NatsServer::start(Options {
            binary: Some("/nonexistent/nats-server".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::NotInstalled), "{err}");
        assert!(err.to_string().contains("apt-get install nats-server"));
    }
}
