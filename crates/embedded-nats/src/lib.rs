//! Starts and stops a local `nats-server` process with JetStream.
//!
//! This crate owns the child process: finding the binary, choosing a port, waiting until the
//! server accepts clients, and killing it on drop. `nex node up` uses it for the embedded default
//! and the test suites use it for a real server on a free loopback port. It knows nothing of nex.

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

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// JetStream store directory; `None` uses a temporary one removed on drop.
    pub store_dir: Option<PathBuf>,
    /// Path of the binary; `None` uses `$NEX_NATS_SERVER` or `nats-server` on PATH.
    pub binary: Option<PathBuf>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
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
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store_dir)
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
