//! A real cluster of `nats-server` processes on loopback, for tests of nex over a cluster.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nex_embedded_nats::{ClusterOptions, NatsServer, Options, free_port};

/// One member: how to (re)start it, and the running process if it runs.
struct Member {
    opts: Options,
    server: Option<NatsServer>,
}

/// `size` nats-servers joined by routes (full mesh) with clustered JetStream, each with its own
/// client, route and monitoring ports on 127.0.0.1 and its own store directory. Killed on drop.
pub struct NatsCluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts a cluster of three servers and waits until it has formed: every member routes to
    /// every other and JetStream has a meta leader that all members know.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(3)
    }

    /// Starts a cluster of `size` servers (1 to 5) and waits until it has formed. Ports are
    /// picked free and then given to the servers; when another process takes one in between
    /// (seen once in CI: "address already in use"), the cluster starts again on new ports.
    pub fn start_with(size: usize) -> anyhow::Result<Self> {
        let mut attempt = 0;
        loop {
            match Self::try_start(size) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn try_start(size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!((1..=5).contains(&size), "a test cluster has 1 to 5 servers");
        let dir = tempfile::Builder::new().prefix("nex-cluster-").tempdir()?;
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut members = Vec::with_capacity(size);
        for (i, &route_port) in route_ports.iter().enumerate() {
            let opts = Options {
                port: Some(free_port()?),
                store_dir: Some(dir.path().join(format!("n{}", i + 1))),
                monitor_port: Some(free_port()?),
                cluster: Some(ClusterOptions {
                    name: "nex-test".into(),
                    server_name: format!("n{}", i + 1),
                    route_port,
                    routes: route_ports
                        .iter()
                        .copied()
                        .filter(|p| *p != route_port)
                        .collect(),
                }),
                ..Default::default()
            };
            members.push(Member { opts, server: None });
        }
        let mut cluster = Self { members, _dir: dir };
        for i in 0..size {
            cluster.restart(i)?;
        }
        cluster.wait_formed(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Number of members (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Client URL of member `i` (whether it runs or not).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.port(i))
    }

    /// Client port of member `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.members[i].opts.port.expect("fixed port")
    }

    /// Every member's client URL, comma-separated (what `-s` takes).
    pub fn urls(&self) -> String {
        (0..self.size())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server name of member `i` (`n1`, `n2`, ...).
    pub fn name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// Is member `i` running?
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].server.is_some()
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit. Its store stays for a restart.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.members[i].server.take() {
            s.stop();
        }
    }

    /// Starts member `i` again (or for the first time) with its ports and store, and waits until
    /// it accepts clients. Use [`NatsCluster::wait_formed`] to wait for its routes and JetStream.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let m = &mut self.members[i];
        m.server = Some(NatsServer::start(m.opts.clone())?);
        Ok(())
    }

    /// Waits until every running member has a route to each other running member and knows the
    /// same JetStream meta leader, and that leader lists every other member as a meta peer, with
    /// each running one current.
    pub fn wait_formed(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let running: Vec<usize> = (0..self.size()).filter(|&i| self.is_running(i)).collect();
        loop {
            let Err(last) = self.formed(&running) else {
                return Ok(());
            };
            if Instant::now() > deadline {
                anyhow::bail!("the NATS cluster did not form within {limit:?}: {last}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The meta group's membership is read from the leader's `replicas`, not from
    /// `cluster_size`: nats-server 2.9 lets a member that restarts and wins an election while
    /// it sees only some routes shrink `cluster_size` for good (seen in CI: "n1's meta group has 2
    /// peers" for 90 s with all three members running and current).
    fn formed(&self, running: &[usize]) -> Result<(), String> {
        let mut leader: Option<String> = None;
        for &i in running {
            let name = self.name(i);
            let routez = self.monitor(i, "/routez")?;
            let routes = routez["num_routes"].as_u64().unwrap_or_default() as usize;
            if routes + 1 < running.len() {
                return Err(format!("{name} has {routes} routes"));
            }
            let jsz = self.monitor(i, "/jsz")?;
            let seen = jsz["meta_cluster"]["leader"].as_str().unwrap_or_default();
            match &leader {
                _ if seen.is_empty() => {
                    return Err(format!("{name} knows no JetStream meta leader"));
                }
                Some(l) if l != seen => {
                    return Err(format!("{name} follows meta leader {seen}, others {l}"));
                }
                _ => leader = Some(seen.to_owned()),
            }
        }
        let Some(leader) = leader else {
            return Ok(());
        };
        let l = (0..self.size())
            .find(|&i| self.name(i) == leader)
            .filter(|i| running.contains(i))
            .ok_or_else(|| format!("the meta leader {leader} is not a running member"))?;
        let jsz = self.monitor(l, "/jsz")?;
        let replicas = jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for i in (0..self.size()).filter(|&i| i != l) {
            let name = self.name(i);
            let peer = replicas
                .iter()
                .find(|r| r["name"].as_str() == Some(name.as_str()));
            match peer {
                None => return Err(format!("the meta leader {leader} does not list {name}")),
                Some(p) if running.contains(&i) && p["current"].as_bool() != Some(true) => {
                    return Err(format!("{name} is not current in the meta group"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The server name of the JetStream meta leader, as the first running member knows it.
    pub fn meta_leader(&self) -> Option<String> {
        let i = (0..self.size()).find(|&i| self.is_running(i))?;
        let jsz = self.monitor(i, "/jsz").ok()?;
        let leader = jsz["meta_cluster"]["leader"].as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// GET `path` from member `i`'s monitoring port, as JSON.
    fn monitor(&self, i: usize, path: &str) -> Result<serde_json::Value, String> {
        let port = self.members[i].opts.monitor_port.expect("monitor port");
        http_get_json(port, path).map_err(|e| format!("{} {path}: {e}", self.name(i)))
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status line and the body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(String, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP body"))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// [`http_get`] of JSON (nats-server's monitoring endpoint, e.g. `/connz`).
pub fn http_get_json(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&http_get(port, path)?.1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_servers_form_a_cluster_and_one_restarts() {
        let mut c = NatsCluster::start().unwrap();
        assert_eq!(c.size(), 3);
        assert_eq!(c.urls().split(',').count(), 3);
        c.kill(1);
        assert!(!nex_embedded_nats::is_listening(c.port(1)));
        // Two of three keep a JetStream quorum.
        c.wait_formed(Duration::from_secs(20)).unwrap();
        c.restart(1).unwrap();
        // A restarted member catches up with the meta group; on a loaded 2-core CI machine this took
        // over 30 s once (it reported 2 peers).
        c.wait_formed(Duration::from_secs(90)).unwrap();
        assert!(c.is_running(1));
    }
}
