//! `nex logs` and `nex events` stream what the node publishes, in the protocol's shapes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use nex_test_support::guest;

/// Starts `nex <args>` and waits until it says it is listening.
fn spawn_streamer(w: &World, args: &[&str]) -> std::process::Child {
    let mut child = Command::new(NEX)
        .args(args)
        .args(["-s", &w.nats.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    child
}

fn finish(child: std::process::Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_events_stream_through_the_cli() {
    let w = World::start_with(&["--heartbeat", "0.5"]).await;
    let logs = spawn_streamer(
        &w,
        &[
            "logs",
            "--json",
            "--count",
            "2",
            "--workload_name",
            "logger",
        ],
    );
    let events = spawn_streamer(
        &w,
        &[
            "events",
            "--json",
            "--count",
            "1",
            "--type",
            "function_exec_succeeded",
        ],
    );
    let beats = spawn_streamer(
        &w,
        &["events", "--json", "--count", "1", "--type", "heartbeat"],
    );
    let deployed = spawn_streamer(
        &w,
        &[
            "events",
            "--json",
            "--count",
            "1",
            "--type",
            "workload_deployed",
        ],
    );
    w.devrun(&guest("logger"), &["f.log"], &[]);
    assert_eq!(w.call("f.log", b"12345").await, b"f.log|unset");

    let lines = finish(logs);
    assert_eq!(lines[0]["text"], "log line one for f.log");
    assert_eq!(lines[1]["text"], "log line two: 5 bytes");
    assert_eq!(lines[0]["level"], "info");

    let ev = &finish(events)[0];
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "function_exec_succeeded");
    assert_eq!(ev["source"], w.node.node_id.as_str());
    assert_eq!(ev["data"]["workload_name"], "logger");
    assert_eq!(ev["data"]["trigger_subject"], "f.log");
    assert_eq!(ev["data"]["namespace"], "default");
    assert!(ev["data"]["elapsed_nanos"].as_u64().unwrap() > 0);

    let hb = &finish(beats)[0];
    assert_eq!(hb["data"]["node_id"], w.node.node_id.as_str());
    let dep = &finish(deployed)[0];
    assert_eq!(dep["data"]["workload_name"], "logger");
    assert!(dep["data"]["total_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn node_started_and_stopped_events() {
    let nats = nex_test_support::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = collect(&client, "$NEX.events.system.>").await;
    let home = tempfile::tempdir().unwrap();
    let mut node = nex_test_support::NodeProcess::start(
        std::path::Path::new(NEX),
        &nats.url(),
        home.path(),
        &[],
    )
    .unwrap();
    let started = wait_for(&mut events, Duration::from_secs(5), |m| {
        m.subject.ends_with("node_started")
    })
    .await
    .expect("node_started");
    let v: serde_json::Value = serde_json::from_slice(&started.payload).unwrap();
    assert_eq!(v["data"]["id"], node.node_id.as_str());
    assert!(
        node.interrupt(Duration::from_secs(10)),
        "node exits on Ctrl-C"
    );
    let stopped = wait_for(&mut events, Duration::from_secs(5), |m| {
        m.subject.ends_with("node_stopped")
    })
    .await
    .expect("node_stopped");
    let v: serde_json::Value = serde_json::from_slice(&stopped.payload).unwrap();
    assert_eq!(v["data"]["graceful"], true);
}

/// `call_events` decides which calls publish an event; node info counts every call anyway.
#[tokio::test(flavor = "multi_thread")]
async fn call_events_off_or_failures_only_still_count_calls() {
    for (setting, want_succeeded, want_failed) in [("off", false, false), ("failures", false, true)]
    {
        let w = World::start_with_config(&format!(r#"{{"call_events": "{setting}"}}"#)).await;
        w.devrun(&guest("echofunction"), &["ev.echo"], &[]);
        w.devrun(&guest("trap"), &["ev.trap"], &[]);
        let mut events = collect(&w.client, "$NEX.events.default.>").await;
        for _ in 0..5 {
            w.call("ev.echo", b"hi").await;
        }
        let m = w.request("ev.trap", b"boom").await.unwrap();
        assert!(service_error(&m).is_some());
        let mut types = Vec::new();
        while let Some(m) = wait_for(&mut events, Duration::from_millis(500), |_| true).await {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            types.push(v["type"].as_str().unwrap_or_default().to_owned());
        }
        let has = |t: &str| types.iter().any(|x| x == t);
        assert_eq!(
            has("function_exec_succeeded"),
            want_succeeded,
            "{setting}: {types:?}"
        );
        assert_eq!(
            has("function_exec_failed"),
            want_failed,
            "{setting}: {types:?}"
        );

        let info = w.control().info(&w.node.node_id).await.unwrap();
        let count = |name: &str| {
            let m = info
                .machines
                .iter()
                .find(|m| m.workload.name == name)
                .unwrap();
            (m.succeeded_calls, m.failed_calls)
        };
        assert_eq!(count("echofunction"), (5, 0), "{setting}");
        assert_eq!(count("trap"), (0, 1), "{setting}");
        let table = w.nex_ok(&["node", "info", &w.node.node_id]);
        assert!(table.contains("CALLS OK"), "{table}");
        let echo_row = table.lines().find(|l| l.contains("echofunction")).unwrap();
        let cols: Vec<&str> = echo_row.split_whitespace().collect();
        assert!(cols.windows(2).any(|c| c == ["5", "0"]), "{echo_row}");
    }
}
