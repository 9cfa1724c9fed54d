//! JavaScript host services end to end, against the real nats-server: key-value, object store,
//! messaging, and isolation between functions and namespaces.

use std::time::Duration;

use futures::StreamExt;

use crate::harness::*;

fn example(name: &str) -> std::path::PathBuf {
    nex_test_support::repo_root().join("examples").join(name)
}

fn json(bytes: Vec<u8>) -> serde_json::Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bytes)))
}

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
    let kv = js.get_key_value("hs_default_counter1_kv").await.unwrap();
    assert_eq!(kv.get("count.a").await.unwrap().unwrap(), "3");
    let other = js.get_key_value("hs_other_counter1_kv").await.unwrap();
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
        .get_object_store("hs_default_object-store_obj")
        .await
        .unwrap();
    assert_eq!(store.info("big").await.unwrap().size, 20 * 1024 * 1024);
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
        let mut sub = w.client.subscribe(subject).await.unwrap();
        let client = w.client.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(r) = m.reply {
                    let _ = client.publish(r, answer.into()).await;
                }
            }
        });
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

#[tokio::test(flavor = "multi_thread")]
async fn host_service_errors_throw_and_system_subjects_are_refused() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "sneaky.js",
        br#"(subject, payload) => {
  const out = [];
  for (const s of ['$NEX.PING', '$JS.API.INFO', '$KV.hs_default_other_kv.k', '$SYS.REQ.SERVER.PING']) {
    try { this.hostServices.messaging.publish(s, 'x'); out.push('sent ' + s); } catch (e) { out.push(e.message); }
  }
  try { this.hostServices.messaging.request('nobody.home', 'x', { timeout: 300 }); } catch (e) { out.push(e.message); }
  return out;
}"#,
    );
    w.devrun(&path, &["sneaky"], &[]);
    let out = json(w.call("sneaky", b"").await);
    let out: Vec<String> = serde_json::from_value(out).unwrap();
    for line in &out[..4] {
        assert!(line.contains("reserved"), "{out:?}");
    }
    assert!(
        out[4].contains("no responders") || out[4].contains("no reply"),
        "{out:?}"
    );
}
