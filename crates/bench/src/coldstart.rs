//! Deploy-to-first-reply: the time from sending a signed deploy request (artifact already in the
//! object store) to the first reply of the new function. JavaScript, WebAssembly (modules and
//! components) whose compiled code is in the node's cache, and WebAssembly never seen before (a fresh hash: the module
//! with a random custom section appended, so it must be compiled). Python is a component too: the
//! same measurement of the component componentize-py built.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nex_client::NexClient;
use nex_client::keys::SenderKeys;
use nex_proto::control::DeployRequest;

pub struct Artifact {
    pub kind: &'static str,
    pub workload_type: &'static str,
    pub bytes: Vec<u8>,
    /// Give every deploy its own hash (defeats the compiled-module cache).
    pub fresh_each_time: bool,
    /// At most this many deploys (a Python component's uncached compile takes about 30 s).
    pub at_most: Option<usize>,
}

/// Appends a custom section (id 0) named `nex-bench` holding `salt`: a valid module or component
/// with a new hash.
fn salted(wasm: &[u8], salt: u64) -> Vec<u8> {
    let name = b"nex-bench";
    let body_len = 1 + name.len() + 8;
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(body_len as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&salt.to_le_bytes());
    out
}

/// Deploys `artifact` `n` times under new names and returns each deploy-to-first-reply time.
/// The workloads are stopped again afterwards.
pub async fn measure(
    nex: &NexClient,
    client: &async_nats::Client,
    keys: &SenderKeys,
    node: &str,
    artifact: &Artifact,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    let mut ids = Vec::new();
    let salt_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    for i in 0..artifact.at_most.map_or(n, |m| m.min(n)) {
        let bytes = if artifact.fresh_each_time {
            salted(&artifact.bytes, salt_base + i as u64)
        } else {
            artifact.bytes.clone()
        };
        let name = format!("cold-{}-{i}", artifact.kind);
        let location = nex.upload_artifact(&name, &bytes).await?;
        let subject = format!("cold.{}.{i}", artifact.kind);
        let mut req = DeployRequest {
            workload_name: name,
            workload_type: artifact.workload_type.into(),
            location,
            hash: nex_client::sha256_hex(&bytes),
            trigger_subjects: vec![subject.clone()],
            target_node: Some(node.into()),
            ..Default::default()
        };
        keys.sign_deploy(&mut req)?;
        let started = Instant::now();
        let run = nex.deploy(node, &req).await?;
        let reply = client.request(subject, Bytes::from_static(b"x")).await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            !reply.payload.is_empty(),
            "cold {} gave no reply",
            artifact.kind
        );
        ids.push(run.id);
    }
    for id in ids {
        nex.stop(keys, node, &id).await?;
    }
    Ok(times)
}

pub fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}
