//! Issue 17, holes 1, 2, 8, 13, 14 and 16: who may do what to a node and its workloads, and what
//! one tenant may take of it. Two tenants with their own issuer keys (neither is the node's
//! operator, whose key is the world's home key) against a real nats-server and the real node.

use std::time::Duration;

use bytes::Bytes;
use nex_client::devrun::DevrunOptions;
use nex_proto::control::{Envelope, ErrorCode, LameduckResponse, Limits};
use nex_test_support::guest;

use crate::harness::*;

fn opts(name: &str, subjects: &[&str]) -> DevrunOptions {
    DevrunOptions {
        name: Some(name.into()),
        trigger_subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn devrun_as(
    w: &World,
    t: &Tenant,
    ns: &str,
    file: &std::path::Path,
    o: DevrunOptions,
) -> Result<String, nex_client::Error> {
    w.control_as(t, ns)
        .devrun(file, &t.keys(), o)
        .await
        .map(|d| d.run.id)
}

async fn lameduck_raw(w: &World, token: Option<String>) -> Envelope<LameduckResponse> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(nex_proto::HEADER_JWT, t.as_str());
    }
    let req = async_nats::Request::new()
        .headers(headers)
        .payload(Bytes::new())
        .timeout(Some(Duration::from_secs(5)));
    let m = w
        .client
        .send_request(nex_proto::subjects::lameduck(&w.node.node_id), req)
        .await
        .expect("the node answers");
    serde_json::from_slice(&m.payload).expect("an envelope")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_operator_can_lame_duck_a_node() {
    let mut w = World::start().await;
    w.devrun(&guest("echofunction"), &["ld.guard"], &[]);
    let tenant = Tenant::new();

    // Unsigned (hole 1: anyone who could publish stopped every node).
    let e = lameduck_raw(&w, None).await.into_outcome().unwrap_err();
    assert_eq!(e.code, Some(ErrorCode::Unauthorized), "{e}");
    // Signed by a tenant, not an operator.
    let token = tenant.keys().lameduck_token(&w.node.node_id).unwrap();
    let e = lameduck_raw(&w, Some(token))
        .await
        .into_outcome()
        .unwrap_err();
    assert_eq!(e.code, Some(ErrorCode::Forbidden), "{e}");
    // An operator's token for another node.
    let token = w.keys().lameduck_token("NOTTHISNODE").unwrap();
    let e = lameduck_raw(&w, Some(token))
        .await
        .into_outcome()
        .unwrap_err();
    assert_eq!(e.code, Some(ErrorCode::Unauthorized), "{e}");
    // A deploy token is not a lame-duck token.
    let token = w.keys().stop_token(&w.node.node_id).unwrap();
    let e = lameduck_raw(&w, Some(token))
        .await
        .into_outcome()
        .unwrap_err();
    assert_eq!(e.code, Some(ErrorCode::Unauthorized), "{e}");
    // Through all that the node kept serving, and did not enter lame duck.
    assert_eq!(w.call("ld.guard", b"x").await, b"xld.guard");
    assert_eq!(
        w.control().ping().await.unwrap()[0].tags["nex.lameduck"],
        "false"
    );

    // The operator's signed request works once; a replay of it is refused.
    let token = w.keys().lameduck_token(&w.node.node_id).unwrap();
    lameduck_raw(&w, Some(token.clone()))
        .await
        .into_outcome()
        .expect("the operator may lame-duck its node");
    assert!(w.node.wait_exit(Duration::from_secs(15)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_belongs_to_the_issuer_that_deployed_it() {
    let w = World::start().await;
    let (alice, mallory) = (Tenant::new(), Tenant::new());
    let id = devrun_as(
        &w,
        &alice,
        "shop",
        &guest("echofunction"),
        opts("orders", &["own.orders"]),
    )
    .await
    .unwrap();
    assert_eq!(w.call("own.orders", b"x").await, b"xown.orders");

    // Hole 2: Mallory deploys her code under Alice's name in Alice's namespace.
    let (_d, evil) = temp_file("evil.js", b"(subject, payload) => 'taken over'");
    let e = devrun_as(&w, &mallory, "shop", &evil, opts("orders", &["own.orders"]))
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::Forbidden), "{e}");
    // The same through the CLI.
    let out = w.nex_as(
        &mallory,
        &[
            "devrun",
            evil.to_str().unwrap(),
            "--name",
            "orders",
            "--namespace",
            "shop",
            "--trigger_subject",
            "own.orders",
        ],
    );
    assert!(!out.status.success());
    // Alice's code still answers, every time, and her workload is the same one.
    for _ in 0..20 {
        assert_eq!(w.call("own.orders", b"x").await, b"xown.orders");
    }
    let mine = w
        .control_as(&alice, "shop")
        .info(&w.node.node_id)
        .await
        .unwrap();
    assert_eq!(mine.machines.len(), 1);
    assert_eq!(mine.machines[0].id, id);

    // Nor may Mallory stop it.
    let e = w
        .control_as(&mallory, "shop")
        .stop(&mallory.keys(), &w.node.node_id, &id)
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::Forbidden), "{e}");

    // Workloads the node started from its configuration belong to its operators: a tenant
    // cannot replace them either (tested on a world with an autostarted function below).

    // Alice may replace her own function; the new code answers.
    let (_d2, v2) = temp_file("v2.js", b"(subject, payload) => 'v2'");
    devrun_as(&w, &alice, "shop", &v2, opts("orders", &["own.orders"]))
        .await
        .unwrap();
    assert_eq!(w.call("own.orders", b"x").await, b"v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_workloads_belong_to_the_operators() {
    let echo = guest("echofunction");
    let w = World::start_with_config(&format!(
        r#"{{"allow_file_locations": true, "autostart": {{"workloads": [
            {{"name": "pinned", "type": "wasm", "location": "file://{}", "trigger_subjects": ["own.pinned"]}}
        ]}}}}"#,
        echo.display()
    ))
    .await;
    assert_eq!(w.call("own.pinned", b"x").await, b"xown.pinned");
    let mallory = Tenant::new();
    let (_d, evil) = temp_file("evil.js", b"(subject, payload) => 'taken over'");
    let e = devrun_as(
        &w,
        &mallory,
        "default",
        &evil,
        opts("pinned", &["own.pinned"]),
    )
    .await
    .unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::Forbidden), "{e}");
    assert_eq!(w.call("own.pinned", b"x").await, b"xown.pinned");
    // The operator may.
    w.devrun(&evil, &["own.pinned"], &["--name", "pinned"]);
    assert_eq!(w.call("own.pinned", b"x").await, b"taken over");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_show_each_issuer_only_its_own_workloads() {
    let w = World::start().await;
    let (alice, bob) = (Tenant::new(), Tenant::new());
    let id = devrun_as(
        &w,
        &alice,
        "shop",
        &guest("echofunction"),
        opts("secret-name", &["own.read"]),
    )
    .await
    .unwrap();

    // Alice sees her workload, without the agent's pid (an operator detail).
    let info = w
        .control_as(&alice, "shop")
        .info(&w.node.node_id)
        .await
        .unwrap();
    assert_eq!(info.machines.len(), 1);
    assert_eq!(info.machines[0].id, id);
    assert_eq!(info.machines[0].agent_pid, None);
    let pings = w
        .control_as(&alice, "shop")
        .workload_ping(None)
        .await
        .unwrap();
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].running_machines[0].name, "secret-name");

    // Hole 14: Bob, and anyone unsigned, get the public node summary and nothing of Alice's.
    let info = w
        .control_as(&bob, "shop")
        .info(&w.node.node_id)
        .await
        .unwrap();
    assert!(info.machines.is_empty(), "{:?}", info.machines);
    let anonymous = nex_client::NexClient::new(w.client.clone(), "shop", Duration::from_secs(2));
    let info = anonymous.info(&w.node.node_id).await.unwrap();
    assert!(info.machines.is_empty());
    assert_eq!(info.node_id, w.node.node_id);
    assert!(
        w.control_as(&bob, "shop")
            .workload_ping(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        anonymous
            .workload_ping(Some("secret-name"))
            .await
            .unwrap()
            .is_empty()
    );
    // A token for another namespace is refused, not silently widened.
    let e = w
        .control_as(&alice, "other")
        .workload_ping(None)
        .await
        .unwrap();
    assert!(e.is_empty());

    // The operator sees everything, pids included.
    let info = w
        .control()
        .with_keys(std::sync::Arc::new(w.keys()))
        .info(&w.node.node_id)
        .await
        .unwrap();
    assert!(info.machines.is_empty(), "namespace default has nothing");
    let op = nex_client::NexClient::new(w.client.clone(), "shop", Duration::from_secs(5))
        .with_keys(std::sync::Arc::new(w.keys()));
    let info = op.info(&w.node.node_id).await.unwrap();
    assert_eq!(info.machines.len(), 1);
    assert!(info.machines[0].agent_pid.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_and_node_quotas_refuse_clearly() {
    let w = World::start_with_config(
        r#"{"namespace_defaults": {"max_workloads": 2, "max_memory_mb": 100000},
            "namespaces": {"small": {"max_memory_mb": 100}}}"#,
    )
    .await;
    let greedy = Tenant::new();
    let echo = guest("echofunction");
    for i in 0..2 {
        devrun_as(
            &w,
            &greedy,
            "greedy",
            &echo,
            opts(&format!("f{i}"), &[&format!("quota.g{i}")]),
        )
        .await
        .unwrap();
    }
    // Hole 13: the third is refused; another tenant still deploys.
    let e = devrun_as(&w, &greedy, "greedy", &echo, opts("f2", &["quota.g2"]))
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::QuotaExceeded), "{e}");
    let other = Tenant::new();
    devrun_as(&w, &other, "polite", &echo, opts("p", &["quota.p"]))
        .await
        .unwrap();
    // Replacing one of the two is not a third.
    devrun_as(&w, &greedy, "greedy", &echo, opts("f1", &["quota.g1"]))
        .await
        .unwrap();

    // Declared memory per namespace: 64 MiB fits in 100, a second 64 does not.
    let mem = |mb| DevrunOptions {
        limits: Some(Limits {
            memory_mb: Some(mb),
            ..Default::default()
        }),
        ..opts("m", &["quota.m"])
    };
    devrun_as(&w, &other, "small", &echo, mem(64))
        .await
        .unwrap();
    let e = devrun_as(
        &w,
        &other,
        "small",
        &echo,
        DevrunOptions {
            name: Some("m2".into()),
            ..mem(64)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::QuotaExceeded), "{e}");
    for s in ["quota.g0", "quota.g1", "quota.p", "quota.m"] {
        assert_eq!(w.call(s, b"x").await, format!("x{s}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_memory_is_bounded_by_the_host() {
    // 80 GiB declared on a 23 GiB host was accepted; now the node's total is bounded.
    let w = World::start_with_config(
        r#"{"memory_overcommit": 1.0, "namespace_defaults": {"max_memory_mb": 1000000}}"#,
    )
    .await;
    let t = Tenant::new();
    let big = |name: &str| DevrunOptions {
        limits: Some(Limits {
            memory_mb: Some(4096),
            ..Default::default()
        }),
        ..opts(name, &[&format!("mem.{name}")])
    };
    let host_mb = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        / 1024;
    let fits = (host_mb / 4096) as usize;
    let echo = guest("echofunction");
    let mut refused = None;
    for i in 0..=fits {
        match devrun_as(&w, &t, "mem", &echo, big(&format!("b{i}"))).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, e) = refused.expect("the host's memory must bound declared memory");
    assert_eq!(refusal_code(&e), Some(ErrorCode::QuotaExceeded), "{e}");
    assert_eq!(
        at, fits,
        "refused at deploy {at} of 4 GiB on a {host_mb} MiB host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_that_never_ends_holds_no_one_else_up() {
    // Hole 8: a top level that never returns, with a 15-minute call limit, held the node's deploy
    // lock. Now deploys proceed in parallel and a load is bounded by the node's load_timeout.
    let w = World::start_with_config(r#"{"load_timeout": 3}"#).await;
    let (mallory, alice) = (Tenant::new(), Tenant::new());
    let (_d, stuck) = temp_file(
        "stuck.js",
        b"while (true) {}\n(subject, payload) => payload",
    );
    let slow = {
        let c = w.control_as(&mallory, "m");
        let keys = mallory.keys();
        let path = stuck.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = c
                .devrun(
                    &path,
                    &keys,
                    DevrunOptions {
                        limits: Some(Limits {
                            timeout_ms: Some(900_000),
                            ..Default::default()
                        }),
                        ..opts("stuck", &["lock.stuck"])
                    },
                )
                .await;
            (r.map(|d| d.run.id), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    devrun_as(
        &w,
        &alice,
        "a",
        &guest("echofunction"),
        opts("quick", &["lock.quick"]),
    )
    .await
    .unwrap();
    let quick = started.elapsed();
    assert_eq!(w.call("lock.quick", b"x").await, b"xlock.quick");
    let (stuck_result, stuck_took) = slow.await.unwrap();
    let e = stuck_result.unwrap_err();
    assert_eq!(refusal_code(&e), Some(ErrorCode::LoadFailed), "{e}");
    println!(
        "quick deploy beside a stuck one: {quick:?}; the stuck one failed after {stuck_took:?}"
    );
    assert!(quick < Duration::from_secs(2), "{quick:?}");
    assert!(stuck_took < Duration::from_secs(6), "{stuck_took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_host_calls_are_rate_limited_per_function() {
    let w = World::start_with_config(
        r#"{"rate_limits": {"log_bytes_per_sec": 2000, "log_burst_bytes": 4000,
                            "host_calls_per_sec": 20, "host_call_burst": 20}}"#,
    )
    .await;
    let (_d, flood) = temp_file(
        "flood.js",
        br#"(subject, payload) => {
  const line = 'x'.repeat(1000);
  for (let i = 0; i < 5000; i++) console.log(line);
  let ok = 0, limited = 0;
  for (let i = 0; i < 100; i++) {
    try { this.hostServices.kv.get('k'); ok++; }
    catch (e) { if (String(e.message).includes('rate limited')) limited++; else throw e; }
  }
  return JSON.stringify({ ok, limited });
}"#,
    );
    let id = w.devrun(&flood, &["rate.flood"], &[]);
    let mut logs = collect(&w.client, &format!("$NEX.logs.default.*.flood.{id}")).await;
    let mut events = collect(&w.client, "$NEX.events.default.logs_dropped").await;
    let r: serde_json::Value = serde_json::from_slice(&w.call("rate.flood", b"").await).unwrap();
    // Hole 16: 100 host calls against a burst of 20.
    let ok = r["ok"].as_u64().unwrap();
    assert!((20..=25).contains(&ok), "{r}");
    assert_eq!(r["limited"].as_u64().unwrap(), 100 - ok);

    // 5,000 lines of 1 KB against 4 KB of burst and 2 KB/s: a handful get out, the rest are
    // dropped and counted.
    let ev = wait_for(&mut events, Duration::from_secs(5), |_| true)
        .await
        .expect("a logs_dropped event");
    let ev: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!(ev["data"]["workload_id"], id.as_str());
    let mut dropped = ev["data"]["dropped_lines"].as_u64().unwrap();
    while let Some(m) = wait_for(&mut events, Duration::from_millis(1500), |_| true).await {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        dropped += v["data"]["dropped_lines"].as_u64().unwrap();
    }
    let mut delivered = 0;
    while wait_for(&mut logs, Duration::from_millis(200), |_| true)
        .await
        .is_some()
    {
        delivered += 1;
    }
    println!("log flood: {delivered} lines delivered, {dropped} dropped");
    assert!(delivered <= 12, "{delivered}");
    assert_eq!(delivered + dropped, 5000);
}
