//! `nex node ls` / `node info` / `node probe` / `lameduck` against a running node.

use std::time::Duration;

use crate::harness::*;
use nex_test_support::guest;

#[tokio::test(flavor = "multi_thread")]
async fn node_ls_and_info_show_the_node() {
    let w = World::start().await;
    let ls: serde_json::Value = serde_json::from_str(&w.nex_ok(&["node", "ls", "--json"])).unwrap();
    let nodes = ls.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{ls}");
    assert_eq!(nodes[0]["node_id"], w.node.node_id.as_str());
    assert!(nodes[0]["node_id"].as_str().unwrap().starts_with('N'));
    assert_eq!(nodes[0]["tags"]["nex.os"], "linux");
    assert!(nodes[0]["target_xkey"].as_str().unwrap().starts_with('X'));

    let human = w.nex_ok(&["node", "ls"]);
    assert!(
        human.contains("WORKLOADS") && human.contains(&w.node.node_id),
        "{human}"
    );

    w.devrun(&guest("echofunction"), &["echo.info"], &[]);
    let info: serde_json::Value =
        serde_json::from_str(&w.nex_ok(&["node", "info", &w.node.node_id, "--json"])).unwrap();
    assert_eq!(info["node_id"], w.node.node_id.as_str());
    assert_eq!(info["machines"].as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info["machines"][0]["workload"]["name"], "echofunction");
    assert_eq!(info["machines"][0]["healthy"], true);
    assert!(info["memory"]["total"].as_u64().unwrap() > 0);
    let seccomp = info["sandbox"]["agent.seccomp"]
        .as_str()
        .unwrap_or_default();
    assert!(seccomp.starts_with("active"), "{info}");
    // The agent dropped the pages it touched only while loading (`resident` in the agent crate).
    let trimmed: usize = info["sandbox"]["agent.resident_trim"]
        .as_str()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(trimmed > 0, "{info}");
    assert_eq!(w.call("echo.info", b"x").await, b"xecho.info");

    // Another namespace sees none of this namespace's workloads.
    let other: serde_json::Value = serde_json::from_str(&w.nex_ok(&[
        "node",
        "info",
        &w.node.node_id,
        "--json",
        "--namespace",
        "other",
    ]))
    .unwrap();
    assert_eq!(other["machines"].as_array().unwrap().len(), 0);

    let human = w.nex_ok(&["node", "info", &w.node.node_id]);
    assert!(human.contains("echofunction"), "{human}");

    let probe: serde_json::Value =
        serde_json::from_str(&w.nex_ok(&["node", "probe", "--json", "--workload", "echofunction"]))
            .unwrap();
    assert_eq!(probe[0]["running_machines"][0]["name"], "echofunction");

    let unknown = w.nex(&["node", "info", "NNOTANODE"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node matches"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lameduck_stops_workloads_and_the_node() {
    let mut w = World::start().await;
    w.devrun(&guest("echofunction"), &["echo.ld"], &[]);
    assert_eq!(w.call("echo.ld", b"x").await, b"xecho.ld");
    let mut events = collect(&w.client, "$NEX.events.>").await;
    w.nex_ok(&["lameduck", &w.node.node_id]);
    let status = w.node.wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "node did not exit after lame duck");
    let kinds: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|m| m.subject.to_string())
        .collect();
    for k in [
        "node_entered_lameduck",
        "workload_undeployed",
        "node_stopped",
    ] {
        assert!(
            kinds.iter().any(|s| s.ends_with(k)),
            "{k} missing from {kinds:?}"
        );
    }
    assert!(w.request("echo.ld", b"x").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_stops_on_ctrl_c_after_its_nats_server_is_gone() {
    let w = World::start().await;
    w.devrun(&guest("echofunction"), &["echo.gone"], &[]);
    assert_eq!(w.call("echo.gone", b"x").await, b"xecho.gone");
    let World { nats, mut node, .. } = w;
    drop(nats);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.interrupt(Duration::from_secs(15)),
        "the node hung on Ctrl-C without its server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_agent_gives_back_the_pages_its_calls_touched() {
    let w = World::start_with_config(r#"{"idle_trim_after": 0.5}"#).await;
    w.devrun(&guest("echofunction"), &["echo.idle"], &[]);
    let agent = w.agent_pid("echofunction");
    let busy = async || {
        for _ in 0..20 {
            assert_eq!(w.call("echo.idle", b"x").await, b"xecho.idle");
        }
        nex_test_support::rss_kib(agent).unwrap()
    };
    let hot = busy().await;
    // Past the node's idle threshold (500 ms here), with slack for a loaded machine.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = nex_test_support::rss_kib(agent).unwrap();
    assert!(
        idle + 512 < hot,
        "idle RSS {idle} KiB should be well under the RSS right after calls, {hot} KiB"
    );
    // The next calls fault their code back in and answer as before.
    let again = busy().await;
    assert!(again > idle, "{again} KiB after calls vs {idle} KiB idle");
}

/// The agent process of workload `name`, as `nex node info` reports it.
/// Processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 1..].to_owned()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_take_an_agent_started_ahead() {
    let w = World::start().await;
    // The node keeps one agent started (machine_pool_size, default 1).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let warm = loop {
        let kids = children(w.node.pid());
        if let [one] = kids[..] {
            break one;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warm agent: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    w.devrun(&guest("echofunction"), &["echo.warm"], &[]);
    assert_eq!(w.call("echo.warm", b"w").await, b"wecho.warm");
    assert_eq!(w.agent_pid("echofunction"), warm, "the warm agent runs it");
    // And another one is started for the next deploy.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while children(w.node.pid()).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool was not refilled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let js = nex_test_support::repo_root().join("examples/echo.js");
    w.devrun(&js, &["echo.warm.js"], &[]);
    assert_eq!(w.call("echo.warm.js", b"j").await, b"j");
}

/// Issue 21, observability: with `metrics.listen`, the node serves Prometheus metrics per
/// function (calls by result, failures by code, a latency histogram, in flight, restarts) and
/// per node (workloads, agents, memory); other paths are 404.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_serves_prometheus_metrics_per_function() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = World::start_with_config(&format!(
        r#"{{"metrics": {{"listen": "127.0.0.1:{port}"}}}}"#
    ))
    .await;
    let (_dir, f) = temp_file(
        "metered.js",
        b"(subject, payload) => { if (payload.length === 0) throw new Error('empty'); return payload; }",
    );
    w.devrun(&f, &["metered"], &[]);
    for _ in 0..3 {
        assert_eq!(w.call("metered", b"x").await, b"x");
    }
    let failed = w.request("metered", b"").await.unwrap();
    assert!(service_error(&failed).is_some());

    let (status, text) = nex_test_support::http_get(port, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
            .to_owned()
    };
    let labels = r#"namespace="default",name="metered""#;
    assert!(
        line(&format!(
            r#"nex_function_calls_total{{{labels},result="succeeded"}}"#
        ))
        .ends_with(" 3")
    );
    assert!(
        line(&format!(
            r#"nex_function_calls_total{{{labels},result="failed"}}"#
        ))
        .ends_with(" 1")
    );
    assert!(
        line(&format!(
            r#"nex_function_failures_total{{{labels},code="500"}}"#
        ))
        .ends_with(" 1")
    );
    assert!(
        line(&format!(
            r#"nex_function_call_duration_seconds_count{{{labels}}}"#
        ))
        .ends_with(" 4")
    );
    assert!(
        line(&format!(
            r#"nex_function_call_duration_seconds_bucket{{le="+Inf",{labels}}}"#
        ))
        .ends_with(" 4")
    );
    assert!(line(&format!(r#"nex_function_in_flight{{{labels}}}"#)).ends_with(" 0"));
    assert!(line(&format!(r#"nex_function_restarts_total{{{labels}}}"#)).ends_with(" 0"));
    assert!(line("nex_node_workloads ").ends_with(" 1"));
    let memory: u64 = line("nex_node_memory_bytes ")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(memory > 1 << 20, "{memory}");

    let (status, _) = nex_test_support::http_get(port, "/other").unwrap();
    assert!(status.contains(" 404 "), "{status}");
}

/// An OTLP/HTTP collector on loopback: every request body posted to it (OTLP JSON here), in
/// order; answers each with an empty success.
async fn otlp_collector() -> (u16, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                // Requests, one after another on the connection (keep-alive).
                loop {
                    let mut len = 0;
                    loop {
                        let mut line = String::new();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice(&body) {
                        let _ = tx.send(v);
                    }
                    let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                    if s.get_mut().write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Issue 21: `nex node up --otel` exports its spans over OTLP/HTTP to the endpoint of the
/// standard variables: a `deploy` span with the workload's id, and a `call` span per call whose
/// trace is the caller's when the trigger message carries a W3C `traceparent`, with failures
/// marked as errors.
#[tokio::test(flavor = "multi_thread")]
async fn spans_of_deploys_and_calls_reach_an_otlp_collector() {
    let (port, mut posts) = otlp_collector().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let w = World::start_with_env(
        nex_test_support::nats(),
        &["--otel"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "nex-e2e"),
        ],
    )
    .await;
    let (_dir, f) = temp_file(
        "traced.js",
        b"(subject, payload) => { if (payload.length === 0) throw new Error('empty'); return payload; }",
    );
    w.devrun(&f, &["traced"], &[]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01").as_str(),
    );
    let m = w
        .client
        .request_with_headers("traced", headers, bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"x");
    assert!(service_error(&w.request("traced", b"").await.unwrap()).is_some());

    // Spans by name, with their attributes as a map, until the three are in.
    let mut spans: Vec<(
        String,
        serde_json::Value,
        serde_json::Map<String, serde_json::Value>,
    )> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while spans.iter().filter(|s| s.0 == "call").count() < 2
        || !spans.iter().any(|s| s.0 == "deploy")
    {
        let post = tokio::time::timeout_at(deadline, posts.recv())
            .await
            .expect("the spans reach the collector within 20 s")
            .unwrap();
        for rs in post["resourceSpans"].as_array().into_iter().flatten() {
            let service = &rs["resource"]["attributes"];
            assert!(service.to_string().contains("nex-e2e"), "{service}");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
                        .collect();
                    spans.push((
                        span["name"].as_str().unwrap().to_owned(),
                        span.clone(),
                        attrs,
                    ));
                }
            }
        }
    }
    let text = |attrs: &serde_json::Map<String, serde_json::Value>, k: &str| {
        attrs
            .get(k)
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_owned)
    };
    let (_, _, deploy) = spans.iter().find(|s| s.0 == "deploy").unwrap();
    assert_eq!(text(deploy, "nex.workload").as_deref(), Some("traced"));
    assert_eq!(text(deploy, "nex.namespace").as_deref(), Some("default"));
    assert!(
        text(deploy, "nex.workload_id").is_some_and(|id| !id.is_empty()),
        "{deploy:?}"
    );
    let calls: Vec<_> = spans.iter().filter(|s| s.0 == "call").collect();
    let ok = calls
        .iter()
        .find(|c| text(&c.2, "nex.result").as_deref() == Some("succeeded"))
        .expect("a succeeded call span");
    assert_eq!(ok.1["traceId"].as_str(), Some(trace_id), "{}", ok.1);
    assert_eq!(ok.1["parentSpanId"].as_str(), Some("00f067aa0ba902b7"));
    assert_eq!(
        text(&ok.2, "messaging.destination.name").as_deref(),
        Some("traced")
    );
    let failed = calls
        .iter()
        .find(|c| text(&c.2, "nex.result").as_deref() == Some("failed"))
        .expect("a failed call span");
    assert_ne!(failed.1["traceId"].as_str(), Some(trace_id));
    assert_eq!(failed.1["status"]["code"], 2, "{}", failed.1);
}
