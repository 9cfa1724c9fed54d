//! Issue 18's scale script (not in CI): K real nodes and M deployments on this machine, over one
//! nats-server. It prints the time to converge after the deploys, after a node loss and after a
//! restart of every node, and the control-plane messages per second per node while idle.
//!
//! `NEX_SCALE_NODES=20 NEX_SCALE_DEPLOYMENTS=50 cargo test --release -p nex-cli --test scale \
//!  -- --ignored --nocapture` (defaults: 10 nodes, 30 deployments of 2 replicas each).

#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nex_client::NexClient;
use nex_client::devrun::DevrunOptions;
use nex_proto::deployments::Presence;
use nex_test_support::NodeProcess;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Presence of every node heard within 1.2 s.
async fn presence(c: &NexClient) -> Vec<Presence> {
    c.presence(Duration::from_millis(1200)).await.unwrap()
}

/// Waits until every key has `min(replicas, nodes)` replicas of its current version and no
/// node runs an old one; returns how long it took.
async fn converge(c: &NexClient, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let records = c.list_records(true).await.unwrap();
    while start.elapsed() < limit {
        let nodes = presence(c).await;
        if records
            .iter()
            .all(|r| NexClient::placement(&r.spec, &nodes).converged())
        {
            return Some(start.elapsed());
        }
    }
    None
}

#[ignore = "a scale run takes minutes; run by hand"]
#[tokio::test(flavor = "multi_thread")]
async fn scale() {
    let k = env("NEX_SCALE_NODES", 10);
    let m = env("NEX_SCALE_DEPLOYMENTS", 30);
    let nats = nex_test_support::nats();
    let home = tempfile::tempdir().unwrap();
    let nex = Path::new(harness::NEX);
    let t = Instant::now();
    let mut nodes: Vec<NodeProcess> = (0..k)
        .map(|_| NodeProcess::start(nex, &nats.url(), home.path(), &[]).unwrap())
        .collect();
    eprintln!("{k} nodes started in {:?}", t.elapsed());
    let client = async_nats::connect(nats.url()).await.unwrap();
    let keys = nex_client::keys::SenderKeys::load_or_create(&home.path().join(".nex")).unwrap();
    let c = NexClient::new(client.clone(), "default", Duration::from_secs(10));

    // Control-plane messages while idle.
    let count = Arc::new(AtomicU64::new(0));
    let mut sub = client.subscribe("$NEX.>").await.unwrap();
    let counter = count.clone();
    let counting = tokio::spawn(async move {
        while sub.next().await.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });

    let (_dir, file) = harness::temp_file("f.js", b"(subject, payload) => subject;");
    let t = Instant::now();
    for i in 0..m {
        let opts = DevrunOptions {
            name: Some(format!("f{i}")),
            trigger_subjects: vec![format!("scale.f{i}")],
            ..Default::default()
        };
        c.devrun_record(&file, &keys, opts, 2, BTreeMap::new())
            .await
            .unwrap();
    }
    let written = t.elapsed();
    let after_deploy = converge(&c, Duration::from_secs(120)).await;
    eprintln!("{m} deployments written in {written:?}; converged {after_deploy:?} after the last");

    let before = count.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = (count.load(Ordering::Relaxed) - before) as f64 / 10.0;
    eprintln!(
        "idle control plane: {idle:.0} msgs/s in all, {:.1} per node (presence beacons and heartbeats)",
        idle / k as f64
    );

    let lost = nodes.pop().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &lost.pid().to_string()])
        .status();
    drop(lost);
    let after_loss = converge(&c, Duration::from_secs(60)).await;
    eprintln!("one node killed: converged after {after_loss:?}");

    for n in nodes.drain(..) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &n.pid().to_string()])
            .status();
        drop(n);
    }
    let t = Instant::now();
    let nodes: Vec<NodeProcess> = (0..k)
        .map(|_| NodeProcess::start(nex, &nats.url(), home.path(), &[]).unwrap())
        .collect();
    let started = t.elapsed();
    let after_restart = converge(&c, Duration::from_secs(120)).await;
    eprintln!(
        "full restart: {k} nodes started in {started:?}, then converged after {after_restart:?}"
    );
    counting.abort();
    drop(nodes);
    assert!(after_deploy.is_some() && after_loss.is_some() && after_restart.is_some());
}
