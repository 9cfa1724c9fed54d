//! A test world: nats-server, one node process, a NATS client and a way to run the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use nex_client::NexClient;
use nex_test_support::{NatsServer, NodeProcess};

pub const NEX: &str = env!("CARGO_BIN_EXE_nex");

pub struct World {
    pub nats: NatsServer,
    pub home: tempfile::TempDir,
    pub node: NodeProcess,
    pub client: async_nats::Client,
}

impl World {
    pub async fn start() -> World {
        Self::start_with(&[]).await
    }

    /// A world whose node reads `json` as its config file.
    pub async fn start_with_config(json: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("node.json");
        std::fs::write(&cfg, json).unwrap();
        // The node reads its config at start; the file may go after that.
        Self::start_with(&["--config", cfg.to_str().unwrap()]).await
    }

    pub async fn start_with(extra: &[&str]) -> World {
        Self::start_on(nex_test_support::nats(), extra).await
    }

    /// A world whose node lets functions' HTTP requests reach 127.0.0.1 (loopback is denied by
    /// default), and the base URL of an [`echo_http_server`] there.
    pub async fn with_local_http() -> (World, String) {
        let w = Self::start_with_config(
            r#"{"host_services": {"services": {"http": {"config": {"allow_hosts": ["127.0.0.1"]}}}}}"#,
        )
        .await;
        (w, echo_http_server().await)
    }

    /// A world on a server the test started (say, with a config of its own).
    pub async fn start_on(nats: nex_test_support::NatsServer, extra: &[&str]) -> World {
        Self::start_with_env(nats, extra, &[]).await
    }

    /// [`World::start_on`] with variables `env` set for the node.
    pub async fn start_with_env(
        nats: nex_test_support::NatsServer,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> World {
        let home = tempfile::tempdir().unwrap();
        let node =
            NodeProcess::start_with_env(Path::new(NEX), &nats.url(), home.path(), extra, env)
                .expect("node starts");
        let client = async_nats::connect(nats.url()).await.unwrap();
        World {
            nats,
            home,
            node,
            client,
        }
    }

    /// The issuer and xkey the CLI uses in this world (created on first use).
    pub fn keys(&self) -> nex_client::keys::SenderKeys {
        nex_client::keys::SenderKeys::load_or_create(&self.home.path().join(".nex")).unwrap()
    }

    pub fn control(&self) -> NexClient {
        NexClient::new(self.client.clone(), "default", Duration::from_secs(5))
            .with_keys(std::sync::Arc::new(self.keys()))
    }

    /// Runs the CLI against this world's server with `$HOME` set to the world's home (whose
    /// issuer key is the node's operator key).
    pub fn nex(&self, args: &[&str]) -> Output {
        self.nex_in(self.home.path(), args)
    }

    /// Runs the CLI as tenant `t` (its own home, so its own issuer key).
    pub fn nex_as(&self, t: &Tenant, args: &[&str]) -> Output {
        self.nex_in(t.home.path(), args)
    }

    fn nex_in(&self, home: &Path, args: &[&str]) -> Output {
        Command::new(NEX)
            .args(args)
            .args(["-s", &self.nats.url(), "--timeout", "10"])
            .env("HOME", home)
            .env_remove("NATS_URL")
            .env_remove("NEX_HOME")
            .output()
            .expect("run nex")
    }

    /// A control client of namespace `ns` signing as tenant `t`.
    pub fn control_as(&self, t: &Tenant, ns: &str) -> NexClient {
        NexClient::new(self.client.clone(), ns, Duration::from_secs(5))
            .with_keys(std::sync::Arc::new(t.keys()))
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn nex_ok(&self, args: &[&str]) -> String {
        let out = self.nex(args);
        assert!(
            out.status.success(),
            "nex {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `nex devrun FILE --trigger_subject S... [extra]` → workload id.
    pub fn devrun(&self, file: &Path, subjects: &[&str], extra: &[&str]) -> String {
        let mut args = vec!["devrun", file.to_str().unwrap(), "--json"];
        for s in subjects {
            args.push("--trigger_subject");
            args.push(s);
        }
        args.extend_from_slice(extra);
        let out = self.nex_ok(&args);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// The pid of the agent running workload `name`, from `nex node info`.
    pub fn agent_pid(&self, name: &str) -> u32 {
        let info: serde_json::Value =
            serde_json::from_str(&self.nex_ok(&["node", "info", &self.node.node_id, "--json"]))
                .unwrap();
        info["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["workload"]["name"] == name)
            .and_then(|m| m["agent_pid"].as_u64())
            .unwrap_or_else(|| panic!("no agent pid for {name}: {info}")) as u32
    }

    /// Retries `subject` until it answers `expect` (an agent restarting), for up to 10 s.
    pub async fn wait_until_answers(&self, subject: &str, payload: &[u8], expect: &[u8]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.request(subject, payload).await {
                Ok(m) if service_error(&m).is_none() => {
                    assert_eq!(&m.payload[..], expect);
                    return;
                }
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("{subject} did not come back: {other:?}"),
            }
        }
    }

    /// One request with a timeout.
    pub async fn request(
        &self,
        subject: &str,
        payload: &[u8],
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        let req = async_nats::Request::new()
            .payload(Bytes::copy_from_slice(payload))
            .timeout(Some(Duration::from_secs(5)));
        self.client.send_request(subject.to_owned(), req).await
    }

    /// The reply body, insisting on success (no service-error header).
    pub async fn call(&self, subject: &str, payload: &[u8]) -> Vec<u8> {
        let m = self.request(subject, payload).await.expect("reply");
        assert!(
            service_error(&m).is_none(),
            "unexpected service error {:?}",
            service_error(&m)
        );
        m.payload.to_vec()
    }
}

/// A tenant: its own home directory, so its own issuer key (not the node's operator).
pub struct Tenant {
    pub home: tempfile::TempDir,
}

impl Tenant {
    pub fn new() -> Tenant {
        let t = Tenant {
            home: tempfile::tempdir().unwrap(),
        };
        t.keys();
        t
    }

    /// The tenant's issuer and xkey (created on first use, as the CLI does).
    pub fn keys(&self) -> nex_client::keys::SenderKeys {
        nex_client::keys::SenderKeys::load_or_create(&self.home.path().join(".nex")).unwrap()
    }
}

/// The code of a refused control answer.
pub fn refusal_code(e: &nex_client::Error) -> Option<nex_proto::control::ErrorCode> {
    match e {
        nex_client::Error::Refused(r) => r.code,
        _ => None,
    }
}

/// `(code, message)` of a service-error reply.
pub fn service_error(m: &async_nats::Message) -> Option<(String, String)> {
    let h = m.headers.as_ref()?;
    let msg = h.get(nex_proto::HEADER_SERVICE_ERROR)?.as_str().to_owned();
    let code = h
        .get(nex_proto::HEADER_SERVICE_ERROR_CODE)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    Some((code, msg))
}

/// Collects messages on `subject` into a channel until dropped.
pub async fn collect(
    client: &async_nats::Client,
    subject: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<async_nats::Message> {
    let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if tx.send(m).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the first message satisfying `pred`.
/// The next log line collected by `logs` within 5 s, as JSON (`{text, level, id}`).
pub async fn next_log_line(
    logs: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Message>,
) -> serde_json::Value {
    let line = wait_for(logs, Duration::from_secs(5), |_| true)
        .await
        .expect("a log line within 5 s");
    serde_json::from_slice(&line.payload).unwrap()
}

pub async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Message>,
    limit: Duration,
    mut pred: impl FnMut(&async_nats::Message) -> bool,
) -> Option<async_nats::Message> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(m)) if pred(&m) => return Some(m),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Writes `bytes` to a file named `name` in a fresh temp dir (kept alive by the returned guard).
pub fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Names of the threads of process `pid`.
pub fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// A file of `examples/`.
pub fn example(name: &str) -> std::path::PathBuf {
    nex_test_support::repo_root().join("examples").join(name)
}

/// A reply parsed as JSON (the reply in the panic message when it is not).
pub fn json(bytes: Vec<u8>) -> serde_json::Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bytes)))
}

/// Each call of a [`load`]: when it was sent (since the start) and its answer (`None`: it
/// failed: no responders, a time-out or a service error).
pub type Outcomes = Vec<(Duration, Option<Bytes>)>;

/// Calls `subject` (empty payload) from `workers` tasks until `stop`, each call with limit
/// `limit`; returns every call's outcome in the order sent.
pub async fn load(
    client: async_nats::Client,
    subject: &'static str,
    workers: usize,
    limit: Duration,
    start: std::time::Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Outcomes {
    use std::sync::atomic::Ordering;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, stop) = (client.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = start.elapsed();
                let req = async_nats::Request::new()
                    .payload(Bytes::new())
                    .timeout(Some(limit));
                let answer = match client.send_request(subject, req).await {
                    Ok(m) => match service_error(&m) {
                        None => Some(m.payload),
                        Some(e) => {
                            // Shown with the test's output when it fails.
                            eprintln!("load: {subject} sent at {sent:?}: service error {e:?}");
                            None
                        }
                    },
                    Err(e) => {
                        eprintln!("load: {subject} sent at {sent:?}: {e}");
                        None
                    }
                };
                let failed = answer.is_none();
                out.push((sent, answer));
                if failed {
                    // A failed call may have failed at once (no responders): do not spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|o| o.0);
    all
}

/// A real HTTP server on loopback that answers every request with `201 Created` and a JSON
/// description of it: request line, the `x-from`, `x-key` and `content-type` headers, body. A
/// TLS ClientHello gets `400` (plain HTTP only).
pub async fn echo_http_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf[0] == 0x16 {
                        let _ = s.write_all(b"HTTP/1.1 400 plain http only\r\n\r\n").await;
                        return;
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                // A server that answers late, for limits on the client's side.
                if head.starts_with("GET /slow ") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let reply = serde_json::json!({
                    "line": head.lines().next().unwrap_or(""),
                    "from": header("x-from"),
                    "key": header("x-key"),
                    "type": header("content-type"),
                    "body": String::from_utf8_lossy(&buf[head_end..]),
                })
                .to_string();
                let resp = format!(
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Served-By: test\r\nContent-Length: {}\r\n\r\n{}",
                    reply.len(),
                    reply
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}
