//! JavaScript host services end to end, against the real nats-server: key-value, object store,
//! messaging, and isolation between functions and namespaces.

use std::time::Duration;

use futures::StreamExt;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn kv_counter_is_isolated_per_function_and_namespace() {
    let w = World::start().await;
    w.devrun(
        &example("kv-counter.js"),
        &["count.a"],
        &["--name", "counter1"],
    );
    w.devrun(
        &example("kv-counter.js"),
        &["count.b"],
        &["--name", "counter2"],
    );
    w.devrun(
        &example("kv-counter.js"),
        &["count.c"],
        &["--name", "counter1", "--namespace", "other"],
    );
    assert_eq!(json(w.call("count.a", b"").await)["count"], 1);
    assert_eq!(json(w.call("count.a", b"").await)["count"], 2);
    // Same key in another function's bucket starts from scratch.
    let b = json(w.call("count.b", b"").await);
    assert_eq!(b["count"], 1);
    assert_eq!(b["keys"], serde_json::json!(["count.b"]));
    // Same function name in another namespace: another bucket.
    let c = json(w.call("count.c", b"").await);
    assert_eq!(c["count"], 1);
    assert_eq!(c["keys"], serde_json::json!(["count.c"]));
    let a = json(w.call("count.a", b"").await);
    assert_eq!(a["count"], 3);
    assert_eq!(a["keys"], serde_json::json!(["count.a"]));

    // The buckets are real JetStream KV buckets with the documented names.
    let js = async_nats::jetstream::new(w.client.clone());
    let kv = js
        .get_key_value(nex_proto::names::workload_buckets("default", "counter1").kv)
        .await
        .unwrap();
    assert_eq!(kv.get("count.a").await.unwrap().unwrap(), "3");
    let other = js
        .get_key_value(nex_proto::names::workload_buckets("other", "counter1").kv)
        .await
        .unwrap();
    assert_eq!(other.get("count.c").await.unwrap().unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_put_get_list_delete_and_large_objects() {
    let w = World::start().await;
    w.devrun(
        &example("object-store.js"),
        &["obj.>"],
        &["--memory-mb", "256", "--exec-timeout-ms", "20000"],
    );
    let list = json(w.call("obj.put.first", b"12345").await);
    assert_eq!(list, serde_json::json!([{"name": "first", "size": 5}]));
    assert_eq!(w.call("obj.get.first", b"").await, b"12345");
    let gone = json(w.call("obj.delete.first", b"").await);
    assert_eq!(gone["now"], serde_json::Value::Null);
    let big = json(w.call("obj.big.20", b"").await);
    assert_eq!(big["size"], 20 * 1024 * 1024);
    assert_eq!(big["last"], 7);
    let js = async_nats::jetstream::new(w.client.clone());
    let store = js
        .get_object_store(nex_proto::names::workload_buckets("default", "object-store").object)
        .await
        .unwrap();
    assert_eq!(store.info("big").await.unwrap().size, 20 * 1024 * 1024);

    // Another function, and the same name in another namespace, see none of these objects:
    // after their own first put, their listings hold only their own object.
    w.devrun(
        &example("object-store.js"),
        &["obj2.>"],
        &["--name", "other-store"],
    );
    w.devrun(
        &example("object-store.js"),
        &["obj3.>"],
        &["--namespace", "tenant2"],
    );
    for other in ["obj2", "obj3"] {
        let list = json(w.call(&format!("{other}.put.theirs"), b"x").await);
        assert_eq!(
            list,
            serde_json::json!([{"name": "theirs", "size": 1}]),
            "{other}"
        );
    }
    let mine = json(w.call("obj.put.mine", b"secret").await);
    let names: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mine") && !names.contains(&"theirs"),
        "{mine}"
    );
}

/// A responder on `subject` that answers every request with `answer`.
async fn answer_requests(w: &World, subject: &str, answer: &'static str) {
    let mut sub = w.client.subscribe(subject.to_owned()).await.unwrap();
    let client = w.client.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = client.publish(r, answer.into()).await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn messaging_publish_request_and_request_many() {
    let w = World::start().await;
    let mut published = collect(&w.client, "demo.published").await;
    for (subject, answer) in [
        ("demo.one", "one"),
        ("demo.many", "m1"),
        ("demo.many", "m2"),
    ] {
        answer_requests(&w, subject, answer).await;
    }
    w.client.flush().await.unwrap();
    w.devrun(&example("messaging.js"), &["demo.call"], &[]);
    let got = json(w.call("demo.call", b"ping").await);
    assert_eq!(got, serde_json::json!({"one": "one", "many": ["m1", "m2"]}));
    let p = wait_for(&mut published, Duration::from_secs(5), |_| true)
        .await
        .unwrap();
    assert_eq!(&p.payload[..], b"ping");
}

/// How many QuickJS runtimes (instances) the agent of `name` runs: the one on its reader
/// thread and one per `nex-js-N` thread.
fn js_instances(w: &World, name: &str) -> usize {
    1 + thread_names(w.agent_pid(name))
        .iter()
        .filter(|n| n.starts_with("nex-js-"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_waiting_on_host_services_overlap_and_computing_calls_keep_one_instance() {
    let w = World::start().await;
    // A backend that takes 300 ms per request and answers many at once.
    let mut sub = w.client.subscribe("slow.backend").await.unwrap();
    let client = w.client.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Some(r) = m.reply {
                    let _ = client.publish(r, m.payload).await;
                }
            });
        }
    });
    w.client.flush().await.unwrap();
    let (_dir, waits) = temp_file(
        "waits.js",
        b"(subject, payload) => this.hostServices.messaging.request('slow.backend', payload)\n",
    );
    w.devrun(&waits, &["waits"], &[]);
    assert_eq!(w.call("waits", b"0").await, b"0");
    let started = std::time::Instant::now();
    let calls = (1..=6).map(|i| {
        let w = &w;
        async move {
            let sent = i.to_string();
            (w.call("waits", sent.as_bytes()).await, sent)
        }
    });
    for (got, sent) in futures::future::join_all(calls).await {
        assert_eq!(got, sent.as_bytes());
    }
    let took = started.elapsed();
    // One runtime would answer them one after another: 6 x 300 ms.
    assert!(
        took < Duration::from_millis(1200),
        "6 waiting calls took {took:?}"
    );
    let n = js_instances(&w, "waits");
    assert!((2..=8).contains(&n), "{n} instances");

    // Calls that only compute stay on the one runtime, however many arrive at once.
    w.devrun(&example("echo.js"), &["computes"], &[]);
    let calls = (0..64).map(|i| {
        let w = &w;
        async move { w.call("computes", format!("{i}").as_bytes()).await }
    });
    futures::future::join_all(calls).await;
    assert_eq!(js_instances(&w, "echo"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_service_errors_throw_and_system_subjects_are_refused() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "sneaky.js",
        br#"(subject, payload) => {
  const out = [];
  for (const s of ['$NEX.PING', '$JS.API.INFO', '$KV.hs_default_other_kv.k', '$SYS.REQ.SERVER.PING']) {
    try { this.hostServices.messaging.publish(s, 'x'); out.push('sent ' + s); } catch (e) { out.push(e.code + ' ' + e.message); }
  }
  try { this.hostServices.messaging.request('nobody.home', 'x', { timeout: 300 }); } catch (e) { out.push(e.code + ' ' + e.message); }
  return out;
}"#,
    );
    w.devrun(&path, &["sneaky"], &[]);
    let out = json(w.call("sneaky", b"").await);
    let out: Vec<String> = serde_json::from_value(out).unwrap();
    for line in &out[..4] {
        assert!(line.starts_with("InvalidArgument "), "{out:?}");
        assert!(line.contains("reserved"), "{out:?}");
    }
    assert!(
        out[4].starts_with("Unavailable ") && out[4].contains("no responders")
            || out[4].starts_with("Timeout ") && out[4].contains("no reply"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_hosts_can_be_denied_by_node_config() {
    let base = echo_http_server().await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    // Private addresses opened, 127.0.0.1 denied: deny wins, in every form of the address.
    let w = World::start_with_config(
        r#"{"host_services": {"services": {"http": {"config": {"deny_hosts": ["127.0.0.1"], "allow_private_addresses": true}}}}}"#,
    )
    .await;
    w.devrun(&example("http-fetch.js"), &["http.denied"], &[]);
    for host in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "[::ffff:127.0.0.1]",
        "localhost",
    ] {
        let m = w
            .request("http.denied", format!("http://{host}:{port}/x").as_bytes())
            .await
            .unwrap();
        let (code, msg) = service_error(&m).expect("denied host throws");
        assert_eq!(code, "500");
        assert!(msg.contains("not allowed by this node"), "{host}: {msg}");
    }
}

/// A node config that lets functions reach the test servers on 127.0.0.1.
const ALLOW_LOOPBACK: &str =
    r#"{"host_services": {"services": {"http": {"config": {"allow_hosts": ["127.0.0.1"]}}}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn http_client_talks_to_a_real_local_server() {
    let w = World::start_with_config(ALLOW_LOOPBACK).await;
    let base = echo_http_server().await;
    w.devrun(&example("http-fetch.js"), &["http.fetch"], &[]);
    let got = json(
        w.call("http.fetch", format!("{base}/hello?x=1").as_bytes())
            .await,
    );
    assert_eq!(got["status"], 201);
    assert_eq!(got["type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["line"], "GET /hello?x=1 HTTP/1.1");
    assert_eq!(body["from"], "nex");

    let (_d, path) = temp_file(
        "poster.js",
        br#"(subject, payload) => {
  const h = this.hostServices.http;
  const out = [];
  for (const m of ['post', 'put', 'patch', 'del', 'delete', 'head']) {
    const r = h[m](String.fromCharCode(...payload) + '/' + m, 'data-' + m);
    out.push(r.status + ' ' + (r.response ? JSON.parse(r.response).line + ' ' + JSON.parse(r.response).body : '(no body)'));
  }
  try { h.get(String.fromCharCode(...payload).replace('http://', 'https://')); } catch (e) { out.push(e.message); }
  try { h.get('http://127.0.0.1:1/'); } catch (e) { out.push('refused'); }
  return out;
}"#,
    );
    w.devrun(&path, &["http.methods"], &[]);
    let out: Vec<String> =
        serde_json::from_value(json(w.call("http.methods", base.as_bytes()).await)).unwrap();
    assert_eq!(out[0], "201 POST /post HTTP/1.1 data-post");
    assert_eq!(out[1], "201 PUT /put HTTP/1.1 data-put");
    assert_eq!(out[2], "201 PATCH /patch HTTP/1.1 data-patch");
    assert_eq!(out[3], "201 DELETE /del HTTP/1.1 data-del");
    assert_eq!(out[4], "201 DELETE /delete HTTP/1.1 data-delete");
    assert_eq!(out[5], "201 (no body)");
    assert!(out[6].contains("TLS handshake failed"), "{out:?}");
    assert_eq!(out[7], "refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_host_services_snippets_run_as_written() {
    let w = World::start().await;
    // The key-value and messaging snippets of the seed page, verbatim inside a function.
    let (_d, path) = temp_file(
        "seed_snippets.js",
        br#"(subject, payload) => {
this.hostServices.kv.set('hello', payload);
this.hostServices.kv.delete('hello');

this.hostServices.kv.set('hello2', payload);
if (subject === 'seed.kv') {
return {
  keys: this.hostServices.kv.keys(),
  hello2: this.hostServices.kv.get('hello2')
}
}
this.hostServices.messaging.publish('hello.world', payload);

req = this.hostServices.messaging.request('hello.world.request', payload);

reqMany = this.hostServices.messaging.requestMany('hello.world.request.many', payload);
return [String.fromCharCode(...req), reqMany.length];
}"#,
    );
    for subject in ["hello.world.request", "hello.world.request.many"] {
        let mut sub = w.client.subscribe(subject).await.unwrap();
        let client = w.client.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(r) = m.reply {
                    let _ = client.publish(r, "pong".into()).await;
                }
            }
        });
    }
    w.client.flush().await.unwrap();
    w.devrun(&path, &["seed.kv", "seed.msg"], &[]);
    let kv = json(w.call("seed.kv", b"hi").await);
    assert_eq!(kv["keys"], serde_json::json!(["hello2"]));
    assert_eq!(kv["hello2"], serde_json::json!({"0": 104, "1": 105}));
    let msg = json(w.call("seed.msg", b"hi").await);
    assert_eq!(msg, serde_json::json!(["pong", 1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn webassembly_functions_use_every_host_service_through_the_guest_library() {
    let w = World::start_with_config(ALLOW_LOOPBACK).await;
    let base = echo_http_server().await;
    let mut published = collect(&w.client, "wasm.published").await;
    for answer in ["r1", "r2"] {
        answer_requests(&w, "wasm.backend", answer).await;
    }
    w.client.flush().await.unwrap();
    let wasm = nex_test_support::guest("host_services");
    w.devrun(&wasm, &["wasm.hs"], &["--name", "wasmhs"]);
    w.devrun(&wasm, &["wasm.other"], &["--name", "wasmother"]);
    let call = |payload: String| {
        let w = &w;
        async move { String::from_utf8(w.call("wasm.hs", payload.as_bytes()).await).unwrap() }
    };

    // Key-value, in the function's own bucket.
    assert_eq!(call("count".into()).await, "1");
    assert_eq!(call("count".into()).await, "2");
    assert_eq!(w.call("wasm.other", b"count").await, b"1");
    assert_eq!(call("keys".into()).await, "count");
    let js = async_nats::jetstream::new(w.client.clone());
    let kv = js
        .get_key_value(nex_proto::names::workload_buckets("default", "wasmhs").kv)
        .await
        .unwrap();
    assert_eq!(kv.get("count").await.unwrap().unwrap(), "2");
    assert_eq!(call("forget".into()).await, "None");
    assert_eq!(call("count".into()).await, "1");

    // Object store: put, get, a missing object, list, delete.
    assert_eq!(call("obj:hello".into()).await, "hello|true|true|true");

    // Messaging.
    let one = call("request:wasm.backend".into()).await;
    assert!(one == "r1" || one == "r2", "{one}");
    let mut many: Vec<String> = call("many:wasm.backend".into())
        .await
        .split(',')
        .map(str::to_owned)
        .collect();
    many.sort();
    assert_eq!(many, ["r1", "r2"]);
    assert_eq!(call("publish:wasm.published".into()).await, "published");
    let p = wait_for(&mut published, Duration::from_secs(5), |_| true)
        .await
        .unwrap();
    assert_eq!(&p.payload[..], b"from wasm");

    // HTTP against a real local server.
    let got = call(format!("http:{base}/from-wasm")).await;
    let (status, body) = got.split_once('|').unwrap();
    assert_eq!(status, "201");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["line"], "GET /from-wasm HTTP/1.1");
    // The node's policy applies to WebAssembly as to JavaScript: ::1 is not in the allow list.
    let denied = call("http:http://[::1]:1/".into()).await;
    assert!(
        denied.starts_with("error: ") && denied.contains("not allowed by this node"),
        "{denied}"
    );

    // Errors come back to the function as messages; system subjects are refused.
    let refused = call("publish:$SYS.REQ.x".into()).await;
    assert!(refused.starts_with("error: InvalidArgument: "), "{refused}");
    let none = call("request:nobody.listens".into()).await;
    assert!(
        none.starts_with("error: Unavailable: messaging.request")
            || none.starts_with("error: Timeout: messaging.request"),
        "{none}"
    );
    // And the function goes on working.
    assert_eq!(call("count".into()).await, "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webassembly_counter_example_counts_per_subject() {
    let w = World::start().await;
    w.devrun(
        &nex_test_support::guest("wasm-counter"),
        &["wcounter.>"],
        &["--name", "counter-wasm"],
    );
    let got = json(w.call("wcounter.a", b"").await);
    assert_eq!(got["count"], 1);
    assert_eq!(json(w.call("wcounter.a", b"").await)["count"], 2);
    let b = json(w.call("wcounter.b", b"").await);
    assert_eq!(b["count"], 1);
    assert_eq!(b["keys"], serde_json::json!(["wcounter.a", "wcounter.b"]));
}

/// Issue 17, hole 7: a 5,000-character KV key or a 4,000-character object name made nats-server
/// close the node's only connection (control line too long), and other functions' callers got
/// no-responders meanwhile. Now each call throws `InvalidArgument` before anything is sent, and a
/// bystander answers every request during and after.
#[tokio::test(flavor = "multi_thread")]
async fn long_keys_and_object_names_throw_and_the_node_stays_connected() {
    let w = World::start().await;
    w.devrun(
        &example("echo.js"),
        &["bystander"],
        &["--name", "bystander"],
    );
    let (_d, path) = temp_file(
        "long_names.js",
        br#"(subject, payload) => {
  const hs = this.hostServices;
  const out = [];
  const attempt = (f) => { try { f(); out.push('accepted'); } catch (e) { out.push(e.code + ' ' + e.message.slice(0, 60)); } };
  attempt(() => hs.kv.set('k'.repeat(5000), 'x'));
  attempt(() => hs.kv.get('k'.repeat(5000)));
  attempt(() => hs.objectStore.put('n'.repeat(4000), 'x'));
  attempt(() => hs.objectStore.get('n'.repeat(4000)));
  return out;
}"#,
    );
    w.devrun(&path, &["long.names"], &["--name", "long-names"]);
    assert_eq!(w.call("bystander", b"before").await, b"before");

    let attacks = (0..20).map(|_| {
        let w = &w;
        async move { json(w.call("long.names", b"").await) }
    });
    let bystander = async {
        let mut failures = Vec::new();
        for i in 0..200 {
            let sent = format!("during {i}");
            match w.request("bystander", sent.as_bytes()).await {
                Ok(m) if &m.payload[..] == sent.as_bytes() => {}
                other => failures.push(format!("{other:?}")),
            }
        }
        failures
    };
    let (results, failures) = tokio::join!(futures::future::join_all(attacks), bystander);
    assert!(failures.is_empty(), "the bystander failed: {failures:?}");
    for out in results {
        let out: Vec<String> = serde_json::from_value(out).unwrap();
        assert_eq!(out.len(), 4, "{out:?}");
        for line in &out {
            assert!(line.starts_with("InvalidArgument "), "{out:?}");
        }
        assert!(out[0].contains("kv.set: key"), "{out:?}");
        assert!(out[2].contains("objectStore.put: object name"), "{out:?}");
    }

    // The node is still connected and answering: its control subject replies at once.
    let started = std::time::Instant::now();
    let ping = w
        .request(nex_proto::subjects::PING, b"")
        .await
        .expect("ping answered");
    assert!(!ping.payload.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.call("bystander", b"after").await, b"after");
}

/// Issue 17, hole 15: `messaging.publish` into `_INBOX.*` let a function spoof replies into other
/// requesters' inboxes. Reserved targets (`_INBOX.>`, `_R_.>`, any `$`-prefixed subject) now
/// throw `InvalidArgument`, from JavaScript and from WebAssembly, and nothing reaches them.
#[tokio::test(flavor = "multi_thread")]
async fn functions_cannot_publish_into_inboxes_or_reserved_subjects() {
    let w = World::start().await;
    let mut inbox = collect(&w.client, "_INBOX.>").await;
    let mut replies = collect(&w.client, "_R_.>").await;
    let mut dollar = collect(&w.client, "$ANYTHING.>").await;
    w.client.flush().await.unwrap();
    let (_d, path) = temp_file(
        "spoof.js",
        br#"(subject, payload) => {
  const out = [];
  for (const s of ['_INBOX.x', '_R_.x', '$ANYTHING.x', '_INBOX.abc.def']) {
    try { this.hostServices.messaging.publish(s, 'spoofed'); out.push('sent ' + s); } catch (e) { out.push(e.code); }
    try { this.hostServices.messaging.request(s, 'spoofed', { timeout: 100 }); out.push('sent ' + s); } catch (e) { out.push(e.code); }
  }
  return out;
}"#,
    );
    w.devrun(&path, &["spoof.js"], &["--name", "spoofer"]);
    let out: Vec<String> = serde_json::from_value(json(w.call("spoof.js", b"").await)).unwrap();
    assert_eq!(out, vec!["InvalidArgument"; 8], "{out:?}");

    let wasm = nex_test_support::guest("host_services");
    w.devrun(&wasm, &["spoof.wasm"], &["--name", "spoofer-wasm"]);
    for s in ["_INBOX.x", "_R_.x", "$ANYTHING.x"] {
        let got = String::from_utf8(
            w.call("spoof.wasm", format!("publish:{s}").as_bytes())
                .await,
        )
        .unwrap();
        assert!(got.starts_with("error: InvalidArgument: "), "{s}: {got}");
        assert!(got.contains("reserved"), "{s}: {got}");
    }
    for sub in [&mut inbox, &mut replies, &mut dollar] {
        let leaked = wait_for(sub, Duration::from_millis(300), |m| {
            &m.payload[..] == b"spoofed" || &m.payload[..] == b"from wasm"
        })
        .await;
        assert!(leaked.is_none(), "a reserved subject got {leaked:?}");
    }
}

/// Four callers of a counter that reads, writes and lists its keys: every call answers at once.
/// (Listing keys with async-nats's `Store::keys` stalled 5 s whenever a concurrent write replaced
/// an entry it had counted, and the default host-call rate refused such a counter at 700 calls/s.)
#[tokio::test(flavor = "multi_thread")]
async fn a_kv_counter_keeps_up_with_concurrent_callers() {
    use std::time::Instant;
    let w = World::start().await;
    w.devrun(&example("kv-counter.js"), &["busy.count"], &[]);
    let stop = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let c = w.client.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut worst) = (0u32, Vec::new(), Duration::ZERO);
                while Instant::now() < stop {
                    let t = Instant::now();
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        c.request("busy.count", bytes::Bytes::new()),
                    )
                    .await;
                    match r {
                        Ok(Ok(m)) if service_error(&m).is_none() => ok += 1,
                        Ok(Ok(m)) => failed.push(format!("{:?}", service_error(&m))),
                        other => failed.push(format!("{other:?}")),
                    }
                    worst = worst.max(t.elapsed());
                }
                (ok, failed, worst)
            })
        })
        .collect();
    let mut total = 0;
    for c in callers {
        let (ok, failed, worst) = c.await.unwrap();
        println!(
            "caller: {ok} ok, {} failed, slowest {worst:?}",
            failed.len()
        );
        assert!(failed.is_empty(), "{:?}", &failed[..failed.len().min(3)]);
        assert!(worst < Duration::from_secs(1), "{worst:?}");
        total += ok;
    }
    // get-then-set is no atomic increment: concurrent instances lose some updates, never add.
    let last = json(w.call("busy.count", b"").await);
    let count = last["count"].as_u64().unwrap();
    assert!(count > 1 && count <= total as u64 + 1, "{last}");
    assert_eq!(last["keys"], serde_json::json!(["busy.count"]));
}
