//! nex over a real 3-server NATS cluster: functions' buckets have three copies, so key-value host
//! calls keep working, and deploys succeed, while one NATS server is down.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nex_test_support::{NatsCluster, NodeProcess};

use crate::harness::{NEX, Outcomes, load, service_error};

/// A 3-server cluster, one node given every server, and a client on the first server.
struct ClusterWorld {
    cluster: NatsCluster,
    home: tempfile::TempDir,
    /// Stopped on drop.
    _node: NodeProcess,
}

impl ClusterWorld {
    fn start() -> Self {
        let cluster = NatsCluster::start().expect("a 3-server NATS cluster");
        let home = tempfile::tempdir().unwrap();
        // The load makes thousands of host calls a second: lift the per-function rate limit.
        let config = home.path().join("node.json");
        std::fs::write(
            &config,
            r#"{"rate_limits": {"host_calls_per_sec": 1000000, "host_call_burst": 1000000}}"#,
        )
        .unwrap();
        let node = NodeProcess::start(
            Path::new(NEX),
            &cluster.urls(),
            home.path(),
            &["--config", config.to_str().unwrap()],
        )
        .expect("node starts");
        Self {
            cluster,
            home,
            _node: node,
        }
    }

    /// The CLI with every server of the cluster in `-s`.
    fn nex(&self, args: &[&str]) -> Output {
        Command::new(NEX)
            .args(args)
            .args(["-s", &self.cluster.urls(), "--timeout", "10"])
            .env("HOME", self.home.path())
            .env_remove("NATS_URL")
            .env_remove("NEX_HOME")
            .output()
            .expect("run nex")
    }

    fn devrun(&self, file: &Path, subject: &str, name: &str) -> Output {
        self.nex(&[
            "devrun",
            file.to_str().unwrap(),
            "--json",
            "--trigger_subject",
            subject,
            "--name",
            name,
        ])
    }
}

fn ok(out: &Output) -> bool {
    if !out.status.success() {
        eprintln!(
            "nex failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Stream `name`'s replicas and the server name of its leader (0 and none while JetStream does
/// not answer, e.g. while it elects a meta leader).
async fn stream_cluster(js: &async_nats::jetstream::Context, name: &str) -> (usize, String) {
    let Ok(mut stream) = js.get_stream(name).await else {
        return (0, String::new());
    };
    let Ok(info) = stream.info().await.cloned() else {
        return (0, String::new());
    };
    let leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
    (info.config.num_replicas, leader)
}

/// The leader of `stream`, waiting (up to 30 s) until it has one that JetStream reports.
async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> String {
    for _ in 0..150 {
        let (_, leader) = stream_cluster(js, stream).await;
        if !leader.is_empty() {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{stream} has no leader");
}

/// Asks the leader of `stream` to step down and waits for another leader; returns its name.
async fn step_down(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    stream: &str,
    leader: &str,
) -> String {
    let _ = client
        .request(
            format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
            Bytes::new(),
        )
        .await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, now) = stream_cluster(js, stream).await;
        if !now.is_empty() && now != leader {
            return now;
        }
    }
    panic!("{stream} got no new leader after a step-down");
}

/// Successes among calls sent in `[from, to)`, and the number of such calls.
fn window(out: &Outcomes, from: Duration, to: Duration) -> (usize, usize) {
    let w: Vec<_> = out.iter().filter(|o| o.0 >= from && o.0 < to).collect();
    (w.iter().filter(|o| o.1.is_some()).count(), w.len())
}

/// First and last failure, relative to `at`.
fn failures_around(out: &Outcomes, at: Duration) -> Option<(Duration, Duration)> {
    let failed: Vec<Duration> = out.iter().filter(|o| o.1.is_none()).map(|o| o.0).collect();
    Some((
        failed.first()?.saturating_sub(at),
        failed.last()?.saturating_sub(at),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_host_calls_and_deploys_survive_a_nats_server_loss() {
    let mut w = ClusterWorld::start();
    // examples/kv-counter.js without `kv.keys()`: with 4 callers at once, kv-counter.js has
    // calls stall past their time limit with every server up, on one server as on a cluster
    // (the agent's JavaScript path; see docs/scale-out.md), which would hide what this measures.
    let (_dir, counter) = crate::harness::temp_file(
        "counter.js",
        br#"(subject, payload) => {
  const kv = this.hostServices.kv;
  const current = kv.get(subject);
  const n = current ? Number(String.fromCharCode(...current)) + 1 : 1;
  kv.set(subject, String(n));
  return { count: n };
};"#,
    );
    assert!(ok(&w.devrun(&counter, "count.x", "counter")));

    // Callers on a server the test never kills: member 0 stays, 1 and 2 take turns dying.
    let client = async_nats::connect(w.cluster.url(0)).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let first = client.request("count.x", Bytes::new()).await.unwrap();
    assert!(service_error(&first).is_none(), "{first:?}");
    let kv_stream = format!(
        "KV_{}",
        nex_proto::names::workload_buckets("default", "counter").kv
    );
    let leader = leader_of(&js, &kv_stream).await;
    let (replicas, _) = stream_cluster(&js, &kv_stream).await;
    assert_eq!(replicas, 3, "the function's bucket has three copies");
    let files_stream = format!("OBJ_{}", nex_proto::DEVRUN_BUCKET);
    leader_of(&js, &files_stream).await;
    let (files, _) = stream_cluster(&js, &files_stream).await;
    assert_eq!(files, 3, "NEXCLIFILES has three copies");

    // Phase 1: a server that leads neither the bucket nor the JetStream meta group, and is not
    // the callers' member 0, dies under load. The bucket's leadership is moved (stepped down)
    // until there is such a server.
    let meta = w.cluster.meta_leader().expect("a meta leader");
    let mut leader = leader;
    let mut follower = None;
    for _ in 0..20 {
        follower = (1..3).find(|&i| w.cluster.name(i) != leader && w.cluster.name(i) != meta);
        if follower.is_some() {
            break;
        }
        leader = step_down(&client, &js, &kv_stream, &leader).await;
    }
    let follower = follower.expect("a server leading nothing");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "count.x",
        4,
        Duration::from_secs(2),
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = start.elapsed();
    w.cluster.kill(follower);
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    // Calls in flight when the node's own server dies are lost: count from just before.
    let (good, all) = window(
        &out,
        killed_at.saturating_sub(Duration::from_millis(100)),
        start.elapsed(),
    );
    eprintln!(
        "follower {} killed: {good} of {all} calls in the next 6 s succeeded (failures {:?})",
        w.cluster.name(follower),
        failures_around(&out, killed_at)
    );
    assert!(all > 20, "the load ran ({all} calls)");
    assert!(
        good * 100 >= all * 99,
        "{good} of {all} calls succeeded while a follower was down"
    );
    w.cluster.restart(follower).unwrap();
    w.cluster.wait_formed(Duration::from_secs(30)).unwrap();

    // Phase 2: the bucket's leader dies under load (when it is not member 0, which the callers
    // use; else member 0's stream leadership is moved first). Calls fail while JetStream elects
    // a new leader, then all succeed again.
    let mut leader = leader_of(&js, &kv_stream).await;
    for _ in 0..20 {
        if leader != w.cluster.name(0) {
            break;
        }
        leader = step_down(&client, &js, &kv_stream, &leader).await;
    }
    let meta = w.cluster.meta_leader().unwrap_or_default();
    eprintln!("killing the bucket leader {leader} (meta leader: {meta})");
    let victim = (1..3).find(|&i| w.cluster.name(i) == leader).unwrap();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "count.x",
        4,
        Duration::from_secs(2),
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = start.elapsed();
    w.cluster.kill(victim);
    // Wait until the bucket, NEXCLIFILES and the JetStream meta group (which creates the
    // consumer a node reads an artifact with) have leaders among the living, then deploy while
    // the server is still down. A deploy during an election fails (the read times out).
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.cluster.meta_leader().is_none_or(|m| m == leader) {
        assert!(Instant::now() < deadline, "no new meta leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for stream in [&kv_stream, &files_stream] {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (_, now) = stream_cluster(&js, stream).await;
            if !now.is_empty() && now != leader {
                break;
            }
            assert!(Instant::now() < deadline, "no new leader of {stream}");
        }
    }
    let elected = start.elapsed() - killed_at;
    // Right after the meta leader itself died, the consumer the node reads the artifact with
    // may still time out (the node's JetStream requests wait 2 s): a second try works.
    let deployed = Instant::now();
    let echo = nex_test_support::repo_root().join("examples/echo.js");
    let mut tries = 1;
    while !ok(&w.devrun(&echo, "echo.down", "while-down")) {
        assert!(
            tries < 5,
            "a deploy works while one of three servers is down"
        );
        tries += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "deploy with a server down took {:?} ({tries} tries)",
        deployed.elapsed()
    );
    let m = client
        .request("echo.down", Bytes::from("hi"))
        .await
        .unwrap();
    assert!(service_error(&m).is_none(), "{m:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    let failures = failures_around(&out, killed_at);
    let (good, all) = window(&out, killed_at, start.elapsed());
    eprintln!(
        "bucket leader {} killed: {good} of {all} calls after the kill succeeded; failures from \
         +{:?} to +{:?} after the kill; new leader seen +{elected:?}",
        w.cluster.name(victim),
        failures.map(|f| f.0),
        failures.map(|f| f.1),
    );
    // Measured: calls in flight on the dead server time out, then the bucket has no leader
    // ("no stream found") until JetStream elects one; the last failure came 4.05 to 4.8 s after
    // the kill on a quiet machine, 11.7 s once on a busy one.
    let (_, last_failure) = failures.unwrap_or_default();
    assert!(
        last_failure < Duration::from_secs(20),
        "calls failed until +{last_failure:?} after the kill (new leader seen at +{elected:?})"
    );
    let tail = killed_at + last_failure + Duration::from_millis(1);
    let (_, after) = window(&out, tail, start.elapsed());
    assert!(
        after > 20,
        "the load ran after the election ({after} calls)"
    );
}

/// Sends `sig` (e.g. `-STOP`) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// What bounds how long a hung node (SIGSTOP) keeps getting calls, measured with the server's
/// ping settings (`ping_interval` 1 s, `ping_max` 2: `Liveness::bound()`, 4 s). A connection
/// that is silent both ways (the node's host-service connection) is closed within the bound.
/// The connection holding the trigger's queue subscription is not: nats-server 2.9 counts the
/// messages it delivers as activity and never pings it while calls flow, so the hung node keeps
/// its share until the socket's buffers fill and the server finds a slow consumer. The test
/// asserts the first and prints the second (docs/scale-out.md).
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_node_is_cut_off_by_pings_only_when_silent() {
    let monitor = nex_embedded_nats::free_port().unwrap();
    let nats = nex_test_support::NatsServer::start(nex_test_support::Options {
        monitor_port: Some(monitor),
        ..Default::default()
    })
    .unwrap();
    let echo = nex_test_support::guest("echofunction");
    let config = format!(
        r#"{{"allow_file_locations": true, "autostart": {{"workloads": [
            {{"name": "pinned", "type": "wasm", "location": "file://{}", "trigger_subjects": ["hung.echo"]}}
        ]}}}}"#,
        echo.display()
    );
    let homes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = Vec::new();
    for home in &homes {
        let path = home.path().join("node.json");
        std::fs::write(&path, &config).unwrap();
        nodes.push(
            NodeProcess::start(
                Path::new(NEX),
                &nats.url(),
                home.path(),
                &["--config", path.to_str().unwrap()],
            )
            .expect("node starts"),
        );
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    for _ in 0..20 {
        let m = client.request("hung.echo", Bytes::from("x")).await.unwrap();
        assert!(service_error(&m).is_none());
    }
    // Connections by name (`nex-node`: control and triggers, `nex-node-host`: host services).
    let count = |name: &str| {
        let connz = nex_test_support::http_get_json(monitor, "/connz").unwrap();
        connz["connections"]
            .as_array()
            .map(|a| a.iter().filter(|c| c["name"] == name).count())
            .unwrap_or_default()
    };
    assert_eq!((count("nex-node"), count("nex-node-host")), (2, 2));

    // Calls get 300 ms, so that a worker whose call went to the hung node tries again soon.
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(load(
        client.clone(),
        "hung.echo",
        8,
        Duration::from_millis(300),
        start,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hung_at = start.elapsed();
    signal(nodes[1].pid(), "-STOP");
    let (mut silent_cut, mut trigger_cut) = (None, None);
    while start.elapsed() < hung_at + Duration::from_secs(9) {
        let since = start.elapsed() - hung_at;
        if silent_cut.is_none() && count("nex-node-host") < 2 {
            silent_cut = Some(since);
        }
        if trigger_cut.is_none() && count("nex-node") < 2 {
            trigger_cut = Some(since);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let out = calls.await.unwrap();
    signal(nodes[1].pid(), "-CONT");

    let bound = nex_test_support::Liveness::default().bound();
    let failures = failures_around(&out, hung_at);
    let (good, all) = window(&out, hung_at, start.elapsed());
    eprintln!(
        "hung node: silent connection closed +{silent_cut:?}, trigger connection closed \
         +{trigger_cut:?} (ping bound {bound:?}); {good} of {all} calls in the 9 s after the \
         hang succeeded, failed ones sent from +{:?} to +{:?}",
        failures.map(|f| f.0),
        failures.map(|f| f.1),
    );
    let silent_cut = silent_cut.expect("the silent connection was closed");
    assert!(
        silent_cut <= bound + Duration::from_secs(1),
        "the silent connection stayed open {silent_cut:?}, beyond the ping bound {bound:?}"
    );
    assert!(failures.is_some(), "the hung node got calls");
}

#[test]
fn bucket_replicas_out_of_range_is_a_clear_error() {
    let echo = nex_test_support::repo_root().join("examples/echo.js");
    for bad in ["0", "6", "many"] {
        let out = Command::new(NEX)
            .args(["devrun", echo.to_str().unwrap(), "--trigger_subject", "x"])
            .args(["--bucket-replicas", bad, "-s", "nats://127.0.0.1:1"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bucket replicas must be 1 to 5"),
            "{bad}: {err}"
        );
    }
}
