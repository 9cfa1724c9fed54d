//! The services nex competes with, each in its own process: the floor (a raw async-nats echo
//! responder in Rust, which also answers `bench.rawkv` with a direct `kv.get`, each request in a
//! task of its own so that gets overlap as a function's do), and what users
//! write instead — a Node.js responder on the npm `nats` package and a Python one on `nats-py`,
//! skipped with a note where the runtime or package is missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use futures::StreamExt;

use crate::kv_bucket;

/// Runs the floor responder until killed.
pub async fn raw(url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let mut sub = client.queue_subscribe("bench.raw", "raw".into()).await?;
    let mut kv_sub = client.queue_subscribe("bench.rawkv", "raw".into()).await?;
    client.flush().await?;
    println!("ready");
    let kv_client = client.clone();
    tokio::spawn(async move {
        let js = async_nats::jetstream::new(kv_client.clone());
        let mut store: Option<std::sync::Arc<async_nats::jetstream::kv::Store>> = None;
        while let Some(msg) = kv_sub.next().await {
            if store.is_none() {
                store = js.get_key_value(kv_bucket()).await.ok().map(Into::into);
            }
            // Concurrent, as a hand-written async service (and nex's host service) would be: a
            // get in flight does not hold up the next request.
            let (store, client) = (store.clone(), kv_client.clone());
            tokio::spawn(async move {
                let value = match &store {
                    Some(s) => s.get("k").await.ok().flatten().unwrap_or_default(),
                    None => Bytes::new(),
                };
                if let Some(reply) = msg.reply {
                    let _ = client.publish(reply, value).await;
                }
            });
        }
    });
    while let Some(msg) = sub.next().await {
        if let Some(reply) = msg.reply {
            let mut out = Vec::with_capacity(msg.payload.len() + msg.subject.len());
            out.extend_from_slice(&msg.payload);
            out.extend_from_slice(msg.subject.as_bytes());
            client.publish(reply, out.into()).await?;
        }
    }
    Ok(())
}

/// A responder process, killed when dropped.
pub struct Responder(Child);

impl Responder {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for it to print its first line (`ready`).
pub fn start(mut cmd: Command) -> anyhow::Result<Responder> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "responder said {line:?}");
    Ok(Responder(child))
}

fn works(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Node.js responder, installing its `nats` package with npm on first use. `Err` says why
/// it is skipped.
pub fn node(dir: &Path, url: &str) -> Result<Responder, String> {
    if !works(Command::new("node").arg("--version")) {
        return Err("node is not installed".into());
    }
    if !dir.join("node_modules/nats").is_dir()
        && !works(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .current_dir(dir),
        )
    {
        return Err(format!(
            "the npm package nats is missing and `npm install` in {} failed",
            dir.display()
        ));
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("responder.js")).arg(url);
    start(cmd).map_err(|e| format!("the Node.js responder did not start: {e}"))
}

/// The Python responder, if `nats-py` is importable.
pub fn python(dir: &Path, url: &str) -> Result<Responder, String> {
    if !works(Command::new("python3").args(["-c", "import nats"])) {
        return Err("python3 with nats-py is missing (pip install nats-py)".into());
    }
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join("responder.py")).arg(url);
    start(cmd).map_err(|e| format!("the Python responder did not start: {e}"))
}
