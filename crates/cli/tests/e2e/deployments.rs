//! Deployments: signed records of desired state that the nodes place and keep by themselves,
//! on a real 3-server NATS cluster with three real nodes (`nex node up` processes).
//!
//! Covered: replicas on distinct nodes; a node killed under load (no failed call sent more
//! than 1 s after the kill, replicas back within 5 s); a rolling replace under load (no call
//! without an answer, only the new version after); a lame duck handing its replica over with
//! no failed call; a restart of every node (back with no command within 15 s); undeploy; and
//! bad input (replica counts, unknown placement tags, unknown names, forged records, racing
//! deploys).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use nex_proto::deployments::Presence;
use nex_test_support::{NatsCluster, NodeProcess};

use crate::harness::{NEX, Outcomes, load, temp_file};

/// Each call's time limit under load.
const CALL_LIMIT: Duration = Duration::from_millis(1500);

/// A cluster of three NATS servers, nodes given every server, and the CLI's home (whose
/// issuer operates the nodes and whose `deployment.xk` the nodes share).
struct Fleet {
    cluster: NatsCluster,
    home: tempfile::TempDir,
    nodes: Vec<NodeProcess>,
}

impl Fleet {
    fn start(nodes: usize) -> Self {
        let cluster = NatsCluster::start().expect("a 3-server NATS cluster");
        let home = tempfile::tempdir().unwrap();
        let mut f = Fleet {
            cluster,
            home,
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            f.add_node();
        }
        f
    }

    fn add_node(&mut self) {
        let n = NodeProcess::start(Path::new(NEX), &self.cluster.urls(), self.home.path(), &[])
            .expect("node starts");
        self.nodes.push(n);
    }

    fn nex(&self, args: &[&str]) -> Output {
        Command::new(NEX)
            .args(args)
            .args(["-s", &self.cluster.urls(), "--timeout", "15"])
            .env("HOME", self.home.path())
            .env_remove("NATS_URL")
            .env_remove("NEX_HOME")
            .output()
            .expect("run nex")
    }

    fn nex_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.nex(args);
        assert!(
            out.status.success(),
            "nex {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "nex {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn deploy(&self, file: &Path, name: &str, replicas: &str) -> serde_json::Value {
        self.nex_json(&[
            "devrun",
            file.to_str().unwrap(),
            "--json",
            "--name",
            name,
            "--trigger_subject",
            &format!("{name}.call"),
            "--replicas",
            replicas,
        ])
    }

    fn kill(&mut self, node_id: &str) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.node_id == node_id)
            .expect("a node of this fleet");
        let n = self.nodes.remove(i);
        let status = Command::new("kill")
            .args(["-KILL", &n.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Dropping a killed node only reaps it.
        drop(n);
    }
}

/// A function answering `text`.
fn function(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    temp_file(
        "svc.js",
        format!("(subject, payload) => {text:?};").as_bytes(),
    )
}

/// Every node's latest presence over 1.2 s.
async fn presences(client: &async_nats::Client) -> std::collections::BTreeMap<String, Presence> {
    let mut sub = client
        .subscribe(nex_proto::subjects::PRESENCE)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    let mut seen = std::collections::BTreeMap::new();
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(p) = serde_json::from_slice::<Presence>(&m.payload) {
            seen.insert(p.node_id.clone(), p);
        }
    }
    seen
}

/// The versions of every replica of `key` the nodes report, one entry per replica.
async fn replica_versions(client: &async_nats::Client, key: &str) -> Vec<u64> {
    presences(client)
        .await
        .into_values()
        .flat_map(|p| p.running.into_iter())
        .filter(|r| r.key == key)
        .map(|r| r.version)
        .collect()
}

/// The nodes running `key` at `version` (any version when `None`), from presence over 1.2 s.
async fn holders(client: &async_nats::Client, key: &str, version: Option<u64>) -> BTreeSet<String> {
    presences(client)
        .await
        .into_values()
        .filter(|p| match version {
            Some(v) => p.runs(key) == Some(v),
            None => p.runs(key).is_some(),
        })
        .map(|p| p.node_id)
        .collect()
}

fn failed_after(out: &Outcomes, from: Duration) -> (usize, usize) {
    let w: Vec<_> = out.iter().filter(|o| o.0 >= from).collect();
    (w.iter().filter(|o| o.1.is_none()).count(), w.len())
}

/// Polls until `pred` holds over the presence of `key`, up to `limit`; returns the time taken.
async fn until(
    client: &async_nats::Client,
    key: &str,
    version: Option<u64>,
    limit: Duration,
    pred: impl Fn(&BTreeSet<String>) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred(&holders(client, key, version).await) {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_are_placed_healed_replaced_handed_over_and_restarted() {
    let mut fleet = Fleet::start(3);
    let client = async_nats::connect(fleet.cluster.url(0)).await.unwrap();
    let key = "default.svc";

    // Two replicas, on distinct nodes.
    let (_d1, v1) = function("v1");
    let d = fleet.deploy(&v1, "svc", "2");
    let version1 = d["version"].as_u64().unwrap();
    let running: BTreeSet<String> = d["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(running.len(), 2, "two distinct nodes: {d}");
    assert_eq!(d["converged"], true, "{d}");
    let ls = fleet.nex_json(&["ls", "--json"]);
    assert_eq!(ls[0]["name"], "svc", "{ls}");
    assert_eq!(ls[0]["replicas"], 2);
    assert_eq!(ls[0]["running"].as_array().unwrap().len(), 2, "{ls}");
    let m = client.request("svc.call", Bytes::new()).await.unwrap();
    assert_eq!(&m.payload[..], b"v1");
    // The records bucket has three copies on the cluster.
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("KV_NEXDEPLOYMENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);

    // A node running a replica is killed under load.
    let victim = running.iter().next().unwrap().clone();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "svc.call",
        4,
        CALL_LIMIT,
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = start.elapsed();
    fleet.kill(&victim);
    let back = until(&client, key, Some(version1), Duration::from_secs(10), |h| {
        h.len() == 2 && !h.contains(&victim)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    let (failed, all) = failed_after(&out, killed_at + Duration::from_secs(1));
    let (failed_total, _) = failed_after(&out, killed_at);
    eprintln!(
        "node killed: replicas back after {back:?} (+ up to 1.2 s of sampling); {failed_total} \
         calls failed in all, {failed} of {all} sent more than 1 s after the kill"
    );
    let back = back.expect("two replicas again within 10 s");
    assert!(
        back < Duration::from_secs(5),
        "replicas back after {back:?}"
    );
    assert!(all > 20, "the load ran ({all} calls)");
    assert_eq!(failed, 0, "no call sent more than 1 s after the kill fails");
    fleet.add_node();

    // A rolling replace under load: never no answer; after convergence only v2.
    let (_d2, v2) = function("v2");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "svc.call",
        4,
        CALL_LIMIT,
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = fleet.deploy(&v2, "svc", "2");
    let version2 = d["version"].as_u64().unwrap();
    assert!(version2 > version1);
    assert_eq!(d["converged"], true, "{d}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    let (failed, all) = failed_after(&out, Duration::ZERO);
    eprintln!("rolling replace: {failed} of {all} calls failed");
    assert!(all > 20, "the load ran ({all} calls)");
    assert_eq!(
        failed, 0,
        "a rolling replace never leaves the name without a replica"
    );
    for _ in 0..40 {
        let m = client.request("svc.call", Bytes::new()).await.unwrap();
        assert_eq!(
            &m.payload[..],
            b"v2",
            "only the new version answers after convergence"
        );
    }

    // A lame duck hands its replica over before it stops, with no failed call.
    let holding: Vec<String> = holders(&client, key, Some(version2))
        .await
        .into_iter()
        .collect();
    let duck = holding[0].clone();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "svc.call",
        4,
        CALL_LIMIT,
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = fleet.nex(&["lameduck", &duck]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i = fleet.nodes.iter().position(|n| n.node_id == duck).unwrap();
    let exited = fleet.nodes[i].wait_exit(Duration::from_secs(20));
    assert!(exited.is_some(), "the lame duck exits after its hand-over");
    fleet.nodes.remove(i);
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    let (failed, all) = failed_after(&out, Duration::ZERO);
    eprintln!("lame duck: {failed} of {all} calls failed during the hand-over");
    assert!(all > 20);
    assert_eq!(failed, 0, "the lame duck's replica moved first");
    let now = holders(&client, key, Some(version2)).await;
    assert_eq!(now.len(), 2, "two replicas, none on the lame duck: {now:?}");
    assert!(!now.contains(&duck));

    // Every node dies; new nodes bring the deployment back with no command.
    let ids: Vec<String> = fleet.nodes.iter().map(|n| n.node_id.clone()).collect();
    for id in ids {
        fleet.kill(&id);
    }
    let restarted = Instant::now();
    for _ in 0..3 {
        fleet.add_node();
    }
    let mut answered = None;
    while restarted.elapsed() < Duration::from_secs(30) {
        if let Ok(m) = client.request("svc.call", Bytes::new()).await
            && &m.payload[..] == b"v2"
        {
            answered = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("full restart: answering again after {answered:?} (node starts included)");
    let answered = answered.expect("the deployment is back");
    assert!(
        answered < Duration::from_secs(15),
        "back after {answered:?}"
    );
    let back = until(&client, key, Some(version2), Duration::from_secs(10), |h| {
        h.len() == 2
    })
    .await;
    assert!(back.is_some(), "both replicas back after the restart");

    // Undeploy stops every replica.
    let out = fleet.nex(&["undeploy", "svc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(holders(&client, key, None).await.is_empty());
    let gone = client.request("svc.call", Bytes::new()).await;
    assert!(gone.is_err(), "no responders after undeploy");
    let ls = fleet.nex_json(&["ls", "--json"]);
    assert_eq!(ls, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_deployments_are_refused_and_change_nothing() {
    let fleet = Fleet::start(2);
    let client = async_nats::connect(fleet.cluster.url(1)).await.unwrap();
    let (_d, v1) = function("one");
    let (_d2, v2) = function("two");

    for (replicas, expect) in [("0", "1 to 1000"), ("10000", "1 to 1000")] {
        let out = fleet.nex(&[
            "devrun",
            v1.to_str().unwrap(),
            "--name",
            "bad",
            "--trigger_subject",
            "bad.call",
            "--replicas",
            replicas,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{replicas}: {err}"
        );
    }
    let out = fleet.nex(&[
        "devrun",
        v1.to_str().unwrap(),
        "--name",
        "bad",
        "--trigger_subject",
        "bad.call",
        "--replicas",
        "1",
        "--placement",
        "zone=mars",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no node can run"),
        "{err}"
    );
    let out = fleet.nex(&["undeploy", "nothing-here"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no deployment `nothing-here`"),
        "{err}"
    );
    assert_eq!(fleet.nex_json(&["ls", "--json"]), serde_json::json!([]));

    // A record with a broken signature: refused, reported in events, never run.
    let mut events = crate::harness::collect(
        &client,
        &nex_proto::subjects::event("default", nex_proto::events::DEPLOYMENT_REFUSED),
    )
    .await;
    let keys =
        nex_client::keys::SenderKeys::load_or_create(&fleet.home.path().join(".nex")).unwrap();
    let spec = nex_proto::deployments::DeploymentSpec {
        version: 1,
        location: "nats://NEXCLIFILES/default/forged".into(),
        hash: "ab".repeat(32),
        trigger_subjects: vec!["forged.call".into()],
        ..nex_proto::deployments::DeploymentSpec::new(
            "default",
            "forged",
            nex_proto::control::WorkloadType::Javascript,
        )
    };
    let token = nex_jwt::sign_document(&keys.issuer, "default.forged", &spec).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let store = nex_client::NexClient::new(client.clone(), "default", Duration::from_secs(5))
        .deployments_bucket()
        .await
        .unwrap();
    store
        .put("default.forged", parts.join(".").into())
        .await
        .unwrap();
    let refused = crate::harness::wait_for(&mut events, Duration::from_secs(5), |_| true).await;
    let refused = refused.expect("a deployment_refused event");
    let ev: serde_json::Value = serde_json::from_slice(&refused.payload).unwrap();
    assert_eq!(ev["data"]["key"], "default.forged", "{ev}");
    assert!(
        ev["data"]["reason"].as_str().unwrap().contains("signature"),
        "{ev}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(client.request("forged.call", Bytes::new()).await.is_err());
    let ls = fleet.nex_json(&["ls", "--json"]);
    assert!(
        ls[0]["invalid"].is_string(),
        "ls shows the invalid record: {ls}"
    );

    // Two deploys of one name at once: one record wins, and only it answers.
    let race = |file: std::path::PathBuf| {
        let urls = fleet.cluster.urls();
        let home = fleet.home.path().to_owned();
        std::thread::spawn(move || {
            Command::new(NEX)
                .args([
                    "devrun",
                    file.to_str().unwrap(),
                    "--json",
                    "--name",
                    "raced",
                ])
                .args(["--trigger_subject", "raced.call", "--replicas", "2"])
                .args(["-s", &urls, "--timeout", "15"])
                .env("HOME", home)
                .env_remove("NATS_URL")
                .env_remove("NEX_HOME")
                .output()
                .unwrap()
        })
    };
    let (a, b) = (race(v1.clone()), race(v2.clone()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let won: Vec<(&str, &Output)> = [("one", &a), ("two", &b)]
        .into_iter()
        .filter(|(_, o)| o.status.success())
        .collect();
    assert!(!won.is_empty(), "a deploy wins");
    for (_, o) in [("one", &a), ("two", &b)] {
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("changed its record first"),
                "the loser is told: {err}"
            );
        }
    }
    let ls = fleet.nex_json(&["ls", "--json"]);
    let raced = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "raced")
        .unwrap()
        .clone();
    let winner_version = raced["version"].as_u64().unwrap();
    let winner = won
        .iter()
        .find(|(_, o)| {
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["version"].as_u64()
                == Some(winner_version)
        })
        .map(|(text, _)| *text)
        .expect("the record is one a deploy wrote");
    // Settled: two replicas, both the winner's, and none of an earlier version left draining.
    let start = Instant::now();
    let mut versions = Vec::new();
    while start.elapsed() < Duration::from_secs(15) {
        versions = replica_versions(&client, "default.raced").await;
        if versions == [winner_version, winner_version] {
            break;
        }
    }
    assert_eq!(
        versions,
        [winner_version, winner_version],
        "settled replicas"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..20 {
        let m = match client.request("raced.call", Bytes::new()).await {
            Ok(m) => m,
            Err(e) => panic!(
                "call {i} after settling failed ({:?}: {e}); replicas now {:?}",
                e.kind(),
                replica_versions(&client, "default.raced").await
            ),
        };
        assert_eq!(
            String::from_utf8_lossy(&m.payload),
            winner,
            "only the winner answers"
        );
    }
}

/// `nex run LOCATION KEY=VALUE --replicas N` writes a record for an artifact already in the
/// object store: the nodes place it (with its sealed environment), and a node given with
/// --replicas is a usage error.
#[tokio::test(flavor = "multi_thread")]
async fn run_with_replicas_deploys_an_uploaded_artifact() {
    let fleet = Fleet::start(2);
    let client = async_nats::connect(fleet.cluster.url(1)).await.unwrap();
    let control = nex_client::NexClient::new(client.clone(), "default", Duration::from_secs(5));
    let location = control
        .upload_artifact(
            "from-store",
            b"(subject, payload) => 'greeting=' + process.env.GREETING",
        )
        .await
        .unwrap();
    let out = fleet.nex_json(&[
        "run",
        &location,
        "GREETING=hello",
        "--json",
        "--type",
        "javascript",
        "--name",
        "stored",
        "--trigger-subject",
        "stored.call",
        "--replicas",
        "2",
    ]);
    assert_eq!(out["converged"], true, "{out}");
    assert_eq!(out["running"].as_array().map(Vec::len), Some(2), "{out}");
    let m = client
        .request("stored.call", Bytes::new())
        .await
        .expect("the deployment answers");
    assert_eq!(&m.payload[..], b"greeting=hello");
    let ls = fleet.nex_json(&["ls", "--json"]);
    assert_eq!(ls[0]["name"], "stored", "{ls}");
    assert_eq!(ls[0]["location"], location.as_str(), "{ls}");

    let node = fleet.nodes[0].node_id.clone();
    let out = fleet.nex(&[
        "run",
        &location,
        &node,
        "--name",
        "stored",
        "--trigger-subject",
        "stored.call",
        "--replicas",
        "2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("do not go together"),
        "{err}"
    );
}
