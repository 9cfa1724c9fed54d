//! WebAssembly components (`wasm32-wasip2`) end to end: the seed echo as a command component,
//! a handler component's state in KV, traps, imports nex does not provide, malformed bytes,
//! the standard interfaces (`wasi:keyvalue`, `wasi:logging`).

use crate::harness::*;
use nex_test_support::component;

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_echo_as_a_command_component_answers_on_every_trigger() {
    let w = World::start().await;
    w.devrun(&component("echofunction"), &["echo", "echo.second"], &[]);
    assert_eq!(w.call("echo", b"hi").await, b"hiecho");
    assert_eq!(w.call("echo.second", b"hi").await, b"hiecho.second");
    let calls = (0..32).map(|i| {
        let w = &w;
        async move { (i, w.call("echo", format!("n{i}-").as_bytes()).await) }
    });
    for (i, got) in futures::future::join_all(calls).await {
        assert_eq!(got, format!("n{i}-echo").into_bytes());
    }
    let info: serde_json::Value =
        serde_json::from_str(&w.nex_ok(&["node", "info", &w.node.node_id, "--json"])).unwrap();
    assert!(info.to_string().contains("command component"), "{info}");
    // The agent runs them under its usual seccomp filter (wasmtime-wasi's tokio runtime needs
    // nothing it forbids).
    let seccomp = info["sandbox"]["agent.seccomp"]
        .as_str()
        .unwrap_or_default();
    assert!(seccomp.starts_with("active"), "{info}");
}

/// Deploys `bytes` as wasm function `name` through the control API; the refusal.
async fn deploy_refused(w: &World, name: &str, bytes: &[u8]) -> nex_client::Error {
    let location = w.control().upload_artifact(name, bytes).await.unwrap();
    let req = nex_proto::control::DeployRequest {
        workload_name: name.into(),
        workload_type: "wasm".into(),
        location,
        hash: nex_client::sha256_hex(bytes),
        trigger_subjects: vec![format!("{name}.x")],
        ..Default::default()
    };
    let req = crate::bad_input::signed(w, &req);
    w.control()
        .deploy(&w.node.node_id, &req)
        .await
        .expect_err("the deploy must be refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_component_counts_in_its_own_bucket_and_survives_errors_but_not_traps() {
    let w = World::start().await;
    // One worker, so one instance: its own count (`calls`) shows when it is kept.
    w.devrun(
        &component("counter_component"),
        &["count"],
        &["--name", "counter", "--max-concurrency", "1"],
    );
    assert_eq!(w.call("count", b"").await, b"count=1 calls=1");
    assert_eq!(w.call("count", b"").await, b"count=2 calls=2");

    // A JavaScript function of another name sees nothing of the component's bucket.
    let js = nex_test_support::repo_root().join("examples/kv-counter.js");
    w.devrun(&js, &["js.count"], &["--name", "jscounter"]);
    let got: serde_json::Value = serde_json::from_slice(&w.call("js.count", b"").await).unwrap();
    assert_eq!(got["count"], 1);
    assert_eq!(got["keys"], serde_json::json!(["js.count"]));

    // A returned error is the caller's service error; the instance is kept.
    let m = w.request("count", b"fail").await.unwrap();
    assert_eq!(
        service_error(&m).map(|(code, _)| code).as_deref(),
        Some("500")
    );
    let m = w.request("count", b"bad").await.unwrap();
    assert_eq!(
        service_error(&m).map(|(code, _)| code).as_deref(),
        Some("400")
    );
    assert_eq!(w.call("count", b"").await, b"count=3 calls=3");

    // A trap: the service-error headers, and the next call works in a fresh instance.
    let m = w.request("count", b"trap").await.unwrap();
    let (code, message) = service_error(&m).expect("a service error");
    assert_eq!(code, "500");
    assert!(
        message.contains("panicked at") && message.contains("asked to trap on count"),
        "{message}"
    );
    assert_eq!(w.call("count", b"").await, b"count=4 calls=1");

    // Sleeping waits on a `wasi:clocks` pollable: wasmtime-wasi's futures, run in the sandbox.
    let started = std::time::Instant::now();
    assert_eq!(w.call("count", b"sleep").await, b"slept");
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
}

#[tokio::test(flavor = "multi_thread")]
async fn unprovided_imports_and_malformed_components_are_refused_at_deploy() {
    use nex_proto::control::ErrorCode;
    let w = World::start().await;
    w.devrun(&component("echofunction"), &["echo"], &[]);

    let bytes = std::fs::read(component("unprovided_component")).unwrap();
    let e = deploy_refused(&w, "unprovided", &bytes).await;
    assert_eq!(refusal_code(&e), Some(ErrorCode::LoadFailed), "{e}");
    assert!(e.to_string().contains("acme:missing/store@0.1.0"), "{e}");

    let mut malformed = std::fs::read(component("echofunction")).unwrap();
    malformed.truncate(malformed.len() / 3);
    let e = deploy_refused(&w, "malformed", &malformed).await;
    assert_eq!(refusal_code(&e), Some(ErrorCode::LoadFailed), "{e}");
    assert!(e.to_string().contains("does not compile"), "{e}");

    // The node keeps serving.
    assert_eq!(w.call("echo", b"still").await, b"stillecho");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_on_wasi_keyvalue_counts_in_its_own_bucket_and_sees_refusals() {
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.kvc.*").await;
    let kv = component("kv_component");
    w.devrun(&kv, &["kvc"], &["--name", "kvc"]);
    for n in 1..=5 {
        assert_eq!(w.call("kvc", b"").await, format!("count={n}").into_bytes());
    }
    // `wasi:logging` lines go to the function's log subject.
    let line = next_log_line(&mut logs).await;
    assert_eq!(line["text"], "kv: count 1 on kvc", "{line}");

    // Increments at once are atomic (a compare-and-set in the node): none is lost.
    let calls = (0..16).map(|_| w.call("kvc", b""));
    futures::future::join_all(calls).await;
    assert_eq!(w.call("kvc", b"get count").await, b"21");

    // Only `default` opens; the guest sees the error and answers with it.
    assert_eq!(w.call("kvc", b"other").await, b"error: no-such-store");
    assert_eq!(
        String::from_utf8(w.call("kvc", b"crud").await).unwrap(),
        "get=Some(Ok(\"1\"));exists=true;keys=count,crud.a,crud.b;deleted=true;\
         many=crud.c=3,-,crud.d=4;left=count"
    );

    // Bad input: a key the node refuses reaches the guest as an error, which it answers as bad
    // input (400); the function and the node keep serving.
    let m = w.request("kvc", b"set bad:key v").await.unwrap();
    let (code, message) = service_error(&m).expect("a service error");
    assert_eq!(code, "400");
    assert!(message.contains("InvalidArgument"), "{message}");
    let m = w.request("kvc", &[0xff, 0xfe]).await.unwrap();
    assert_eq!(service_error(&m).map(|(c, _)| c).as_deref(), Some("400"));
    assert_eq!(w.call("kvc", b"").await, b"count=22");

    // Another function of the same code and another name has a bucket of its own.
    w.devrun(&kv, &["kvd"], &["--name", "kvd"]);
    assert_eq!(w.call("kvd", b"").await, b"count=1");
    assert_eq!(w.call("kvc", b"").await, b"count=23");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_on_wasi_messaging_publishes_and_requests_outside_the_reserved_subjects() {
    let w = World::start().await;
    w.devrun(&component("kv_component"), &["msg"], &["--name", "msg"]);
    let mut out = collect(&w.client, "msg.out").await;
    assert_eq!(w.call("msg", b"pub msg.out hello").await, b"sent");
    let m = wait_for(&mut out, std::time::Duration::from_secs(5), |_| true)
        .await
        .expect("the published message");
    assert_eq!(&m.payload[..], b"hello");

    // A responder on a subject of the caller's: one reply, and replies until the count.
    let mut sub = w.client.subscribe("svc.echo").await.unwrap();
    w.client.flush().await.unwrap();
    let client = w.client.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = client.publish(reply, m.payload).await;
            }
        }
    });
    assert_eq!(w.call("msg", b"req svc.echo hi 1").await, b"hi");

    // Reserved subjects are refused by the node's checks; the guest answers 400 with why.
    for payload in [
        &b"pub $SYS.x y"[..],
        b"pub _INBOX.x y",
        b"req $JS.API.INFO q 1",
    ] {
        let m = w.request("msg", payload).await.unwrap();
        let (code, message) = service_error(&m).expect("a service error");
        assert_eq!(code, "400", "{message}");
        assert!(message.contains("reserved"), "{message}");
    }
    assert_eq!(w.call("msg", b"pub msg.out again").await, b"sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_on_wasi_blobstore_writes_reads_lists_and_deletes_in_its_object_store() {
    let w = World::start().await;
    w.devrun(&component("kv_component"), &["blob"], &["--name", "blob"]);
    assert_eq!(
        String::from_utf8(w.call("blob", b"blob a.txt hello").await).unwrap(),
        "read=hello part=el;list=a.txt end=true;size=5;has=true;deleted=true"
    );
    let other = String::from_utf8(w.call("blob", b"blob-other").await).unwrap();
    assert!(other.starts_with("error: no container `other`"), "{other}");
}

/// `wasi:http/outgoing-handler` from a command component: the request goes through the node's
/// HTTP host service (its allow list opens the local server), the body is written after
/// `handle` as a streaming client does, and a host the policy refuses is the guest-visible
/// error `HttpRequestDenied`, not a trap.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_on_wasi_http_reaches_a_local_server_and_a_denied_host_is_an_error_code() {
    let (w, base) = World::with_local_http().await;
    w.devrun(&component("http-component"), &["web"], &["--name", "web"]);

    let got =
        String::from_utf8(w.call("web", format!("GET {base}/a?b=c").as_bytes()).await).unwrap();
    let (status, body) = got.split_once(' ').unwrap();
    assert_eq!(status, "201", "{got}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["line"], "GET /a?b=c HTTP/1.1");
    assert_eq!(body["from"], "component");

    let got = String::from_utf8(
        w.call("web", format!("POST {base}/p a body").as_bytes())
            .await,
    )
    .unwrap();
    let (status, body) = got.split_once(' ').unwrap();
    assert_eq!(status, "201", "{got}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["line"], "POST /p HTTP/1.1");
    assert_eq!(body["body"], "a body");

    // 127.0.0.2 is loopback but not on the allow list: refused before any connection.
    let port = base.rsplit(':').next().unwrap();
    let got = w
        .call("web", format!("GET http://127.0.0.2:{port}/").as_bytes())
        .await;
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "error: ErrorCode::HttpRequestDenied"
    );
    // The function goes on.
    let got = String::from_utf8(w.call("web", format!("GET {base}/").as_bytes()).await).unwrap();
    assert!(got.starts_with("201 "), "{got}");
}
